import { describe, expect, it } from 'vitest';
import { assertValidSeparator, checkPrefixes, exposeName, prefixProblem, splitExposedName } from './tool-names';

describe('tool names', () => {
  it('prefixes and splits at the first separator, so upstream names may contain it', () => {
    expect(exposeName('tickets', '__', 'create_ticket')).toBe('tickets__create_ticket');
    expect(splitExposedName('tickets__a__b', '__')).toEqual({ prefix: 'tickets', name: 'a__b' });
    expect(splitExposedName('__x', '__')).toBeUndefined();
    expect(splitExposedName('tickets__', '__')).toBeUndefined();
    expect(splitExposedName('plain', '__')).toBeUndefined();
  });

  it('keeps exposed names within 1–128 characters of [A-Za-z0-9_.-]', () => {
    expect(exposeName('p', '__', 'x'.repeat(125))).toBe(`p__${'x'.repeat(125)}`);
    expect(exposeName('p', '__', 'x'.repeat(126))).toBeUndefined();
    expect(exposeName('p', '__', 'has space')).toBeUndefined();
    expect(exposeName('p', '__', '')).toBeUndefined();
  });

  it('rejects prefixes that would make parsing ambiguous', () => {
    expect(prefixProblem('a__b', '__')).toMatch(/separator/);
    expect(prefixProblem('a_', '__')).toMatch(/separator/);
    expect(prefixProblem('a', '__')).toBeUndefined();
    expect(prefixProblem('with space', '__')).toMatch(/may only contain/);
    expect(prefixProblem('', '__')).toMatch(/empty/);
    expect(() => assertValidSeparator('/')).toThrow(/separator/);
    expect(() => assertValidSeparator('.')).not.toThrow();
  });

  it('reports prefix collisions (case-insensitive) with both upstream names', () => {
    const problems = checkPrefixes(
      [
        { id: '1', name: 'files', toolPrefix: 'files' },
        { id: '2', name: 'Files copy', toolPrefix: 'Files' },
        { id: '3', name: 'math', toolPrefix: 'math' },
      ],
      '__',
    );
    expect(problems).toEqual(['upstream "Files copy": the tool prefix "Files" collides with upstream "files"']);
  });
});
