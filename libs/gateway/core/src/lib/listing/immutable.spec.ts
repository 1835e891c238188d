import { describe, expect, it } from 'vitest';
import { deepFreeze, isDeepFrozen } from './immutable';

describe('deepFreeze', () => {
  it('freezes nested objects and arrays, registers every one of them, and leaves primitives alone', () => {
    const value = deepFreeze({ a: [{ b: 1 }], c: null, d: 'x' });
    expect(Object.isFrozen(value.a)).toBe(true);
    expect(Object.isFrozen(value.a[0])).toBe(true);
    expect([value, value.a, value.a[0]].every(isDeepFrozen)).toBe(true);
    expect(deepFreeze(3)).toBe(3);
    expect(isDeepFrozen(3)).toBe(false);
  });

  it('does not take Object.freeze for deep: a shallowly frozen object is walked and its children frozen', () => {
    const inner = { n: 1 };
    const shallow = Object.freeze({ inner });
    expect(isDeepFrozen(shallow)).toBe(false);
    deepFreeze(shallow);
    expect(Object.isFrozen(inner)).toBe(true);
    expect(isDeepFrozen(shallow) && isDeepFrozen(inner)).toBe(true);
  });

  it('registers nothing when freezing fails part way', () => {
    // A typed array with elements cannot be frozen.
    const value = { ok: { n: 1 }, bytes: new Uint8Array(2) };
    expect(() => deepFreeze(value)).toThrow(TypeError);
    expect(isDeepFrozen(value)).toBe(false);
    expect(isDeepFrozen(value.ok)).toBe(false);
  });

  it('follows a cycle once', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a['self'] = a;
    expect(deepFreeze(a)).toBe(a);
    expect(isDeepFrozen(a)).toBe(true);
  });
});
