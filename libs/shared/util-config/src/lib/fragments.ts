import proxyaddr from 'proxy-addr';
import { z } from 'zod';

/** Reusable field schemas for app configs. Each app composes its own schema from these. */
export const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

/**
 * An address a server listens on: an IP address (`0.0.0.0`, `::`, `127.0.0.1`) or a host name (`localhost`). Anything
 * else (a space, a scheme, a path) failed only when the server started, as a bare getaddrinfo error naming nothing.
 */
export const listenHost = (fallback: string) =>
  z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9_.:%-]+$/, 'must be an IP address or a host name to listen on (e.g. 0.0.0.0, ::, localhost)')
    .default(fallback);

export const nodeEnv = z.enum(['development', 'test', 'production']).default('development');

export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');

const urlWithProtocols = (protocols: readonly string[], what: string) =>
  z
    .string({ error: `${what} is required` })
    .trim()
    .min(1, `${what} is required`)
    .refine((value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    }, `must be a ${protocols.map((p) => p.replace(':', '://')).join(' or ')} URL`);

export const postgresUrl = urlWithProtocols(['postgres:', 'postgresql:'], 'a PostgreSQL URL');
// ioredis decodes the user, password and path itself, and a malformed escape (`pa%ZZss`) stopped a process at boot with
// a bare URIError naming nothing. (pg reads a lone `%` as written: a PostgreSQL URL is not held to this.)
export const redisUrl = urlWithProtocols(['redis:', 'rediss:'], 'a Redis URL').refine((value) => {
  try {
    const url = new URL(value);
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
    decodeURIComponent(url.pathname);
    return true;
  } catch {
    return !URL.canParse(value);
  }
}, 'has a malformed percent-escape (write % as %25)')
  // ioredis reads the path as the database number: any other path became `SELECT NaN`, which Redis answers with an
  // error that stopped every app at boot with an uncaught ReplyError, the variable never named.
  .refine((value) => {
    try {
      return /^\/?(\d+)?$/.test(new URL(value).pathname);
    } catch {
      return true; // not a URL: the protocol check above says so
    }
  }, 'the path must be empty or a database number (redis://host:6379/0)')
  // ioredis also reads the query string as client options, over the path (`?db=abc` was the same `SELECT NaN` at boot,
  // `?keyPrefix=` silently moved every key): none is taken.
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.search === '' && url.hash === '' && !value.includes('?') && !value.includes('#');
    } catch {
      return true;
    }
  }, 'must not have a query string or fragment (the client would read it as options)');

/** An empty value (`NAME=` in an env file) counts as unset, for a field that is optional or has a default. */
export const unsetIfEmpty = <T extends z.ZodType>(schema: T) => z.preprocess((value) => (value === '' ? undefined : value), schema);

export const httpUrl = urlWithProtocols(['http:', 'https:'], 'an HTTP URL');

/** The longest delay a Node timer takes: past it a timer fires after 1 ms, so an interval became a busy loop. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Milliseconds, given as a positive integer no longer than a timer can wait (about 24.8 days). */
export const durationMs = (fallback: number) =>
  z.coerce.number().int().positive().max(MAX_TIMER_MS, `must be at most ${MAX_TIMER_MS} (about 24.8 days: a timer waits no longer)`).default(fallback);

/** A comma-separated list, trimmed, without empties. */
export const csv = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0),
  );

/**
 * A comma-separated list of browser origins (`https://portal.example.com`, no path) or `*` (any), compared as a
 * browser sends its Origin header: an entry with a path, a trailing slash or no scheme could never match one.
 */
export const origins = csv.superRefine((entries, ctx) => {
  entries.forEach((entry, index) => {
    if (entry === '*') return;
    let origin: string | undefined;
    try {
      origin = new URL(entry).origin;
    } catch {
      origin = undefined;
    }
    if (origin === undefined || origin === 'null' || origin !== entry.toLowerCase()) {
      // Named by its place, not quoted: an entry written as a URL may carry a user and password.
      ctx.addIssue({ code: 'custom', message: `entry ${index + 1} is not an origin: write scheme://host[:port], no path (e.g. https://portal.example.com), or *` });
    }
  });
});

/**
 * A comma-separated list of Host header values a server answers to: `host` or `host:port`, an IPv6 address in brackets
 * (`[::1]:3200`), compared as clients send the header (case aside). An entry with a scheme, a path, a user or a `*`
 * could never match one, and every request would be refused: such a list is refused at start instead.
 */
export const hosts = csv.superRefine((entries, ctx) => {
  entries.forEach((entry, index) => {
    const match = /^(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/i.exec(entry);
    if (match === null || Number(match[1] ?? 0) > 65_535 || !URL.canParse(`http://${entry}`)) {
      ctx.addIssue({ code: 'custom', message: `entry ${index + 1} is not a Host header value: write host or host:port (an IPv6 address in brackets, [::1]:3200), no scheme, path or *` });
    }
  });
});

/** A secret of at least `minLength` characters (never echoed in errors). */
export const secret = (minLength: number) =>
  z.string({ error: 'is required' }).min(minLength, `must be at least ${minLength} characters`);

export const booleanFlag = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(fallback ? 'true' : 'false')
    .transform((value) => value === 'true' || value === '1');

/** Which proxies in front may speak for the client through X-Forwarded-For (see `trustedProxies`). */
export type TrustedProxies = false | number | readonly string[];

/**
 * Which proxies in front may set X-Forwarded-For: `false` (none: the socket's peer is the client), a number of hops
 * (the nearest N addresses are proxies: `1` behind one load balancer), or a comma-separated list of proxy addresses
 * or CIDRs (and proxy-addr's names `loopback`, `linklocal`, `uniquelocal`). The client is the nearest address that is
 * not a trusted proxy. `true` is refused: it would trust every entry, the ones the client wrote itself included.
 */
export const trustedProxies = z
  .string()
  .trim()
  .default('false')
  .transform((value, ctx): TrustedProxies => {
    if (value === 'false' || value === '0' || value === '') return false;
    if (value === 'true') {
      ctx.addIssue({
        code: 'custom',
        message: 'true would trust every X-Forwarded-For entry, those the client wrote included: give the number of proxies in front (e.g. 1) or their addresses/CIDRs',
      });
      return z.NEVER;
    }
    if (/^\d+$/.test(value)) {
      const hops = Number(value);
      if (hops <= 20) return hops;
      ctx.addIssue({ code: 'custom', message: 'at most 20 proxy hops' });
      return z.NEVER;
    }
    const list = value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0);
    try {
      proxyaddr.compile(list);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be false, a number of proxy hops, or a comma-separated list of IP addresses or CIDRs' });
      return z.NEVER;
    }
    return list;
  });

/** 127.0.0.0/8, ::1 and localhost: only this machine can reach a server listening there (or a URL naming it). */
export const isLoopbackHost = (host: string): boolean =>
  host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);

/** Ids in a stdio uid range: plenty for any number of processes, and no accidental whole-system span. */
export const MAX_UID_RANGE = 1_000_000;

/**
 * `uid:gid` (numbers up to 2147483647: spawn takes 32-bit signed ids, and a larger one made every stdio start fail),
 * parsed; empty: unset.
 */
export const runAsUser = unsetIfEmpty(
  z
    .string()
    .refine(
      (value) => /^\d{1,10}:\d{1,10}$/.test(value) && value.split(':').every((id) => Number(id) <= 2_147_483_647),
      'must be uid:gid, two numbers up to 2147483647 (for example 65534:65534)',
    )
    .transform((value) => {
      const [uid, gid] = value.split(':').map(Number) as [number, number];
      return { uid, gid };
    })
    .optional(),
);

/** `first-last` user ids (each with the group of the same number), parsed; empty: unset. */
export const uidRange = unsetIfEmpty(
  z
    .string()
    .refine((value) => {
      const match = /^(\d{1,10})-(\d{1,10})$/.exec(value);
      if (match === null) return false;
      const [first, last] = [Number(match[1]), Number(match[2])];
      return first >= 1 && first <= last && last <= 2_147_483_647 && last - first < MAX_UID_RANGE;
    }, `must be first-last, user ids from 1 to 2147483647 with first <= last and at most ${MAX_UID_RANGE} ids (for example 200000-200999)`)
    .transform((value) => {
      const [first, last] = value.split('-').map(Number) as [number, number];
      return { first, last };
    })
    .optional(),
);
