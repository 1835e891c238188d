import { credentialTextsIn, namesQuerySecret, namesSecret, REDACTED } from './redact';

/**
 * What of an upstream's configuration holds the secrets given to it, opened: the gateway's `UpstreamConfig` and the
 * control plane's test-connection target are both one. Shared so that both mask the same values: the gateway in what
 * it relays to agents, the control plane in the definitions it stores and shows to members (tool pinning).
 */
export interface UpstreamSecrets {
  readonly url: string | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/**
 * Configured values shorter than this are left alone: a short one (`1`, `true`, a port) would mask ordinary words,
 * and is not a credential.
 */
const MASKED_MIN_LENGTH = 8;

/** A line of a multi-line value masked on its own: base64, hex or a JWT, 16 characters or more, no spaces (PEM's body lines). */
const KEY_MATERIAL_LINE = /^[A-Za-z0-9+/=_.-]{16,}$/;
/** The most lines a multi-line value may have for its lines to be masked one by one (a 4096-bit RSA key has about 50). */
const MASKED_LINES_MAX = 100;

/** Words that make a flag's value a credential: one part of its name (`--api-key`, `--client_secret`, `--authToken`). */
const CREDENTIAL_WORDS = new Set(['token', 'key', 'secret', 'password', 'passwd', 'pwd', 'auth', 'credential', 'credentials', 'cookie', 'apikey', 'accesskey', 'secretkey', 'privatekey', 'authtoken', 'accesstoken', 'bearer']);

/** Whether a name (a flag without its dashes, a header) has a credential word as one of its parts (split at `-`, `_`, `.`, and camel case). */
function hasCredentialWord(name: string): boolean {
  const words = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').split(/[\s_.-]+/);
  return words.some((word) => CREDENTIAL_WORDS.has(word.toLowerCase()));
}

/**
 * Whether `flag` (`--name` or `-name`) names a credential by one of its parts, or ends in a credential's own name
 * (`--pass`, `--smtp-pass`, `--gh-pat`: the words the control plane refuses literal values of; found by re-review).
 */
function isCredentialFlag(flag: string): boolean {
  if (!/^--?[A-Za-z][\w.-]*$/.test(flag)) return false;
  const name = flag.replace(/^--?/, '');
  return hasCredentialWord(name) || namesCredentialItself(name);
}

/**
 * The values a server's arguments give to flags named like credentials, as `--flag=value` or `--flag value`: masked
 * as configured env values are (a server that echoes its command line would show them).
 */
export function credentialArgs(args: readonly string[]): string[] {
  const values: string[] = [];
  args.forEach((arg, index) => {
    const equals = arg.indexOf('=');
    if (equals > 0 && isCredentialFlag(arg.slice(0, equals))) values.push(arg.slice(equals + 1));
    else if (equals === -1 && isCredentialFlag(arg)) {
      const next = args[index + 1];
      if (next !== undefined && !next.startsWith('-')) values.push(next);
    }
  });
  return values;
}

/**
 * The last words of a name that make it the credential itself (`--api-key`, `--access-token`, `CLIENT_SECRET=`), not
 * something about one (`--key-file`, `--auth-type`, `--token-url`), nor a public key (`--public-key`).
 */
const CREDENTIAL_LAST_WORDS = new Set(['token', 'key', 'secret', 'password', 'passwd', 'pass', 'pwd', 'apikey', 'accesskey', 'secretkey', 'privatekey', 'authtoken', 'accesstoken', 'pat', 'credential', 'credentials']);

function namesCredentialItself(name: string): boolean {
  const words = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').split(/[\s_.-]+/).map((word) => word.toLowerCase());
  return CREDENTIAL_LAST_WORDS.has(words.at(-1) ?? '') && !words.includes('public');
}

const isFlag = (text: string): boolean => /^--?[A-Za-z][\w.-]*$/.test(text);

/** `${NAME}`: a reference to the upstream's sealed env, resolved at spawn (`argsWithEnv`); no credential in itself. */
const ENV_REFERENCE = /\$\{[A-Za-z_][A-Za-z0-9_]*\}/g;

/**
 * A segment no path holds but a random key does: long, upper and lower case mixed, with digits or very long. Base64
 * holds `/` (found by re-review: AWS secret keys passed as paths, absolute or relative).
 */
const randomSegment = (segment: string): boolean =>
  segment.length >= 16 && /[A-Z]/.test(segment) && /[a-z]/.test(segment) && (/[0-9]/.test(segment) || segment.length >= 24);

/**
 * Whether a value given to a credential-named flag or variable is a path rather than the credential: a file name with an
 * extension anywhere (`keyfile.pem`, `config/TLS/server.key`), an absolute, home or dot-relative path (`/etc/key`,
 * `~/.ssh/id`), or a relative one in lower-case directories (`keys/id_ed25519`); never one with white space, `+` or `=`
 * (base64) or a segment only a random key has.
 */
function pathLike(value: string): boolean {
  if (/[\s+=]/.test(value)) return false;
  const segments = value.split('/');
  if (segments.some(randomSegment)) return false;
  if (/\.[A-Za-z][A-Za-z0-9]{0,4}$/.test(value) || /^(?:\/|\.\.?\/|~\/)/.test(value)) return true;
  return segments.length > 1 && segments.slice(0, -1).every((segment) => /^[a-z0-9_.-]+$/.test(segment));
}

/** A lower-case identifier (`created_at`, `user-id`): what a flag naming a key field (`--sort-key`) is given. */
const IDENTIFIER = /^[a-z]+(?:[_-][a-z]+)*$/;

/**
 * Whether `value`, given to something named `name` (a flag, a variable), is a credential: shaped like a token, and no
 * URL (judged on its own), path (`pathLike`) or, for a name ending in `key`, identifier. A passphrase of lower-case words
 * given to `--password` still is one.
 */
const credentialValue = (name: string, value: string): boolean =>
  looksLikeToken(value) && !value.includes('://') && !pathLike(value) && !(/key$/i.test(name) && IDENTIFIER.test(value));

/** Whether `text` holds a credential of a known shape; an HTTP credential's (`Bearer …`) only if the part after is token-shaped. */
function holdsKnownCredential(text: string): boolean {
  return credentialTextsIn(text).some((found) => {
    const scheme = /^(?:bearer|basic)\s+(.*)$/i.exec(found);
    return scheme === null || looksLikeToken(scheme[1] as string);
  });
}

/**
 * The index of the first argument that plainly holds a credential, or -1: a token of a known shape, a URL's password or
 * credential query value (what the audit redactor hides), or a token-shaped value given to a flag or a variable named
 * for the credential itself (`--api-key=…`, `--token …`, Docker's `-e GITHUB_TOKEN=…`). `${NAME}` references are judged
 * as the empty text they stand for. A stdio upstream's arguments are shown to every member of the tenant: the control
 * plane refuses such an argument, and the value goes in the sealed env, referenced as `${NAME}`.
 */
export function credentialArgIndex(args: readonly string[]): number {
  const judged = args.map((arg) => arg.replace(ENV_REFERENCE, ''));
  return judged.findIndex((arg, index) => {
    if (holdsKnownCredential(arg)) return true;
    const equals = arg.indexOf('=');
    if (equals > 0) {
      const name = arg.slice(0, equals);
      const named = isFlag(name) ? namesCredentialItself(name.replace(/^--?/, '')) : /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && (namesSecret(name) || namesCredentialItself(name));
      return named && credentialValue(name, arg.slice(equals + 1));
    }
    const previous = args[index - 1];
    return previous !== undefined && isFlag(previous) && namesCredentialItself(previous.replace(/^--?/, '')) && !arg.startsWith('-') && credentialValue(previous, arg);
  });
}

/**
 * Replaces an upstream's configured secrets wherever they appear in a text: a server that prints the token it was
 * refused with, or dumps its environment, would otherwise put them where they are read (the gateway's logs, an
 * agent's error). Each value is also matched as JSON writes it (quotes and backslashes escaped), longest first, so a
 * value that contains another is masked whole; a value holding `/` also as written with `\\/`.
 */
export class SecretMask {
  private readonly secrets: readonly string[];

  constructor(values: Iterable<string>) {
    const secrets = new Set<string>();
    const each = function* (): Generator<string> {
      for (const value of values) {
        yield value;
        // A value of several lines (a PEM key) is also masked line by line: what prints it is often read a line at a
        // time (a log of a server's stderr), where no line holds the whole value. Only the lines that look like key
        // material (PEM's armour, a YAML file's structure are ordinary text), and of a value longer than a key's size
        // only a private key's (a bundle of hundreds of certificates is public, and each line a mask would slow every
        // mask).
        if (!/[\r\n]/.test(value)) continue;
        const lines = value.split(/\r?\n|\r/);
        // The lines of a private key are masked however long the value (a key with its certificate chain, found by
        // re-review); other key-material lines only in a value of a key's size.
        const all = lines.length <= MASKED_LINES_MAX;
        let inPrivateKey = false;
        for (const line of lines) {
          if (/^-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----$/.test(line)) inPrivateKey = true;
          else if (/^-----END [A-Z0-9 ]*PRIVATE KEY-----$/.test(line)) inPrivateKey = false;
          if (!all && !inPrivateKey) continue;
          if (KEY_MATERIAL_LINE.test(line)) yield line;
          // A credential-named entry of a YAML or properties text (a kubeconfig's `token: …`): its value.
          // (White space after a dash only: `^\s*-?\s*` tried every split of a line of spaces between its two `\s*`, and
          // fifty headers whose Basic value decoded to such lines took seconds a mask, found by review.)
          const entry = /^\s*(?:-\s*)?([A-Za-z][\w.-]*)\s*[:=]\s*["']?([^\s"']{8,})["']?\s*$/.exec(line);
          if (entry !== null && hasCredentialWord(entry[1] as string)) yield entry[2] as string;
        }
      }
    };
    for (const value of each()) {
      if (value.length < MASKED_MIN_LENGTH) continue;
      secrets.add(value);
      const escaped = JSON.stringify(value).slice(1, -1);
      secrets.add(escaped);
      // JSON writers that also escape `/` (PHP's json_encode, some Java ones): base64 tokens hold slashes.
      if (escaped.includes('/')) secrets.add(escaped.replaceAll('/', '\\/'));
      // And as other languages' JSON writers write it, with more characters as `\uXXXX` (a tool's result is often a
      // JSON text the server wrote itself: an Azure key's `+`, a password's `&` passed through; found by review).
      for (const variant of jsonWritersEscapes(escaped)) secrets.add(variant);
    }
    this.secrets = [...secrets].sort((a, b) => b.length - a.length);
  }

  /** The length of the longest value masked (0 with none). */
  get longest(): number {
    return this.secrets[0]?.length ?? 0;
  }

  mask(text: string): string {
    let masked = text;
    for (const secret of this.secrets) if (masked.includes(secret)) masked = masked.replaceAll(secret, REDACTED);
    return masked;
  }

  /**
   * `mask` for a text cut from a longer one: a value running past the cut is not there whole, so its beginning at the
   * end of the text (MASKED_PREFIX_MIN characters or more) is masked too.
   */
  maskCut(text: string): string {
    let masked = this.mask(text);
    for (const secret of this.secrets) {
      const from = Math.max(0, masked.length - secret.length + 1);
      for (let at = from; at <= masked.length - MASKED_PREFIX_MIN; at += 1) {
        if (masked.charCodeAt(at) === secret.charCodeAt(0) && secret.startsWith(masked.slice(at))) {
          masked = `${masked.slice(0, at)}${REDACTED}`;
          break;
        }
      }
    }
    return masked;
  }

  /**
   * `mask` for a text relayed cut to `limit` characters and marked so with a final `…` (an upstream's instructions,
   * `relayedInstructions`): a value the cut split is masked by its beginning too (`maskCut`). The gateway and the control
   * plane's probe mask instructions alike with it (found by review: the beginning of a value the cut split was shown).
   */
  maskRelayed(text: string, limit: number): string {
    return text.length >= limit && text.endsWith('…') ? `${this.maskCut(text.slice(0, -1))}…` : this.mask(text);
  }
}

/**
 * The ways other JSON writers write a string where `JSON.stringify` writes it otherwise: .NET's System.Text.Json writes
 * ``+ & < > ' ` "`` and every non-ASCII character as `\uXXXX` in upper case (its control characters' escapes too), Go's
 * encoding/json `< > &` in lower case, Python's json.dumps and PHP's json_encode every non-ASCII character in lower case
 * (PHP also `/` as `\/`). Built with `replaceAll` (no call back per character: a long value of `+` would cost one each).
 */
const DOTNET_ESCAPED = ['+', '&', '<', '>', "'", '`'] as const;
const GO_ESCAPED = ['&', '<', '>'] as const;
/** Whether any JSON writer above writes a character of a text otherwise than `JSON.stringify` does. */
const OTHERWISE_ESCAPED = /[+&<>'`"\u0080-\uffff]|\\u[0-9a-f]{4}/;
const NON_ASCII = /[\u0080-\uffff]/g;

const unicodeEscape = (character: string, upper: boolean): string => {
  const hex = character.charCodeAt(0).toString(16).padStart(4, '0');
  return `\\u${upper ? hex.toUpperCase() : hex}`;
};
const escapedAs = (text: string, characters: readonly string[], upper: boolean): string =>
  characters.reduce((written, character) => written.replaceAll(character, unicodeEscape(character, upper)), text);

/** `escaped` (a value as `JSON.stringify` writes it, without quotes) as each of the JSON writers above writes it, where that differs. */
function jsonWritersEscapes(escaped: string): string[] {
  if (escaped.length > OTHER_FORMS_MAX_CHARS || !OTHERWISE_ESCAPED.test(escaped)) return [];
  const nonAscii = NON_ASCII.test(escaped);
  NON_ASCII.lastIndex = 0;
  // .NET: its own spelling of a quote and of control characters, then its characters.
  // (An escaped backslash is taken whole first: `\\u00ab` is a backslash and `u00ab`, no escape to spell otherwise.)
  let dotnet = escaped.includes('\\u') ? escaped.replace(/\\\\|\\u[0-9a-f]{4}/g, (token) => (token.length === 2 ? token : `\\u${token.slice(2).toUpperCase()}`)) : escaped;
  dotnet = escapedAs(dotnet.replaceAll('\\"', '\\u0022'), DOTNET_ESCAPED, true);
  if (nonAscii) dotnet = dotnet.replace(NON_ASCII, (character) => unicodeEscape(character, true));
  const variants = new Set([dotnet, escapedAs(escaped, GO_ESCAPED, false)]);
  if (nonAscii) {
    const python = escaped.replace(NON_ASCII, (character) => unicodeEscape(character, false));
    variants.add(python);
    variants.add(python.replaceAll('/', '\\/'));
  }
  variants.delete(escaped);
  return [...variants];
}

/** The fewest characters of a value's beginning `maskCut` masks at the end of a cut text (fewer tell nothing). */
const MASKED_PREFIX_MIN = 4;

/** Where a header value divides into parts that may each be a credential (`sid=…; token=…`, `Token token=…, a=…`). */
const VALUE_PARTS = /[\s;,]+/;

/**
 * The secrets an upstream is given, in every form an upstream might quote them:
 * - header values whole; for a header named like a credential (`Authorization`, `Cookie`, `X-Upstream-Key`) also each
 *   part (after an auth scheme, a cookie's or a parameter's value after its `=`) and the user and password a `Basic`
 *   value encodes;
 * - env values, and the values of credential flags in the arguments;
 * - the user and password of its URL, and the values of query parameters named like credentials; the same of a
 *   connection string among the env values or arguments;
 * - each of those URL-encoded too (an upstream that echoes a request line or a form), as the common encoders write it
 *   (`urlEncodings`).
 * Parts of other headers and other query values (`Domain=api.example.com`, `region=us-east-1`) are ordinary words,
 * and masking them would garble every message that uses them.
 */
function configuredSecrets(config: UpstreamSecrets, credentialsOnly = false, tokenShaped = true): string[] {
  // A name ending in a credential's own name counts too: `GH_PAT`, `SMTP_PASS` (as for flags, found by reviews).
  const credentialName = (name: string): boolean => namesSecret(name) || hasCredentialWord(name) || namesCredentialItself(name);
  const env = Object.entries(config.env).filter(([name]) => !credentialsOnly || credentialName(name));
  const values = [...env.map(([, value]) => value), ...credentialArgs(config.args)];
  // An env value with white space or a newline around it, as a server that trims what it reads would quote it.
  for (const [, value] of env) if (value.trim() !== value) values.push(value.trim());
  for (const [name, value] of Object.entries(config.headers)) {
    if (!credentialsOnly) values.push(value);
    // As it goes out and is read: an HTTP parser drops the white space around a field value (RFC 9110), so the server
    // quotes it without (found by review: a key stored with a space around it was shown unmasked).
    if (!credentialsOnly && value.trim() !== value) values.push(value.trim());
    if (!credentialName(name)) continue;
    if (credentialsOnly) values.push(value);
    for (const part of value.split(VALUE_PARTS)) {
      // A `name=value` part's value (the name is no secret, and the whole would mask the name with it). A part whose
      // `=` is no such separator is a token whole: base64 with its padding (`abc/def+g==`, `abcdefgh==`).
      const equals = part.indexOf('=');
      const rest = part.slice(equals + 1);
      const parameter = equals > 0 && /^[A-Za-z][\w.-]*$/.test(part.slice(0, equals)) && !/^=*$/.test(rest);
      const value = parameter ? rest : part;
      values.push(value);
      // An auth-parameter's quoted value (`Token token="…"`, Digest's `response="…"`): also the bare text, unescaped.
      const quoted = /^"((?:[^"\\]|\\.)*)"[,;]?$/.exec(value)?.[1];
      if (quoted !== undefined && quoted !== '') values.push(quoted.replace(/\\(.)/g, '$1'));
    }
    const basic = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(value)?.[1];
    if (basic !== undefined) {
      const decoded = Buffer.from(basic, 'base64').toString('utf8');
      values.push(decoded);
      const colon = decoded.indexOf(':');
      if (colon >= 0) values.push(decoded.slice(colon + 1));
    }
  }
  // A URL's user is a secret among the configured values, not an unmistakable credential (`postgres` names a database
  // server's tools and resources too): the credentials alone leave it out.
  const withUser = !credentialsOnly;
  if (config.url !== null) urlSecrets(config.url, values, withUser);
  // A connection string in the env or the arguments (`postgres://user:password@host/db`), whole or inside a longer value
  // (`--dsn=postgres://…`, `DSN=…;timeout=5`): its user and password alone.
  for (const value of [...Object.values(config.env), ...config.args]) {
    if (!value.includes('://') || !value.includes('@')) continue;
    // The whole value too: a password holding a character that ends an embedded match (`;`, `,`) is read whole there.
    urlSecrets(value, values, withUser);
    for (const embedded of embeddedUrls(value)) if (embedded !== value) urlSecrets(embedded, values, withUser);
  }
  for (const value of [...values]) for (const encoded of urlEncodings(value)) values.push(encoded);
  // What masks every result must look like a token: a word (`AUTH_METHOD=password`) would be masked in ordinary text.
  return credentialsOnly && tokenShaped ? values.filter(looksLikeToken) : values;
}

/**
 * `value` URL-encoded as the encoders upstreams are written with do it, where that differs from `value`: JavaScript's
 * `encodeURIComponent`; RFC 3986's strict form (`! ' ( ) *` encoded too: Python's quote, Go's QueryEscape, PHP's
 * rawurlencode), also with `~` encoded (PHP's urlencode, Java's URLEncoder); a form's (a space as `+`); each with hex
 * in upper and lower case (.NET's HttpUtility writes lower), and with `/` kept (Python's quote). Before, only the first
 * (found by reviews).
 */
/**
 * The longest value also masked in other encoders' and JSON writers' forms (`urlEncodings`, `jsonWritersEscapes`): a
 * credential is shorter (a JWT a few hundred characters, a key's lines are masked one by one), and each form of a long
 * text is one more long secret to build and look for in every text masked.
 */
const OTHER_FORMS_MAX_CHARS = 4_096;

const HEX_LETTER_ESCAPE = /%(?:[0-9A-F][A-F]|[A-F][0-9])/;
const HEX_LETTER_ESCAPES = new RegExp(HEX_LETTER_ESCAPE.source, 'g');

/** `encoded` with each of `characters` (which `encodeURIComponent` leaves) percent-encoded too. */
const encodingAlso = (encoded: string, characters: readonly string[]): string =>
  characters.reduce((written, character) => written.replaceAll(character, `%${character.charCodeAt(0).toString(16).toUpperCase()}`), encoded);

function urlEncodings(value: string): string[] {
  const component = encodeURIComponent(value);
  if (value.length > OTHER_FORMS_MAX_CHARS) return component === value ? [] : [component];
  const forms = new Set([component]);
  // Each form only where the value holds what tells it apart (a long value of plain characters costs nothing more).
  if (/[!'()*~]/.test(value)) {
    const strict = encodingAlso(component, ['!', "'", '(', ')', '*']);
    forms.add(strict);
    forms.add(encodingAlso(strict, ['~']));
    // Java's URLEncoder keeps `*` and encodes the rest; .NET's HttpUtility keeps `! * ( )` and encodes `'` and `~`
    // (found by re-review).
    forms.add(encodingAlso(component, ['!', "'", '(', ')', '~']));
    forms.add(encodingAlso(component, ["'", '~']));
  }
  if (value.includes(' ')) for (const form of [...forms]) forms.add(form.replaceAll('%20', '+'));
  if (value.includes('/')) for (const form of [...forms]) forms.add(form.replaceAll('%2F', '/'));
  // Only the escapes with a letter in them change (`%2F`, not `%20`): a value of many spaces is not called back for each.
  for (const form of [...forms]) if (HEX_LETTER_ESCAPE.test(form)) forms.add(form.replace(HEX_LETTER_ESCAPES, (escape) => escape.toLowerCase()));
  forms.delete(value);
  return [...forms];
}

/** A credential's shape: a digit, a symbol or a space in it (tokens, keys, `Bearer …`), or long enough to be no word. */
const looksLikeToken = (value: string): boolean => value.length >= MASKED_MIN_LENGTH && (/[^A-Za-z]/.test(value) || value.length >= 24);

const isLetter = (code: number): boolean => (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a);
/** A character of a URL scheme after its first (RFC 3986: letters, digits, `+`, `.`, `-`). */
const isSchemeCharacter = (code: number): boolean => isLetter(code) || (code >= 0x30 && code <= 0x39) || code === 0x2b || code === 0x2e || code === 0x2d;
/** What ends a URL inside a longer text: white space, a quote, a separator. */
const URL_END = /[\s'"`,;<>]/;

/**
 * The URLs inside a longer text, in order: a scheme (the leftmost letter of the scheme characters before a `://`),
 * `://`, and what follows up to white space, a quote or a separator; after one, the search goes on past its end. What
 * `/[a-z][a-z0-9+.-]*:\/\/[^\s'"`,;<>]+/gi` matches, found from each `://` instead: that pattern was tried from every
 * letter of a long run of them and scanned each time to the run's end, and a value of 64,000 letters (an argument
 * with `${NAME}` references expanded) took seconds a mask (found by review).
 */
export function embeddedUrls(value: string): string[] {
  const found: string[] = [];
  let from = 0;
  for (let at = value.indexOf('://'); at >= 0; at = value.indexOf('://', Math.max(at + 1, from))) {
    let start = at;
    while (start > from && isSchemeCharacter(value.charCodeAt(start - 1))) start -= 1;
    while (start < at && !isLetter(value.charCodeAt(start))) start += 1;
    if (start === at) continue;
    let end = at + 3;
    while (end < value.length && !URL_END.test(value.charAt(end))) end += 1;
    if (end === at + 3) continue;
    found.push(value.slice(start, end));
    from = end;
  }
  return found;
}

/** Adds the user and password of `text` read as a URL, and its query values named like credentials. */
function urlSecrets(text: string, values: string[], withUser = true): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return; // not a URL this side can read: nothing to add
  }
  for (const userinfo of withUser ? [url.username, url.password] : [url.password]) {
    if (userinfo === '') continue;
    values.push(userinfo);
    try {
      values.push(decodeURIComponent(userinfo));
    } catch {
      // a malformed escape: the encoded form is masked
    }
  }
  for (const [name, value] of url.searchParams) if (namesQuerySecret(name)) values.push(value);
}

/** Made once per configuration (a configuration is replaced, never changed, when the upstream is edited). */
const masks = new WeakMap<UpstreamSecrets, SecretMask>();
const credentialMasks = new WeakMap<UpstreamSecrets, SecretMask>();

export function secretMaskOf(config: UpstreamSecrets): SecretMask {
  let mask = masks.get(config);
  if (mask === undefined) {
    // The base64 middles of every value named as a credential, whatever its shape (a password of letters only: found
    // by re-review); not of other values (a path, `production`): a middle of 6 of their bytes turned up in ordinary
    // base64 content (an image, a blob) and garbled it (found by the next re-review).
    mask = new SecretMask([...configuredSecrets(config), ...base64Cores(configuredSecrets(config, true, false))]);
    masks.set(config, mask);
  }
  return mask;
}

/**
 * What any base64 text of a longer text holding one of `credentials` holds of it, whatever came before it: a server
 * given an account and a token in its env authenticates with `Basic base64(account:token)`, and an HTTP client's error
 * quotes that header (found by a review: the token then reached the agent, only encoded). base64 writes three bytes as
 * four characters, so where the credential starts in its group of three (three ways) decides the text of its middle;
 * its first and last group, shared with what surrounds it, are left out. Masking the three middles leaves at most two
 * bytes of the credential at each end. For every credential masked at all (8 characters or more: a password of 8 has
 * middles of 6 bytes, 8 characters; a first floor of 12 characters left passwords of 8 to 10 readable, found by
 * re-review).
 */
function base64Cores(credentials: readonly string[]): string[] {
  const cores: string[] = [];
  for (const credential of credentials) {
    const bytes = Buffer.from(credential, 'utf8');
    if (credential.length < MASKED_MIN_LENGTH) continue;
    for (let skip = 0; skip < 3; skip += 1) {
      const whole = Math.floor((bytes.length - skip) / 3) * 3;
      if (whole > 0) cores.push(bytes.subarray(skip, skip + whole).toString('base64'));
    }
  }
  return cores;
}

/**
 * The part of `secretMaskOf` that is unmistakably a credential: the values of headers, env variables and flags named
 * like one (`Authorization`, `GITHUB_TOKEN`, `--api-key`) and their parts, and the password and credential-named query
 * values of the URL and of connection strings, each only if shaped like a token. Other env values and headers, and
 * users, are left out: they are often ordinary words or paths (`ALLOWED_DIR=/srv/data`, a database user) that a tool's
 * output, names and URIs use in their own right.
 */
export function credentialMaskOf(config: UpstreamSecrets): SecretMask {
  let mask = credentialMasks.get(config);
  if (mask === undefined) {
    const credentials = configuredSecrets(config, true);
    mask = new SecretMask([...credentials, ...base64Cores(credentials)]);
    credentialMasks.set(config, mask);
  }
  return mask;
}

/**
 * Nesting past which a value is not walked: an object or array that deep is passed whole when its JSON text holds no
 * secret (in any of the forms masked), and masked whole when it holds one or cannot be written as JSON.
 */
const MAX_MASK_DEPTH = 32;

/**
 * `value` (parsed JSON) with the secrets masked in every string of it, keys included; the same value when none holds
 * one. Strings are masked one by one, so numbers and the structure stay as they were.
 */
export function maskValue(mask: SecretMask, value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return mask.mask(value);
  if (typeof value !== 'object' || value === null) return value;
  // Not walked further (the walk recurses); serialised instead, which may fail past V8's own depth limit.
  if (depth >= MAX_MASK_DEPTH) {
    let text: string;
    try {
      text = JSON.stringify(value);
    } catch {
      return REDACTED;
    }
    return mask.mask(text) === text ? value : REDACTED;
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item: unknown, index) => {
      const masked = maskValue(mask, item, depth + 1);
      if (masked !== item) (copy ??= [...value])[index] = masked;
    });
    return copy ?? value;
  }
  let copy: Record<string, unknown> | undefined;
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    const maskedKey = mask.mask(key);
    const masked = maskValue(mask, item, depth + 1);
    if (masked === item && maskedKey === key) continue;
    copy ??= { ...(value as Record<string, unknown>) };
    if (maskedKey !== key) delete copy[key];
    copy[maskedKey] = masked;
  }
  return copy ?? value;
}

/** What names a listed item: kept as the upstream wrote it (masked, a tool could no longer be called by its name). */
const LISTED_IDENTITY = new Set(['name', 'uri', 'uriTemplate']);

/**
 * A listed item (a tool, prompt, resource or template) with the secrets configured for its upstream masked in what it
 * says (description, title, schemas, annotations), not in what names it: like the upstream's instructions, it is the
 * upstream's text the agent's model reads, and an upstream that quotes the credential it was sent must not show it
 * there either. The gateway masks what the agent is shown, after the hooks judged the item as the upstream wrote it;
 * the control plane masks the definitions it stores and shows to members. Either way the content hash (tool pinning)
 * is of the item as the upstream wrote it. The same item when nothing needed masking.
 */
export function maskListedItem(mask: SecretMask, item: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  if (mask.longest === 0) return item;
  let masked: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(item)) {
    if (LISTED_IDENTITY.has(key)) continue;
    const after = maskValue(mask, value);
    if (after !== value) (masked ??= { ...item })[key] = after;
  }
  return masked ?? item;
}

