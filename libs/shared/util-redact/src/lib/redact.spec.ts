import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileRedactionPaths, credentialTextsIn, InvalidRedactionPathError, needsNoRedaction, REDACTED, redactSecrets, rememberedKeyVerdicts, removedTexts, storableJson, withoutTexts, withoutTextsIn } from './redact';

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

  it('looks for credentials in time linear in the text: 128 KiB of `eyJ-` (a JWT start after every dash) at once', () => {
    const text = 'eyJ-'.repeat(32 * 1024);
    const started = performance.now();
    expect(redactSecrets({ note: text })).toEqual({ note: text });
    expect(credentialTextsIn(text)).toEqual([]);
    // Milliseconds now; before, each `eyJ` scanned to the text's end for a dot (seconds for 64 KiB). Generous.
    expect(performance.now() - started).toBeLessThan(1_000);
    for (const unit of ['eyJaaaaaa-', 'eyJaaaaaa.', '.eyJaaaaaa.bbbbbb-', 'eyJaaaaaa.-eyJ', 'eyJ--']) {
      const shaped = unit.repeat(Math.ceil(128 * 1024 / unit.length));
      const began = performance.now();
      redactSecrets({ note: shaped });
      credentialTextsIn(shaped);
      expect(performance.now() - began).toBeLessThan(1_000);
    }
    // A JWT is still found wherever a word starts: at the start, after a dash too (a first fix missed those: found by
    // re-review), not inside a word.
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ';
    for (const [before, after] of [['', ''], ['x=', ''], ['"', '"'], ['a.', ' b'], ['session-', ''], ['--', ''], ['/cb/auth-', '&x']]) {
      expect(redactSecrets({ note: `${before}${jwt}${after}` })).toEqual({ note: `${before}${REDACTED}${after}` });
    }
    for (const before of ['a1', '_']) expect(redactSecrets({ note: `${before}${jwt}` })).toEqual({ note: `${before}${jwt}` });
  });

  it('replaces credential-looking values wherever they appear and keeps the text around them', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ';
    const out = redactSecrets({
      note: 'call me with Bearer abcdefghijklmnop please',
      nested: [`token=${jwt}`, 'postgres://app:hunter2@db:5432/x', 'AKIAABCDEFGHIJKLMNOP', 'pcs_0123456789abcdefghijkl', 'dial redis://:s3cret-r3dis@cache:6379/0 failed'],
      plain: 'nothing to see',
      count: 3,
    });
    expect(out).toEqual({
      note: `call me with ${REDACTED} please`,
      nested: [`token=${REDACTED}`, `postgres://app:${REDACTED}@db:5432/x`, REDACTED, REDACTED, `dial redis://:${REDACTED}@cache:6379/0 failed`],
      plain: 'nothing to see',
      count: 3,
    });
    expect(JSON.stringify(out)).not.toMatch(/hunter2|abcdefghijklmnop|AKIA|pcs_0123|s3cret-r3dis/);
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

  it('replaces object keys that are or hold credentials, each under a distinct name, and reports them as removed', () => {
    const github = `ghp_${'A1b2C3d4E5'.repeat(4)}`;
    const removed: unknown[] = [];
    const input = {
      [REDACTED]: 'a key written so already',
      [github]: 'ci',
      'pcs_0123456789abcdefghijkl': { nested: { [`deploy with Bearer abcdefghijklmnop`]: 1 } },
      'postgres://app:hunter22@db/x': 'dsn as key',
      [`api_key ${github}x`]: 'named and is a credential',
      plain: 'kept',
    };
    const out = redactSecrets(input, removed);
    expect(out).toEqual({
      [REDACTED]: 'a key written so already',
      [`${REDACTED}#2`]: 'ci',
      [`${REDACTED}#3`]: { nested: { [REDACTED]: 1 } },
      [`${REDACTED}#4`]: 'dsn as key',
      [`${REDACTED}#5`]: REDACTED,
      plain: 'kept',
    });
    expect(JSON.stringify(out)).not.toMatch(/ghp_|pcs_|abcdefghijklmnop|hunter22/);
    // The keys count as removed (so an echo elsewhere is taken out), besides the value under a credential name.
    expect(removedTexts(removed)).toEqual(
      expect.arrayContaining([github, 'pcs_0123456789abcdefghijkl', 'deploy with Bearer abcdefghijklmnop', 'postgres://app:hunter22@db/x', 'named and is a credential']),
    );
    // Nothing is overwritten when a redacted key meets a key made storable, and __proto__ stays an own key.
    const proto = JSON.parse(`{"__proto__": {"${github}": 1}, "k\\ud800": 1, "k\\ufffd": 2}`) as Record<string, unknown>;
    expect(JSON.stringify(redactSecrets(proto))).toBe(`{"__proto__":{"${REDACTED}":1},"k\ufffd#2":1,"k\ufffd":2}`);
  });

  it('never remembers a key that is a credential (the key verdicts stay free of credentials)', () => {
    const before = rememberedKeyVerdicts();
    redactSecrets({ ['pcs_fedcba9876543210fedcba']: 1 });
    expect(rememberedKeyVerdicts()).toBe(before);
    redactSecrets({ a_fresh_plain_key: 1 });
    expect(rememberedKeyVerdicts()).toBe(before + 1);
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

describe('needsNoRedaction', () => {
  const clean = (value: unknown) => needsNoRedaction(value, JSON.stringify(value));

  it('says yes for plain arguments and results, and no for each thing redactSecrets would change', () => {
    expect(clean({ arguments: { message: 'hello portcullis', n: 3, tags: ['a', 'b'] }, result: { content: { count: 1, types: ['text'] }, isError: false } })).toBe(true);
    expect(clean({ secret: null, token: undefined })).toBe(true);
    const dirty: unknown[] = [
      { token: 'abc' },
      { nested: [{ headers: { a: 1 } }] },
      { note: 'Bearer abcdefghijklmnop' },
      { note: 'Bearer\tabcdefghijklmnop' }, // a tab is escaped in the text: the text is not taken
      { dsn: 'postgres://app:hunter2@db:5432/x' },
      { uri: 'file:///data?access_token=s3cr3t' },
      { key: 'pcs_0123456789abcdefghijkl' },
      { text: 'nul\u0000inside' },
      { text: 'half a pair \ud800' },
      { 'ke\u0000y': 1 },
      { quoted: 'say "hi"' }, // escaped quotes: the text is not taken (a false no costs only the copy)
    ];
    for (const value of dirty) expect(clean(value)).toBe(false);
  });

  it('never says yes when redactSecrets would change anything (property)', () => {
    const risky = fc.constantFrom(
      'token',
      'Authorization',
      'env',
      'key',
      'x_auth',
      'Bearer abcdefghijklmnop',
      'bearer  ABCDEFGHIJ12',
      'pcs_0123456789abcdefghijkl',
      'eyJhbGciOi.eyJzdWIiOi.sig',
      'AKIAABCDEFGHIJKLMNOP',
      'scheme://user:pw@host',
      '?api_key=v',
      '&signature=s',
      '-----BEGIN RSA PRIVATE KEY-----',
      `ghp_${'A1b2C3d4E5'.repeat(4)}`,
      'sk-0123456789abcdefghijkl',
      'a\u0000b',
      '\ud800',
      'plain',
      REDACTED,
      '',
    );
    const text = fc.oneof(fc.string(), risky, fc.tuple(fc.string(), risky, fc.string()).map(([a, b, c]) => a + b + c));
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, text, fc.integer(), fc.boolean(), fc.constant(null), tie('list'), tie('object')),
      list: fc.array(tie('node'), { maxLength: 4 }),
      // Keys as varied as values: credentials as keys, inside keys, several in one object.
      object: fc.dictionary(text, tie('node'), { maxKeys: 4 }),
    })).node;
    fc.assert(
      fc.property(value, (input) => {
        if (needsNoRedaction(input, JSON.stringify(input))) expect(JSON.stringify(redactSecrets(input))).toBe(JSON.stringify(input));
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('redactSecrets on keys', () => {
  const credentials = ['Bearer abcdefghijklmnop', 'pcs_0123456789abcdefghijkl', 'AKIAABCDEFGHIJKLMNOP', `ghp_${'A1b2C3d4E5'.repeat(4)}`, 'sk-0123456789abcdefghijkl'];

  it('leaves no credential in a key, and loses no entry to a clash of names (property)', () => {
    // Letters that spell no credential name (whose value would go whole, nested keys and all), and text that storableText
    // rewrites (NUL, lone surrogates: `a\u0000` and `a\ufffd` become the same key).
    const part = fc.string({ unit: fc.constantFrom('a', 'b', '1', ' ', '#', '\u0000', '\ud800', '\udc00', '\ufffd'), maxLength: 4 });
    const key = fc.oneof(
      part,
      fc.constantFrom(REDACTED, `${REDACTED}#2`, '__proto__'),
      fc.tuple(part, fc.constantFrom(...credentials), part).map(([a, b, c]) => `${a} ${b} ${c}`),
    );
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, fc.string(), fc.integer(), fc.constant(null), tie('object')),
      object: fc.dictionary(key, tie('node'), { maxKeys: 5 }),
    })).node;
    const keysOf = (node: unknown, into: string[] = []): string[] => {
      if (typeof node !== 'object' || node === null) return into;
      for (const [name, child] of Object.entries(node)) {
        into.push(name);
        keysOf(child, into);
      }
      return into;
    };
    fc.assert(
      fc.property(value, (input) => {
        const out = redactSecrets(input);
        expect(keysOf(out)).toHaveLength(keysOf(input).length);
        for (const name of keysOf(out)) for (const credential of credentials) expect(name).not.toContain(credential);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('removed texts', () => {
  it('reports the values the paths and the credential keys took out, and their texts, bounded, without short ones', () => {
    const byPaths: unknown[] = [];
    const byKeys: unknown[] = [];
    const redact = compileRedactionPaths(['arguments.card', 'arguments.items[*].ssn']);
    const value = { arguments: { card: { number: 4111111111111111, cvc: '123' }, items: [{ ssn: '123-45-6789' }, { ssn: '987-65-4321' }] } };
    redactSecrets(redact(value, byPaths), byKeys);
    redactSecrets({ password: 'hunter22' }, byKeys);
    expect(removedTexts(byPaths).sort()).toEqual(['123-45-6789', '4111111111111111', '987-65-4321']);
    expect(removedTexts(byKeys)).toEqual(['hunter22']);
    // A redactor called without a list reports nothing and still redacts.
    expect(redact(value).arguments.card).toBe(REDACTED);
  });

  it('gives a lone value the whole budget, and takes values in turns so a large one cannot crowd out the rest', () => {
    const large = Object.fromEntries(Array.from({ length: 100 }, (_, index) => [`f${index}`, `field-value-${index}`]));
    expect(removedTexts([large])).toEqual(Array.from({ length: 64 }, (_, index) => `field-value-${index}`));
    const mixed = removedTexts([large, 'hunter22', { nested: { deep: 'P-77123' } }]);
    expect(mixed).toHaveLength(64);
    expect(mixed.slice(0, 3)).toEqual(['field-value-0', 'hunter22', 'P-77123']);
    expect(removedTexts([[1, 'abc', 12345, null, { x: 'long enough' }]])).toEqual(['12345', 'long enough']);
  });

  it('takes every occurrence out of free text, the longest first, and out of every string and key of a value', () => {
    expect(withoutTexts('card 4111111111111111 ends 1111', ['1111', '4111111111111111'])).toBe(`card ${REDACTED} ends ${REDACTED}`);
    expect(withoutTexts('nothing here', [])).toBe('nothing here');
    const input = { text: 'Found hunter22', ['hunter22']: ['a hunter22 b', 3], kept: { same: 'x' } };
    const out = withoutTextsIn(input, ['hunter22']);
    expect(out).toEqual({ text: `Found ${REDACTED}`, [REDACTED]: [`a ${REDACTED} b`, 3], kept: { same: 'x' } });
    expect(out.kept).toBe(input.kept);
    expect(withoutTextsIn(input, ['absent'])).toBe(input);
    // A key rewritten to a name the object already has keeps its value apart.
    expect(withoutTextsIn({ [REDACTED]: 1, hunter22: 2 }, ['hunter22'])).toEqual({ [REDACTED]: 1, [`${REDACTED}#2`]: 2 });
  });
});

describe('credential keys of one object', () => {
  // freeKey probed `#2`, `#3`... from 2 again for every credential key of an object: O(n²) on the gateway's event loop
  // (the audit hook redacts every call's arguments); a 220 KB body blocked it for seconds (found in review).
  it('are renamed in linear time: 8,000 token keys of one object about as fast as the same keys spread over 8,000 objects', () => {
    const n = 8_000;
    const keys = Array.from({ length: n }, (_, i) => `pcs_${String(i).padStart(16, 'a')}`);
    const one: Record<string, number> = {};
    keys.forEach((key, i) => (one[key] = i));
    const spread = keys.map((key, i) => ({ [key]: i }));
    expect(JSON.stringify({ arguments: one }).length).toBeLessThan(250_000);

    let started = performance.now();
    redactSecrets({ arguments: spread });
    const spreadMs = performance.now() - started;

    started = performance.now();
    const out = redactSecrets({ arguments: one }) as { arguments: Record<string, number> };
    const oneMs = performance.now() - started;

    // Every value is kept, under distinct names.
    expect(Object.keys(out.arguments)).toHaveLength(n);
    expect(out.arguments[REDACTED]).toBe(0);
    expect(out.arguments[`${REDACTED}#${n}`]).toBe(n - 1);
    // Linear work: a generous allowance over the spread case, and an absolute bound well under a second.
    expect(oneMs).toBeLessThan(Math.max(1_000, 20 * spreadMs));
  }, 120_000);

  it('made storable the same way: thousands of keys that become one text are named in linear time, none lost', () => {
    // Two lone high surrogates each: storableText turns every one of these keys into the same two replacement characters.
    const n = 8_000;
    const keys = Array.from({ length: n }, (_, i) => String.fromCharCode(0xd800 + (i % 1_024), 0xd800 + Math.floor(i / 1_024)));
    const source: Record<string, number> = {};
    keys.forEach((key, i) => (source[key] = i));
    const started = performance.now();
    const out = storableJson(source) as Record<string, number>;
    const took = performance.now() - started;
    expect(Object.keys(out)).toHaveLength(n);
    expect(new Set(Object.values(out)).size).toBe(n);
    expect(took).toBeLessThan(1_000);
  });
});

