import createRedactor from '@pinojs/redact';

/** What a redacted value is replaced with, everywhere (audit events, before/after documents). */
export const REDACTED = '[redacted]';

/** Keys whose values are credentials whatever they hold. */
const SECRET_KEY =
  /(secret|password|passwd|passphrase|token|authorization|cookie|credential|ciphertext|private[_-]?key|api[_-]?key|access[_-]?key|jwt|^headers$|^env$|^key$|^pwd$|^pass$|(?:^|[_-])auth$)/i;

/**
 * Values that look like credentials wherever they appear (a token pasted into a free-text argument). Each
 * pattern matches the credential itself, so the text around it survives.
 */
const SECRET_VALUE = new RegExp(
  [
    /\b(?:[Bb][Ee][Aa][Rr][Ee][Rr]|[Bb][Aa][Ss][Ii][Cc])\s+[A-Za-z0-9._~+/=-]{8,}/.source, // HTTP credentials, any case
    /\bpcs_[A-Za-z0-9_-]{16,}/.source, // Portcullis API keys
    // JWTs. The header's part does not run on past a `-eyJ`, where another may start (`\b` allows one after a `-`):
    // from every `eyJ` of a run it scanned to the run's end for its dot, and 64 KiB of `eyJ-` took seconds (found by
    // review). Found after a dash all the same (`session-eyJ…`: a re-review found a first fix missing those).
    /\beyJ(?:[A-Za-z0-9_]|-(?!eyJ)){6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*/.source,
    /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/.source,
    /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/.source, // AWS access key ids
    /\bgh[pousr]_[A-Za-z0-9]{30,}\b/.source, // GitHub tokens
    /\bgithub_pat_[A-Za-z0-9_]{30,}\b/.source,
    /\bsk-[A-Za-z0-9_-]{20,}/.source, // common "secret key" API tokens
    /\bxox[abprs]-[A-Za-z0-9-]{10,}/.source, // Slack tokens
  ].join('|'),
  'g',
);

/**
 * The password in `scheme://user:password@host`, the user empty too (`redis://:password@host`, how Redis URLs carry
 * one: missed until a spec of the crash log tried one). Kept apart and tried only on text with an `@`: a pattern that starts
 * with a lookbehind is tried at every position, and inside the alternation above it made every string's test about
 * four times slower (each audited call tests several).
 */
const URL_PASSWORD = /(?<=:\/\/[^\s/:@]{0,256}:)[^\s/@]{1,256}(?=@)/g;

/**
 * The value of a URL query parameter named like a credential (?access_token=…, &api_key=…, &X-Amz-Signature=…). Kept
 * apart and tried only on text with an `=`: its lookbehind costs a test at every position of every string.
 */
const SECRET_QUERY_VALUE =
  /(?<=[?&][A-Za-z0-9_.-]{0,64}(?:[Tt][Oo][Kk][Ee][Nn]|[Ss][Ee][Cc][Rr][Ee][Tt]|[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]|[Kk][Ee][Yy]|[Ss][Ii][Gg](?:[Nn][Aa][Tt][Uu][Rr][Ee])?)=)[^&#\s]{1,2048}/g;

interface Es2024String {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

/**
 * Text the audit trail can store and hash: a lone surrogate (half of a UTF-16 pair, which JSON allows) becomes
 * U+FFFD, and so does NUL. The chain's canonical JSON refuses lone surrogates and Postgres refuses NUL in text and
 * jsonb: an event holding either could never be stored, so an agent could keep its own call out of the trail.
 */
export function storableText(value: string): string {
  const text = (value as unknown as Es2024String).isWellFormed() ? value : (value as unknown as Es2024String).toWellFormed();
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

/**
 * A JSON value with every string in it, object keys included, made storable (`storableText`). Returns the value
 * itself when nothing needed changing (the common case: no copy), else a copy changed where needed. For the audit
 * worker, which cannot assume every producer already did this.
 */
export function storableJson<T>(value: T): T {
  return mapStrings(value, storableText);
}

/**
 * A JSON value with `fix` applied to every string in it, object keys included: the value itself when nothing changed,
 * else a copy changed where needed. Keys are defined, not assigned, so a `__proto__` key stays an own key.
 */
function mapStrings<T>(value: T, fix: (text: string) => string, fixNumber?: (number: number) => unknown): T {
  if (typeof value === 'string') return fix(value) as T;
  if (typeof value === 'number' && fixNumber) return fixNumber(value) as T;
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item: unknown, index) => {
      const fixed = mapStrings(item, fix, fixNumber);
      if (fixed !== item) (copy ??= [...value])[index] = fixed;
    });
    return (copy ?? value) as T;
  }
  let changed = false;
  const entries = Object.entries(value).map(([key, item]): [string, unknown] => {
    const fixedKey = fix(key);
    const fixed = mapStrings(item, fix, fixNumber);
    if (fixedKey !== key || fixed !== item) changed = true;
    return [fixedKey, fixed];
  });
  if (!changed) return value;
  const copy: Record<string, unknown> = {};
  const keys = Object.keys(value);
  let numbers: KeyNumbers | undefined;
  entries.forEach(([key, item], index) => {
    const name = key === keys[index] ? key : freeKey(key, value as Record<string, unknown>, copy, (numbers ??= new Map()));
    Object.defineProperty(copy, name, { value: item, enumerable: true, writable: true, configurable: true });
  });
  return copy as T;
}

/** Where the numbering of each rewritten name got to in one object's copy (`freeKey`): the next number to try. */
type KeyNumbers = Map<string, number>;

/**
 * The name for a key that redaction rewrote (to REDACTED, or to storable text) in `out`, a copy of `source`: `name`
 * itself, or `name#2`, `name#3`... when a key of `source` or one already in `out` has it. Several credentials used as
 * keys of one object become distinct keys instead of one value silently overwriting the others. The numbering goes on
 * from where the object's last such key left it (`numbers`, one per copy): thousands of credential keys in one object
 * (a request body can hold them) are named in linear time, not by probing from #2 again each time (found in review).
 */
function freeKey(name: string, source: Readonly<Record<string, unknown>>, out: Readonly<Record<string, unknown>>, numbers: KeyNumbers): string {
  const taken = (key: string) => Object.prototype.hasOwnProperty.call(out, key) || Object.prototype.hasOwnProperty.call(source, key);
  let n = numbers.get(name);
  if (n === undefined) {
    numbers.set(name, 2);
    if (!taken(name)) return name;
    n = 2;
  }
  while (taken(`${name}#${n}`)) n += 1;
  numbers.set(name, n + 1);
  return `${name}#${n}`;
}

function redactString(value: string): string {
  let text = storableText(value);
  SECRET_VALUE.lastIndex = 0;
  if (SECRET_VALUE.test(text)) text = text.replace(SECRET_VALUE, REDACTED);
  if (text.includes('@')) {
    URL_PASSWORD.lastIndex = 0;
    if (URL_PASSWORD.test(text)) text = text.replace(URL_PASSWORD, REDACTED);
  }
  if (text.includes('=')) {
    SECRET_QUERY_VALUE.lastIndex = 0;
    if (SECRET_QUERY_VALUE.test(text)) text = text.replace(SECRET_QUERY_VALUE, REDACTED);
  }
  return text;
}

/**
 * The credential-looking parts of `text` the audit trail would redact: tokens of a known shape (an HTTP credential
 * with its scheme, an API key's prefix, a JWT, a private key), URL passwords and credential-named query values.
 */
export function credentialTextsIn(text: string): string[] {
  const found = [...text.matchAll(SECRET_VALUE)].map((match) => match[0]);
  if (text.includes('@')) found.push(...[...text.matchAll(URL_PASSWORD)].map((match) => match[0]));
  if (text.includes('=')) found.push(...[...text.matchAll(SECRET_QUERY_VALUE)].map((match) => match[0]));
  return found;
}

/** A key's verdict: its value is a credential (the key names one: `password`, `apiKey`...). */
const NAMES_SECRET = 1;
/** A key's verdict: the key is a credential itself (a map keyed by token), or holds one (`redactString` changes it). */
const IS_SECRET = 2;

/**
 * What a key is (NAMES_SECRET, IS_SECRET, both or neither), remembered per key: the audit trail redacts every request's
 * arguments, and the same few keys come back call after call. Bounded in count and in key length (keys are the
 * caller's: a long one is tested each time rather than kept), so the memory it holds stays small whatever arrives; a
 * key that is a credential is tested each time too, never kept in memory.
 */
const keyVerdicts = new Map<string, number>();
const KEY_VERDICTS_MAX = 4_096;
const KEY_VERDICT_MAX_LENGTH = 128;

function keyVerdict(key: string): number {
  let verdict = keyVerdicts.get(key);
  if (verdict === undefined) {
    verdict = (SECRET_KEY.test(key) ? NAMES_SECRET : 0) | (redactString(key) === key ? 0 : IS_SECRET);
    if ((verdict & IS_SECRET) === 0 && keyVerdicts.size < KEY_VERDICTS_MAX && key.length <= KEY_VERDICT_MAX_LENGTH) keyVerdicts.set(key, verdict);
  }
  return verdict;
}

/**
 * Whether a name (an object key, a URL query parameter) names a credential: the names whose values the audit trail
 * redacts (`api_key`, `access_token`, `password`, `key`...). Configuration uses it to keep credentials out of places
 * that are shown in plain text.
 */
export function namesSecret(name: string): boolean {
  return SECRET_KEY.test(name);
}

/** A query parameter name whose value SECRET_QUERY_VALUE redacts: ending in token, secret, password, key, sig or signature. */
const SECRET_QUERY_NAME = /(?:token|secret|password|key|sig|signature)$/i;

/**
 * Whether a URL query parameter's name marks its value as a credential: a key `namesSecret` names, or one the audit
 * redactor treats as such in URLs (`subscription-key`, `x-functions-key`, `sig`, `X-Amz-Signature`...). What the
 * redactor hides in a recorded URL must not be accepted in plain text in a stored one.
 */
export function namesQuerySecret(name: string): boolean {
  return SECRET_QUERY_NAME.test(name) || SECRET_KEY.test(name);
}

/** @internal How many key verdicts are remembered (specs check the bounds). */
export const rememberedKeyVerdicts = (): number => keyVerdicts.size;

/**
 * The last line of defence before anything is written to the audit trail: values under keys that name a
 * credential are replaced, and credential-looking strings (bearer tokens, API keys, JWTs, private keys, URL
 * passwords...) are replaced wherever they appear, object keys included: a key that holds one (a map keyed by token)
 * becomes REDACTED, or `[redacted]#2`, `#3`... where several do in one object, so no value overwrites another. Strings
 * and keys are made storable (`storableText`). Returns a copy; dates become ISO strings. A `__proto__` key
 * (JSON.parse makes it an ordinary own key) stays an own key of the copy, so nothing can hide under it.
 * `removed`, when given, receives the values replaced for their key and the keys replaced as credentials (up to
 * MAX_REMOVED_VALUES; `removedTexts` turns them into text), so that the same words can be taken out of free text
 * that quotes them (`withoutTexts`).
 */
export function redactSecrets(value: unknown, removed?: unknown[]): unknown {
  if (typeof value === 'string') return redactString(value);
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const item of value as unknown[]) out.push(redactSecrets(item, removed));
    return out;
  }
  if (value instanceof Date) return value.toISOString();
  const source = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  let numbers: KeyNumbers | undefined;
  for (const sourceKey of Object.keys(source)) {
    const child = source[sourceKey];
    if (child === undefined) continue;
    let key = storableText(sourceKey);
    const verdict = keyVerdict(key);
    let redacted: unknown;
    if (child !== null && (verdict & NAMES_SECRET) !== 0) {
      redacted = REDACTED;
      if (removed) remember(child, removed);
    } else redacted = redactSecrets(child, removed);
    if ((verdict & IS_SECRET) !== 0) {
      // The key is a credential (a map keyed by token): it goes, as a value would, and is looked for elsewhere.
      if (removed) remember(key, removed);
      key = freeKey(REDACTED, source, out, (numbers ??= new Map()));
    } else if (key !== sourceKey) key = freeKey(key, source, out, (numbers ??= new Map()));
    if (key === '__proto__') Object.defineProperty(out, key, { value: redacted, enumerable: true, writable: true, configurable: true });
    else out[key] = redacted;
  }
  return out;
}

/**
 * Whether some key in `value`, at any depth, names a credential and holds something, or is a credential itself
 * (`redactSecrets` would replace the value, or the key). The text scan of `needsNoRedaction` finds a key that is a
 * credential too (keys stand in the text as they are); this walk does not depend on it.
 */
function holdsSecretKey(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) if (holdsSecretKey(item)) return true;
    return false;
  }
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const child = source[key];
    if (child === undefined) continue;
    const verdict = keyVerdict(key);
    if ((verdict & IS_SECRET) !== 0) return true;
    if (child === null) continue;
    if ((verdict & NAMES_SECRET) !== 0 || holdsSecretKey(child)) return true;
  }
  return false;
}

/**
 * Whether `redactSecrets(value)` would leave `value` as it is, as JSON (`JSON.stringify(redactSecrets(value)) === json`),
 * given `json`, its `JSON.stringify` text: no key names a credential, no key or string looks like one, and every string is
 * already storable. For JSON data as JSON.parse makes it: an object whose `toJSON`, getters or non-enumerable parts
 * make its text differ from its keys is not covered. Cheaper than the copy when, as on most
 * calls, there is nothing to redact: keys are checked by a walk, but strings by one scan of the text instead of one
 * test each. Sound because the text is taken only when it has no backslash at all: then every string stands in it
 * exactly as it is, between quotes, with no NUL or lone surrogate (JSON.stringify escapes both), so a credential in
 * a string is a match in the text. False answers cost only the copy; a true answer must never hide a credential.
 */
export function needsNoRedaction(value: unknown, json: string): boolean {
  if (json.includes('\\')) return false;
  SECRET_VALUE.lastIndex = 0;
  if (SECRET_VALUE.test(json)) return false;
  if (json.includes('@')) {
    URL_PASSWORD.lastIndex = 0;
    if (URL_PASSWORD.test(json)) return false;
  }
  if (json.includes('=')) {
    SECRET_QUERY_VALUE.lastIndex = 0;
    if (SECRET_QUERY_VALUE.test(json)) return false;
  }
  return !holdsSecretKey(value);
}

export class InvalidRedactionPathError extends Error {
  constructor(readonly path: string) {
    super(`invalid redaction path: ${path.slice(0, 200)}`);
    this.name = 'InvalidRedactionPathError';
  }
}

/**
 * Replaces the values at the compiled paths in a copy of the object (the input is not changed). `removed`, when
 * given, receives the values replaced, as they were (up to MAX_REMOVED_VALUES; `removedTexts` turns them into text).
 */
export type PathRedactor = <T extends Record<string, unknown>>(value: T, removed?: unknown[]) => T;

const identity: PathRedactor = (value) => value;

/** Removed texts shorter than this are not looked for in free text: a short one would mask unrelated words. */
const MIN_REMOVED_TEXT = 4;
/** At most this many removed values are remembered per list, and this many texts taken from them. */
const MAX_REMOVED_VALUES = 64;
const MAX_REMOVED_TEXTS = 64;
/** At most this many parts of one removed value, and of all of them, are walked to find their texts. */
const MAX_WALK_PER_VALUE = 512;
const MAX_WALK = 8_192;

/** Whether a removed value can hold a text worth looking for (`removedTexts`). */
function mayHoldText(value: unknown): boolean {
  if (typeof value === 'string') return value.length >= MIN_REMOVED_TEXT && value !== REDACTED;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value).length >= MIN_REMOVED_TEXT;
  return typeof value === 'object' && value !== null && Object.keys(value).length > 0;
}

/** Remembers a removed value in `into` if it can hold a text and there is room (values without one take no slot). */
function remember(value: unknown, into: unknown[]): void {
  if (into.length < MAX_REMOVED_VALUES && mayHoldText(value)) into.push(value);
}

/**
 * The texts free text quoting removed values would show: the strings and numbers in them (a value itself, or the
 * leaves of an object or array removed whole), each as it came and, where different, as the rest of redaction
 * rewrites it (`redactString`: a kept result is compared after that), at most MAX_REMOVED_TEXTS. Taken in turns, one
 * from each value, each walked shallowest first and within its own bound: a lone value gets the whole budget, and one
 * large object (or one of many tiny parts) cannot crowd out the values removed beside it.
 */
export function removedTexts(values: readonly unknown[]): string[] {
  const texts: string[] = [];
  const add = (text: string): boolean => {
    if (text.length < MIN_REMOVED_TEXT || text === REDACTED || texts.includes(text)) return false;
    texts.push(text);
    return true;
  };
  const queues = values.map((value) => ({ items: [value], next: 0 }));
  let walked = 0;
  let progressed = true;
  while (progressed && texts.length < MAX_REMOVED_TEXTS && walked < MAX_WALK) {
    progressed = false;
    for (const queue of queues) {
      // Walk this value until it yields one text (or runs out, or reaches its bound).
      while (queue.next < queue.items.length && queue.next < MAX_WALK_PER_VALUE && walked < MAX_WALK) {
        const item = queue.items[queue.next++];
        walked += 1;
        progressed = true;
        if (typeof item === 'string' || typeof item === 'number' || typeof item === 'bigint') {
          const text = String(item);
          const added = add(text);
          const rewritten = typeof item === 'string' ? redactString(text) : text;
          if ((rewritten !== text && add(rewritten)) || added) break;
        } else if (typeof item === 'object' && item !== null) {
          for (const child of Object.values(item)) {
            if (queue.items.length >= MAX_WALK_PER_VALUE) break;
            queue.items.push(child);
          }
        }
      }
      if (texts.length >= MAX_REMOVED_TEXTS) break;
    }
  }
  return texts;
}

/**
 * `text` with every occurrence of the removed texts replaced by REDACTED, longest first: an upstream's error message
 * or a reason that quotes a value the redaction took out of the arguments (`password hunter22 rejected`) must not
 * keep it. Returns `text` itself when there is nothing to take out.
 */
export function withoutTexts(text: string, removed: readonly string[]): string {
  return removed.length === 0 ? text : withoutLongestFirst(text, longestFirst(removed));
}

const longestFirst = (removed: readonly string[]): string[] => [...removed].sort((a, b) => b.length - a.length);

function withoutLongestFirst(text: string, sorted: readonly string[]): string {
  let out = text;
  for (const value of sorted) if (out.includes(value)) out = out.replaceAll(value, REDACTED);
  return out;
}

/**
 * `withoutTexts` applied to every string (object keys included) inside a JSON value: the arguments' own removed value
 * echoed back in a result (`Found 123-45-6789`) is taken out there too. Returns the value itself when nothing changed,
 * else a copy changed where needed (`__proto__` stays an own key).
 */
export function withoutTextsIn<T>(value: T, removed: readonly string[]): T {
  if (removed.length === 0) return value;
  const sorted = longestFirst(removed);
  const numbers = new Set(removed);
  // A removed number echoed as a number (`"card": 4111111111111111`) becomes the redaction mark too.
  return mapStrings(value, (text) => withoutLongestFirst(text, sorted), (number) => (numbers.has(String(number)) ? REDACTED : number));
}

/**
 * Compiles JSON paths (`$.arguments.card.number`, `arguments.items[*].ssn`, `result.*.email`; the leading `$.` is
 * optional; `*` matches any key or index) into a function that replaces the values found there. Uses pino's
 * redaction engine (@pinojs/redact), which copies only the branches it changes. Throws
 * `InvalidRedactionPathError` for a path it cannot parse.
 */
export function compileRedactionPaths(paths: readonly string[]): PathRedactor {
  if (paths.length === 0) return identity;
  const normalised = paths.map((path) => {
    const trimmed = path.trim().replace(/^\$\.?/, '');
    if (trimmed.length === 0) throw new InvalidRedactionPathError(path);
    return trimmed;
  });
  let redact: (value: unknown) => unknown;
  // Where the censor reports what it replaces, for the call in progress (redaction is synchronous).
  let removing: unknown[] | undefined;
  const censor = (value: unknown): string => {
    if (removing) remember(value, removing);
    return REDACTED;
  };
  try {
    redact = createRedactor({ paths: normalised, censor, serialize: false, strict: false });
  } catch {
    // Name the first path that fails on its own.
    const bad = normalised.find((path) => {
      try {
        createRedactor({ paths: [path], serialize: false });
        return false;
      } catch {
        return true;
      }
    });
    throw new InvalidRedactionPathError(bad ?? normalised.join(', '));
  }
  return (value, removed) => {
    removing = removed;
    let out: Record<string, unknown>;
    try {
      out = redact(value) as Record<string, unknown>;
    } finally {
      removing = undefined;
    }
    // The engine hangs a `restore()` on the copy it returns; keep the data only.
    if (Object.prototype.hasOwnProperty.call(value, 'restore')) out['restore'] = value['restore'];
    else delete out['restore'];
    return out as typeof value;
  };
}
