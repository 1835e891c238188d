import { DEFAULT_HEADERLESS_VERSION, isSupportedVersion, type ProtocolVersion } from '@portcullis/gateway/mcp';

/** Header checks of the Streamable HTTP transport. Pure functions over header values: no I/O, no allocation-heavy parsing. */

export interface OriginPolicy {
  /** `host` or `host:port` values the Host header may take; empty allows any host. */
  readonly allowedHosts: ReadonlySet<string>;
  /** Exact origins (`https://app.example.com`) that may call from a browser; `*` allows any. */
  readonly allowedOrigins: ReadonlySet<string>;
}

export type HeaderValue = string | string[] | undefined;

const first = (value: HeaderValue): string | undefined => (Array.isArray(value) ? value[0] : value);

/**
 * The host a request is for: its Host header, or for an absolute-form target (`POST http://host/t/acme/mcp`) that
 * target's authority, which an origin server uses in place of Host (RFC 9112 §3.2.2). A target that names no host (`*`,
 * a malformed URL) is for none (''). Before, the Host header was checked for such a request as well (found by review).
 */
function hostOf(target: string | undefined, host: HeaderValue): string | undefined {
  if (target === undefined || target.charCodeAt(0) === 47 /* '/' */) return first(host);
  try {
    return new URL(target).host;
  } catch {
    return '';
  }
}

/**
 * DNS-rebinding protection. Requests without an Origin (non-browser agents) pass the Origin check; a
 * browser request must come from an allowed origin. Host is checked when hosts are configured: the one `target` (the
 * request line's) names, or else the Host header's.
 */
export function originProblem(target: string | undefined, host: HeaderValue, origin: HeaderValue, policy: OriginPolicy): string | undefined {
  if (policy.allowedHosts.size > 0) {
    const value = hostOf(target, host)?.toLowerCase();
    if (value === undefined) return 'Host header required';
    const bare = value.startsWith('[') ? value.slice(0, value.indexOf(']') + 1) : value.split(':')[0] ?? value;
    if (!policy.allowedHosts.has(value) && !policy.allowedHosts.has(bare)) return 'Host not allowed';
  }
  const originValue = first(origin);
  if (originValue !== undefined && !policy.allowedOrigins.has('*') && !policy.allowedOrigins.has(originValue.toLowerCase())) {
    return 'Origin not allowed';
  }
  return undefined;
}

interface MediaRange {
  readonly type: string;
  /** The range's weight (RFC 9110 §12.4.2): 0 means "not acceptable". */
  readonly q: number;
}

/** RFC 9110 §12.4.2: `0` to `1` with at most three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

function mediaRanges(accept: HeaderValue): MediaRange[] {
  const value = Array.isArray(accept) ? accept.join(',') : accept;
  if (!value) return [];
  return value.split(',').map((part) => {
    const [type, ...parameters] = part.split(';');
    let q = 1;
    for (const parameter of parameters) {
      const [name, weight] = parameter.split('=');
      if ((name ?? '').trim().toLowerCase() === 'q') {
        // Only an RFC 9110 qvalue counts; anything else (`q`, `q=`, `q=-0`, `q=2`) is read as the default rather than
        // refusing the request over it.
        const value = (weight ?? '').trim();
        if (QVALUE.test(value)) q = Number(value);
      }
    }
    return { type: (type ?? '').trim().toLowerCase(), q };
  });
}

/**
 * Whether `wanted` is acceptable: the most specific range that matches it decides (RFC 9110 §12.5.1), so
 * `*\/*, text/event-stream;q=0` accepts JSON and refuses SSE.
 */
const covers = (ranges: readonly MediaRange[], wanted: string): boolean => {
  const major = `${wanted.slice(0, wanted.indexOf('/'))}/*`;
  let best: MediaRange | undefined;
  let bestRank = -1;
  for (const range of ranges) {
    const rank = range.type === wanted ? 2 : range.type === major ? 1 : range.type === '*/*' ? 0 : -1;
    if (rank < 0 || rank < bestRank) continue;
    // The same range twice: the higher weight (lenient).
    if (rank > bestRank || range.q > (best?.q ?? 0)) {
      best = range;
      bestRank = rank;
    }
  }
  return best !== undefined && best.q > 0;
};

// Agents send the same Accept value on every request: remember the last answer instead of splitting it each time.
let lastPostAccept: string | undefined;
let lastPostAcceptOk = false;

/** POST: the client must accept both JSON and SSE responses. */
export const acceptsPostResponses = (accept: HeaderValue): boolean => {
  if (typeof accept === 'string' && accept === lastPostAccept) return lastPostAcceptOk;
  const ranges = mediaRanges(accept);
  const ok = covers(ranges, 'application/json') && covers(ranges, 'text/event-stream');
  if (typeof accept === 'string') {
    lastPostAccept = accept;
    lastPostAcceptOk = ok;
  }
  return ok;
};

/** GET (standalone stream, legacy SSE): the client must accept SSE. */
export const acceptsEventStream = (accept: HeaderValue): boolean => covers(mediaRanges(accept), 'text/event-stream');

/**
 * `application/json`, with no charset, UTF-8's or US-ASCII's (RFC 8259: JSON between systems is UTF-8). A body declared
 * in another charset is refused rather than read as UTF-8, which would change its text.
 */
export const isJsonContentType = (contentType: HeaderValue): boolean => {
  const value = first(contentType);
  if (!value) return false;
  if (value === 'application/json') return true;
  const [type, ...parameters] = value.split(';');
  if ((type ?? '').trim().toLowerCase() !== 'application/json') return false;
  return parameters.every((parameter) => {
    const [name, charset] = parameter.split('=');
    if ((name ?? '').trim().toLowerCase() !== 'charset') return true;
    // US-ASCII text reads the same as UTF-8.
    return /^"?(utf-?8|us-ascii)"?$/i.test((charset ?? '').trim());
  });
};

/**
 * Whether the body comes in a content coding the gateway does not apply (anything but `identity`: gzip, deflate, br…).
 * Read as it is, a compressed body would be refused as bad JSON, and one labelled compressed but sent plain would run
 * under another reading than the agent declared: it is refused with 415 instead (RFC 9110 §15.5.16).
 */
export const hasContentCoding = (contentEncoding: HeaderValue): boolean => {
  if (contentEncoding === undefined) return false;
  const values = Array.isArray(contentEncoding) ? contentEncoding : [contentEncoding];
  return values.some((value) => value.split(',').some((coding) => {
    const name = coding.trim().toLowerCase();
    return name !== '' && name !== 'identity';
  }));
};

/**
 * The protocol version of a request after initialisation: the header's value when supported, the
 * specification's default when absent, an error when present but unsupported. An empty header is present (Node gives
 * it as ''): only a missing one falls back to the default, so an empty one is refused like any other unsupported value.
 */
export function requestProtocolVersion(header: HeaderValue): { ok: true; version: ProtocolVersion } | { ok: false } {
  const value = first(header);
  if (value === undefined) return { ok: true, version: DEFAULT_HEADERLESS_VERSION };
  return isSupportedVersion(value) ? { ok: true, version: value } : { ok: false };
}

/** `Bearer <token>` → token; anything else → undefined. */
export function bearerToken(authorization: HeaderValue): string | undefined {
  const value = first(authorization);
  if (!value || value.length > 4096) return undefined;
  const space = value.indexOf(' ');
  if (space < 0 || value.slice(0, space).toLowerCase() !== 'bearer') return undefined;
  const token = value.slice(space + 1).trim();
  return token.length > 0 ? token : undefined;
}
