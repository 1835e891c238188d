import { describe, expect, it } from 'vitest';
import { withoutTrailingSlashes } from './text';

describe('withoutTrailingSlashes', () => {
  it('drops the slashes a value ends with, and only those', () => {
    expect(withoutTrailingSlashes('https://idp.example/realms/a///')).toBe('https://idp.example/realms/a');
    expect(withoutTrailingSlashes('https://idp.example')).toBe('https://idp.example');
    expect(withoutTrailingSlashes('///')).toBe('');
    expect(withoutTrailingSlashes('')).toBe('');
  });

  it('takes time in the length of a value of many slashes and a letter (a regular expression took its square)', () => {
    const value = `${'/'.repeat(200_000)}a`;
    const started = performance.now();
    expect(withoutTrailingSlashes(value)).toBe(value);
    expect(withoutTrailingSlashes(`${value}${'/'.repeat(200_000)}`)).toBe(value);
    // /\/+$/ took seconds on 40,000 slashes; this walks 400,000 characters in about a millisecond.
    expect(performance.now() - started).toBeLessThan(500);
  });
});
