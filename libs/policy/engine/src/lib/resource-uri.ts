/**
 * One spelling per resource URI for matching: the gateway forwards a resource URI as the agent wrote it, and an
 * upstream's URL parser reads several spellings as one resource (`donn%C3%A9es` and `données`, `%20` and a space, `%3a`
 * and `%3A`, `R%26D` and `R&D` in a file path, `x.pem` and `x.pem#/`). Rules and the URIs they are matched against are
 * both brought to this form, so a deny rule cannot be stepped around by spelling the URI differently, and a rate limit
 * per resource cannot be split into new counters by the same trick.
 *
 * The form: the fragment dropped (it names a part of the resource, never another one); each percent-encoded UTF-8
 * character decoded, except `/`, `?`, `#`, `%`, glob syntax (`*`, `\`) and control characters, which stay encoded with
 * upper-case hex, as do bytes that are not UTF-8. Outside `file:` the other delimiters (`;:@&=+$,[]`) stay encoded too:
 * there `a%26b` and `a&b` may name different things (a query's value and its separator); a file path gives them no
 * meaning, and `fileURLToPath` decodes them all.
 *
 * In a `file:` path the characters kept encoded are still characters of a file's name (`fileURLToPath` reads `%2A`,
 * `%3F`, `%23` and `%25` as `*`, `?`, `#` and `%`), so there they are written encoded wherever they stand for
 * themselves: a literal `*` in a `file:` URI is written `%2A`, and in the `file:` form of a rule's glob, `\*`, `\?`,
 * `\#` and `\%` are written `%2A`, `%3F`, `%23` and `%25`, as is a `%` that does not start an escape (`100%.txt`).
 * Unescaped `*` and `?` in a glob stay wildcards, and an unescaped `#` still starts a fragment. Other schemes keep
 * these as written: there `*` and `%2A` may name different things (RFC 3986 reserves `*`), `\?` is how a glob names a
 * query's `?` and `\#` a fragment's `#`, and a `%` that starts no escape is not a valid URI's spelling of anything. A
 * `?` wildcard stands for one character of this form, so not for a `*`, `?`, `#` or `%` of a file's name (three).
 */

/** Characters that keep their percent-encoding in every URI: decoding them would change its structure or a glob's meaning. */
const ALWAYS_ENCODED = new Set(['/', '?', '#', '%', '*', '\\']);
/** Also kept encoded outside `file:` URIs. */
const DELIMITERS = new Set([';', ':', '@', '&', '=', '+', '$', ',', '[', ']']);

const ESCAPE_RUN = /(?:%[0-9A-Fa-f]{2})+/g;

/** The number of bytes of the UTF-8 sequence a lead byte starts, or 0 for a byte that cannot start one. */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

const upperEscape = (byte: number): string => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;

/** A run of `%XX` escapes, decoded where that is safe (see the module's comment). */
function decodeRun(run: string, file: boolean): string {
  const bytes: number[] = [];
  for (let at = 0; at < run.length; at += 3) bytes.push(Number.parseInt(run.slice(at + 1, at + 3), 16));
  let out = '';
  let at = 0;
  while (at < bytes.length) {
    const length = sequenceLength(bytes[at] as number);
    let decoded: string | undefined;
    if (length > 0 && at + length <= bytes.length) {
      const escapes = bytes.slice(at, at + length).map(upperEscape).join('');
      try {
        decoded = decodeURIComponent(escapes);
      } catch {
        decoded = undefined; // not UTF-8 (an overlong form, a surrogate, a bad continuation byte)
      }
    }
    const code = decoded?.codePointAt(0);
    const kept = decoded === undefined || code === undefined || code < 0x20 || code === 0x7f || ALWAYS_ENCODED.has(decoded) || (!file && DELIMITERS.has(decoded));
    if (kept || decoded === undefined) {
      out += upperEscape(bytes[at] as number);
      at += 1;
    } else {
      out += decoded;
      at += length;
    }
  }
  return out;
}

const FILE_SCHEME = /^file:/i;

/** `uri` in the one spelling rules are matched against (see the module's comment). Cheap for URIs without `%`, `#` or `*`. */
export function canonicalResourceUri(uri: string): string {
  const hash = uri.indexOf('#');
  const decoded = decodedText(hash === -1 ? uri : uri.slice(0, hash));
  // `%2A` stays encoded (glob syntax), so a file's `*` written plainly is written the same way.
  return decoded.includes('*') && FILE_SCHEME.test(decoded) ? decoded.replaceAll('*', '%2A') : decoded;
}

/** Whether a rule's URI glob names a fragment (a `#`, escaped or not). */
export const namesFragment = (pattern: string): boolean => pattern.includes('#');

/**
 * A rule's URI glob in the same spelling, its fragment cut as a URI's is (outside `file:`, a `#` escaped as `\#` too,
 * with its backslash). `file`: decode as for `file:` URIs (true), as for others (false), or as the pattern's own scheme
 * says (undefined); a pattern that does not start with a literal scheme may match both kinds, and needs both forms.
 */
export function canonicalResourcePattern(pattern: string, file: boolean = FILE_SCHEME.test(pattern)): string {
  let cut = pattern.length;
  for (let at = 0; at < pattern.length; at++) {
    const ch = pattern[at];
    if (ch === '\\') {
      if (pattern[at + 1] === '#' && !file) {
        cut = at;
        break;
      }
      at += 1;
    } else if (ch === '#') {
      cut = at;
      break;
    }
  }
  const text = pattern.slice(0, cut);
  return file ? filePatternText(text) : decodedText(text, false);
}

/** The glob escapes a `file:` form writes percent-encoded: the characters a file's name holds encoded in its URI. */
const FILE_ESCAPES: Readonly<Record<string, string>> = { '*': '%2A', '?': '%3F', '#': '%23', '%': '%25' };
const ESCAPE_RUN_AT = /(?:%[0-9A-Fa-f]{2})+/y;

/**
 * A `file:` glob (its fragment cut) in the `file:` form: escape runs decoded as in a `file:` URI, `\*`, `\?`, `\#`,
 * `\%` and a `%` that starts no escape written encoded as the URI writes them (see the module's comment); wildcards and
 * other escapes as written.
 */
function filePatternText(text: string): string {
  if (!text.includes('%') && !text.includes('\\')) return text;
  let out = '';
  for (let at = 0; at < text.length; at++) {
    const ch = text[at] as string;
    if (ch === '\\') {
      const next = text[at + 1];
      if (next === undefined) return out + ch; // a dangling escape: left for the glob compiler to refuse
      out += FILE_ESCAPES[next] ?? ch + next;
      at += 1;
    } else if (ch === '%') {
      ESCAPE_RUN_AT.lastIndex = at;
      const run = ESCAPE_RUN_AT.exec(text)?.[0];
      if (run === undefined) out += '%25';
      else {
        out += decodeRun(run, true);
        at += run.length - 1;
      }
    } else out += ch;
  }
  return out;
}

function decodedText(text: string, file = FILE_SCHEME.test(text)): string {
  if (!text.includes('%')) return text;
  return text.replace(ESCAPE_RUN, (run) => decodeRun(run, file));
}

/** Whether a URI is a `file:` one (its canonical form decodes more). */
export const isFileUri = (uri: string): boolean => FILE_SCHEME.test(uri);
