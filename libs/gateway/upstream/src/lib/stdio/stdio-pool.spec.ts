import type { ClientIdentity } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { compatibilityOf } from './stdio-process';

const identity = (capabilities: Record<string, unknown>, protocolVersion = '2025-11-25'): ClientIdentity => ({
  clientInfo: { name: 'agent', version: '1' },
  capabilities,
  protocolVersion,
});

describe('compatibilityOf (which sessions a stdio process suits)', () => {
  it('tells agents apart by protocol version and by the client features that decide what a server may ask', () => {
    const base = compatibilityOf(identity({ sampling: {}, roots: { listChanged: true } }));
    expect(compatibilityOf(identity({ sampling: {}, roots: { listChanged: true } }, '2025-06-18'))).not.toBe(base);
    expect(compatibilityOf(identity({ roots: { listChanged: true } }))).not.toBe(base);
    expect(compatibilityOf(identity({ sampling: { tools: {} }, roots: { listChanged: true } }))).not.toBe(base);
    expect(compatibilityOf(identity({ sampling: {}, roots: {} }))).not.toBe(base);
    expect(compatibilityOf(identity({ sampling: {}, roots: { listChanged: true }, elicitation: { url: {} } }))).not.toBe(base);
  });

  it('does not tell them apart by key order or by fields that decide nothing', () => {
    const a = compatibilityOf(identity({ elicitation: { form: {}, url: {} }, sampling: {} }));
    expect(compatibilityOf(identity({ sampling: { vendor: { x: 1 } }, elicitation: { url: {}, form: {} } }))).toBe(a);
    expect(compatibilityOf(identity({ sampling: {}, elicitation: { form: {}, url: {} }, experimental: { y: true } }))).toBe(a);
  });
});
