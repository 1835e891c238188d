import { describe, expect, it } from 'vitest';
import { argumentsHash } from './arguments-hash';

describe('argumentsHash', () => {
  it('ignores key order and whitespace but nothing else', () => {
    const a = argumentsHash({ b: 1, a: { y: [1, 2], x: 'é' } });
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(argumentsHash({ a: { x: 'é', y: [1, 2] }, b: 1 })).toBe(a);
    expect(argumentsHash({ a: { x: 'é', y: [2, 1] }, b: 1 })).not.toBe(a);
    expect(argumentsHash({ a: { x: 'é', y: [1, 2] }, b: '1' })).not.toBe(a);
  });

  it('hashes missing arguments as an empty object', () => {
    expect(argumentsHash(undefined)).toBe(argumentsHash({}));
    // sha256("{}")
    expect(argumentsHash({})).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  });
});
