import { describe, expect, it } from 'vitest';
import { compileRedactionPaths, InvalidRedactionPathError, REDACTED, redactSecrets, rememberedKeyVerdicts, storableJson } from './redact';

describe('redactSecrets', () => {
  it('replaces values under credential-like keys at any depth and keeps the rest', () => {
    const input = {
      after: { name: 'tickets', headers: { Authorization: 'Bearer x' }, env: { TOKEN: 'y' }, hasHeaders: true },
      list: [{ clientSecret: 'z', id: 1 }, { api_key: 'k' }],
      secret: null,
    };
    expect(redactSecrets(input)).toEqual({
      after: { name: 'tickets', headers: REDACTED, env: REDACTED, hasHeaders: true },
      list: [{ clientSecret: REDACTED, id: 1 }, { api_key: REDACTED }],
      secret: null,
    });
  });

  it('replaces credential-looking values wherever they appear and keeps the text around them', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ';
    const out = redactSecrets({
      note: 'call me with Bearer abcdefghijklmnop please',
      nested: [`token=${jwt}`, 'postgres://app:hunter2@db:5432/x', 'AKIAABCDEFGHIJKLMNOP', 'pcs_0123456789abcdefghijkl'],
      plain: 'nothing to see',
      count: 3,
    });
    expect(out).toEqual({
      note: `call me with ${REDACTED} please`,
      nested: [`token=${REDACTED}`, `postgres://app:${REDACTED}@db:5432/x`, REDACTED, REDACTED],
      plain: 'nothing to see',
      count: 3,
    });
    expect(JSON.stringify(out)).not.toMatch(/hunter2|abcdefghijklmnop|AKIA|pcs_0123/);
  });

  it('catches credentials in any case, in URL query strings, and under short credential keys', () => {
    const out = redactSecrets({
      lower: 'bearer abcdefghijklmnop',
      upper: 'BASIC dXNlcjpwYXNzd29yZA==',
      uri: 'file:///data?access_token=s3cr3t-value&page=2#top',
      signed: 'https://bucket.example/o?X-Amz-Signature=abcdef0123&X-Amz-Expires=60',
      jwt: 'x',
      pwd: 'x',
      pass: 'x',
      'x-auth': 'x',
      author: 'Ada',
      passage: 'kept',
    });
    expect(out).toEqual({
      lower: REDACTED,
      upper: REDACTED,
      uri: `file:///data?access_token=${REDACTED}&page=2#top`,
      signed: `https://bucket.example/o?X-Amz-Signature=${REDACTED}&X-Amz-Expires=60`,
      jwt: REDACTED,
      pwd: REDACTED,
      pass: REDACTED,
      'x-auth': REDACTED,
      author: 'Ada',
      passage: 'kept',
    });
  });

  it('keeps a __proto__ key (as JSON.parse makes it) an own, redacted key of the copy: nothing hides under it', () => {
    const input = JSON.parse('{"__proto__": {"password": "p", "note": "Bearer abcdefghijklmnop", "kept": 1}, "x": 2}') as Record<string, unknown>;
    const out = redactSecrets(input) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(['__proto__', 'x']);
    expect(JSON.parse(JSON.stringify(out))).toEqual(JSON.parse(`{"__proto__": {"password": "${REDACTED}", "note": "${REDACTED}", "kept": 1}, "x": 2}`));
  });

  it('answers the same for a key however often it comes and however many other keys came before', () => {
    // A long key is tested, not remembered (keys are the caller's to choose).
    const before = rememberedKeyVerdicts();
    const long = `${'x'.repeat(10_000)}_token`;
    expect(redactSecrets({ [long]: 'secret', ['y'.repeat(10_000)]: 'kept' })).toEqual({ [long]: REDACTED, ['y'.repeat(10_000)]: 'kept' });
    expect(rememberedKeyVerdicts()).toBe(before);
    // Past the remembered keys' bound, keys are still tested one by one.
    const many = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`field${i}`, i]));
    expect(redactSecrets(many)).toEqual(many);
    expect(rememberedKeyVerdicts()).toBe(4_096);
    for (let round = 0; round < 3; round++) {
      expect(redactSecrets({ apiKey: 'k', plain: 'v', [`late_token_${round}`]: 't' })).toEqual({ apiKey: REDACTED, plain: 'v', [`late_token_${round}`]: REDACTED });
    }
  });

  it('does not change its input', () => {
    const input = { password: 'p', list: ['Bearer abcdefghijklmnop'] };
    redactSecrets(input);
    expect(input).toEqual({ password: 'p', list: ['Bearer abcdefghijklmnop'] });
  });
});

describe('compileRedactionPaths', () => {
  it('replaces the values at the paths (with or without $.), wildcards included, in a copy', () => {
    const redact = compileRedactionPaths(['$.arguments.card.number', 'arguments.people[*].ssn', 'result.*.email']);
    const input = {
      arguments: { card: { number: '4111', holder: 'A' }, people: [{ ssn: '1', name: 'x' }, { ssn: '2' }] },
      result: { a: { email: 'a@example.com' }, b: { email: 'b@example.com', id: 2 } },
    };
    expect(redact(input)).toEqual({
      arguments: { card: { number: REDACTED, holder: 'A' }, people: [{ ssn: REDACTED, name: 'x' }, { ssn: REDACTED }] },
      result: { a: { email: REDACTED }, b: { email: REDACTED, id: 2 } },
    });
    expect(input.arguments.card.number).toBe('4111');
  });

  it('ignores paths that are absent and rejects paths it cannot parse', () => {
    expect(compileRedactionPaths(['arguments.missing.x'])({ arguments: {} })).toEqual({ arguments: {} });
    expect(() => compileRedactionPaths(['arguments..x'])).toThrow(InvalidRedactionPathError);
    expect(() => compileRedactionPaths(['$'])).toThrow(InvalidRedactionPathError);
  });
});

describe('storableJson', () => {
  it('makes every string storable, keys included, and returns the same value when nothing needed it', () => {
    const clean = { a: ['x', 1, null, { b: true }], c: 'é✓😀' };
    expect(storableJson(clean)).toBe(clean);
    const dirty = { a: ['x', 'y\u0000'], 'k\ud800': { deep: 'z\udfff' }, keep: { same: 1 } };
    const fixed = storableJson(dirty);
    expect(fixed).toEqual({ a: ['x', 'y\ufffd'], 'k\ufffd': { deep: 'z\ufffd' }, keep: { same: 1 } });
    expect(fixed.keep).toBe(dirty.keep);
    expect(dirty.a[1]).toBe('y\u0000');
    const proto = JSON.parse('{"__proto__": "\\u0000"}') as Record<string, unknown>;
    expect(Object.keys(storableJson(proto))).toEqual(['__proto__']);
  });
});
