import { describe, expect, it } from 'vitest';
import { toServerInfo } from './handshake';

/** `{ a: { a: ... } }`, `depth` levels: JSON.parse takes any depth, JSON.stringify recurses. */
function nested(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = {};
  for (let level = 0; level < depth; level++) value = { a: value };
  return value;
}

describe('toServerInfo', () => {
  const result = (capabilities: unknown) => ({ protocolVersion: '2025-06-18', serverInfo: { name: 'up', version: '1' }, capabilities });

  it('takes a well-formed initialize result', () => {
    expect(toServerInfo(result({ tools: { listChanged: true } }))).toEqual({
      protocolVersion: '2025-06-18',
      serverInfo: { name: 'up', version: '1' },
      capabilities: { tools: { listChanged: true } },
    });
  });

  it('refuses capabilities nested too deeply to serialise as a protocol error of this upstream', () => {
    expect(() => toServerInfo(result({ experimental: nested(200_000) }))).toThrow(expect.objectContaining({ reason: 'protocol_error', message: expect.stringContaining('nested too deeply') }));
  });
});
