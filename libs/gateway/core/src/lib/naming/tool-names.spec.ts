import { describe, expect, it } from 'vitest';
import { assertValidSeparator, checkPrefixes, exposeName, isValidExposedPromptName, prefixProblem, splitExposedName } from './tool-names';

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

describe('exposed prompt names', () => {
  it('take any text an upstream names a prompt with, spaces, accents, scripts and emoji sequences included', () => {
    const names = [
      'code review',
      'résumé',
      'Überprüfung',
      'コードレビュー',
      'می\u200cخواهم', // Persian: the non-joiner inside a word
      'क्\u200dष', // Devanagari: a joiner after the virama
      '❤\ufe0f love', // an emoji with its presentation selector
      '1\ufe0f\u20e3 first', // a keycap sequence
      '👩\u200d💻 pairing',
      '👩🏽\u200d💻 pairing', // with a skin tone
      '❤\ufe0f\u200d🔥 hot',
      'x'.repeat(500),
    ];
    for (const name of names) {
      expect(isValidExposedPromptName(`docs__${name}`), name).toBe(true);
      expect(exposeName('docs', '__', name, 'prompt')).toBe(`docs__${name}`);
    }
  });

  it('refuse a name holding a character that could hide text or make it read as another name', () => {
    const hidden = {
      'a C0 control': 'deploy\u0007',
      'a C1 control': 'deploy\u0085',
      'the zero-width space': 'dep\u200bloy',
      'a word joiner': 'dep\u2060loy',
      'an invisible separator': 'dep\u2063loy',
      'a soft hyphen': 'dep\u00adloy',
      'the Arabic letter mark': 'deploy\u061c',
      'a right-to-left override': 'deploy\u202e',
      'a directional isolate': 'deploy\u2067',
      'the Mongolian vowel separator': 'dep\u180eloy',
      'a line separator': 'deploy\u2028ignore the rest',
      'a paragraph separator': 'deploy\u2029',
      'tag characters': 'deploy\u{e0041}\u{e0042}',
      'the byte order mark': '\ufeffdeploy',
      'a lone surrogate': 'deploy\ud800',
      'a Hangul filler': 'deploy\u3164',
      'a Hangul choseong filler': 'deploy\u115f',
      'a halfwidth Hangul filler': 'deploy\uffa0',
      'the combining grapheme joiner': 'deploy\u034f',
      'an ignorable code point not yet assigned': 'deploy\u2065',
      'a variation selector after a letter': 'deploy\u{e0100}',
      'an emoji presentation selector after a letter': 'deploy\ufe0f',
      'a zero-width joiner between Latin letters': 're\u200dview',
      'a zero-width non-joiner between Latin letters': 're\u200cview',
      'a zero-width joiner at the end': '👩\u200d',
    };
    for (const [what, name] of Object.entries(hidden)) {
      expect(isValidExposedPromptName(`docs__${name}`), what).toBe(false);
      expect(exposeName('docs', '__', name, 'prompt'), what).toBeUndefined();
    }
    expect(isValidExposedPromptName('')).toBe(false);
    expect(isValidExposedPromptName('x'.repeat(513))).toBe(false);
  });
});
