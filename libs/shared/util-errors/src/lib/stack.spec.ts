import { describe, expect, it } from 'vitest';
import { isStackExhausted } from './stack';

describe('isStackExhausted', () => {
  it('recognises the stack running out while serialising a deeply nested value, and no other error', () => {
    const deep = JSON.parse(`${'['.repeat(50_000)}${']'.repeat(50_000)}`) as unknown;
    let thrown: unknown;
    try {
      JSON.stringify(deep);
    } catch (error) {
      thrown = error;
    }
    expect(isStackExhausted(thrown)).toBe(true);
    expect(isStackExhausted(new RangeError('Invalid array length'))).toBe(false);
    expect(isStackExhausted(new Error('Maximum call stack size exceeded'))).toBe(false);
    expect(isStackExhausted(undefined)).toBe(false);
  });
});
