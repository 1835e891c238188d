/**
 * One spelling per resource URI for matching: the gateway forwards a resource URI as the agent wrote it, and an
 * upstream's URL parser reads several spellings as one resource (`donn%C3%A9es` and `données`, `%20` and a space, `%3a`
 * and `%3A`, `x.pem` and `x.pem#/`). Rules and the URIs they are matched against are both brought to this form, so a
 * deny rule cannot be stepped around by spelling the URI differently, and a rate limit per resource cannot be split
 * into new counters by the same trick.
 *
 * The form: the fragment dropped (it names a part of the resource, never another one); each percent-encoded UTF-8
 * character decoded, except the characters that delimit a URI's parts (`;/?:@&=+$,#`), `%` itself, glob syntax
 * (`*`, `\`) and control characters, which stay encoded with upper-case hex, as do bytes that are not UTF-8.
 */

/** Characters that keep their percent-encoding: decoding them would change the URI's structure or a glob's meaning. */
const KEPT_ENCODED = new Set([';', '/', '?', ':', '@', '&', '=', '+', '$', ',', '#', '%', '*', '\\', '[', ']']);

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
function decodeRun(run: string): string {
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
    if (decoded === undefined || code === undefined || code < 0x20 || code === 0x7f || KEPT_ENCODED.has(decoded)) {
      out += upperEscape(bytes[at] as number);
      at += 1;
    } else {
      out += decoded;
      at += length;
    }
  }
  return out;
}

/** `uri` in the one spelling rules are matched against (see the module's comment). Cheap for URIs without `%` or `#`. */
export function canonicalResourceUri(uri: string): string {
  const hash = uri.indexOf('#');
  const text = hash === -1 ? uri : uri.slice(0, hash);
  return text.includes('%') ? text.replace(ESCAPE_RUN, decodeRun) : text;
}
