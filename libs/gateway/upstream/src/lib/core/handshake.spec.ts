import { describe, expect, it } from 'vitest';
import { MAX_INSTRUCTIONS_CHARS } from '@portcullis/contracts/tool-pins';
import { MAX_CAPABILITIES_CHARS, toServerInfo } from './handshake';

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

  it('refuses capabilities too large to copy into every session record, and takes them at the bound', () => {
    const padding = (chars: number) => ({ experimental: { pad: 'x'.repeat(chars - JSON.stringify({ experimental: { pad: '' } }).length) } });
    expect(JSON.stringify(padding(MAX_CAPABILITIES_CHARS))).toHaveLength(MAX_CAPABILITIES_CHARS);
    expect(toServerInfo(result(padding(MAX_CAPABILITIES_CHARS))).capabilities).toEqual(padding(MAX_CAPABILITIES_CHARS));
    expect(() => toServerInfo(result(padding(MAX_CAPABILITIES_CHARS + 1)))).toThrow(
      expect.objectContaining({ reason: 'protocol_error', message: expect.stringContaining('capabilities too large') }),
    );
  });

  it('refuses capabilities nested deeper than every session record holding them can be read (Redis decodes 1,000 levels)', () => {
    expect(() => toServerInfo(result({ tools: {}, experimental: nested(40) }))).toThrow(
      expect.objectContaining({ reason: 'protocol_error', message: expect.stringContaining('nested too deeply') }),
    );
    expect(toServerInfo(result({ tools: {}, experimental: nested(8) })).capabilities).toEqual({ tools: {}, experimental: nested(8) });
  });

  it('cuts instructions past the bound, never inside a surrogate pair, and keeps shorter ones whole', () => {
    const withInstructions = (instructions: string) => ({ ...result({}), instructions });
    const exact = 'i'.repeat(MAX_INSTRUCTIONS_CHARS);
    expect(toServerInfo(withInstructions(exact)).instructions).toBe(exact);
    expect(toServerInfo(withInstructions(`${exact}more`)).instructions).toBe(`${exact}…`);
    // An emoji (two code units) straddling the bound is left out whole.
    const straddling = `${'i'.repeat(MAX_INSTRUCTIONS_CHARS - 1)}😀tail`;
    expect(toServerInfo(withInstructions(straddling)).instructions).toBe(`${'i'.repeat(MAX_INSTRUCTIONS_CHARS - 1)}…`);
  });

  it('refuses capabilities nested too deeply to serialise as a protocol error of this upstream', () => {
    expect(() => toServerInfo(result({ experimental: nested(200_000) }))).toThrow(expect.objectContaining({ reason: 'protocol_error', message: expect.stringContaining('nested too deeply') }));
  });
});
