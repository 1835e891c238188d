import { describe, expect, it } from 'vitest';
import { canonicalJson, checksumPayload } from './canonical-json';

describe('canonicalJson', () => {
  it('sorts keys, drops undefined properties and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: [3, { d: null, c: 'x' }], e: undefined })).toBe('{"a":[3,{"c":"x","d":null}],"b":1}');
  });

  it('rejects values JSON cannot represent faithfully', () => {
    expect(() => canonicalJson({ n: Number.NaN })).toThrow('non-finite');
    expect(() => canonicalJson([undefined])).toThrow('undefined');
    expect(() => canonicalJson({ f: () => 1 })).toThrow('cannot encode');
  });

  it('leaves the checksum out of the checksum payload', () => {
    expect(checksumPayload({ checksum: 'abc', version: 1 } as never)).toBe('{"version":1}');
  });
});
