import { describe, expect, it } from 'vitest';
import { type PinRow, ToolPinIndex } from './tool-pin-index';

const row = (upstreamId: string, name: string, fields: Partial<PinRow> = {}): PinRow => ({ upstreamId, kind: 'tool', name, contentHash: `h-${name}`, approvedHash: null, blocked: false, ...fields });

describe('ToolPinIndex.replace', () => {
  it('names the upstreams whose pins changed since the last load, and none on the first', () => {
    const index = new ToolPinIndex();
    expect([...index.replace([row('u1', 'a'), row('u2', 'b')], ['u1'], ['u1', 'u2', 'u3'])]).toEqual([]);
    // The same load again: nothing changed.
    expect([...index.replace([row('u1', 'a'), row('u2', 'b')], ['u1'], ['u1', 'u2', 'u3'])]).toEqual([]);
    // Approved, blocked, redefined, added, removed; require_approval turned off; an upstream known only now.
    expect([...index.replace([row('u1', 'a', { approvedHash: 'h-a' }), row('u2', 'b')], ['u1'], ['u1', 'u2', 'u3'])]).toEqual(['u1']);
    expect([...index.replace([row('u1', 'a', { approvedHash: 'h-a' }), row('u2', 'b', { blocked: true })], ['u1'], ['u1', 'u2', 'u3'])]).toEqual(['u2']);
    expect([...index.replace([row('u1', 'a', { approvedHash: 'h-a', contentHash: 'h-a2' }), row('u2', 'b', { blocked: true })], ['u1'], ['u1', 'u2', 'u3'])]).toEqual(['u1']);
    expect([...index.replace([row('u1', 'a', { approvedHash: 'h-a', contentHash: 'h-a2' }), row('u2', 'b', { blocked: true }), row('u3', 'c')], ['u1'], ['u1', 'u2', 'u3'])]).toEqual(['u3']);
    expect([...index.replace([row('u1', 'a', { approvedHash: 'h-a', contentHash: 'h-a2' }), row('u3', 'c')], [], ['u1', 'u2', 'u3', 'u4'])].sort()).toEqual(['u1', 'u2', 'u4']);
  });
});
