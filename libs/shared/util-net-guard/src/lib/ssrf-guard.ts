import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';

/** Which network destinations URL-based upstreams may have. */
export interface NetworkPolicy {
  /** Permit loopback, private (RFC 1918 / ULA), link-local, CGNAT and other non-public addresses. */
  readonly allowPrivateNetworks: boolean;
  /** Host names or IP literals permitted even when they are (or resolve to) non-public addresses. */
  readonly allowedHosts: readonly string[];
}

export type UrlDecision =
  { readonly ok: true; readonly url: URL } | { readonly ok: false; readonly reason: string };

/** Error code of the error our DNS lookup raises when every resolved address is refused. */
export const ADDRESS_REFUSED = 'EPORTCULLIS_ADDRESS_REFUSED';

const stripBrackets = (host: string): string =>
  host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;

function ipv4Bytes(address: string): number[] | undefined {
  const parts = address.split('.');
  if (parts.length !== 4) return undefined;
  const bytes = parts.map(Number);
  return bytes.every((b) => Number.isInteger(b) && b >= 0 && b <= 255) ? bytes : undefined;
}

function isPrivateIpv4(b: readonly number[]): boolean {
  const [a = 0, c = 0, d = 0] = b;
  return (
    a === 0 || // "this" network
    a === 10 ||
    a === 127 ||
    (a === 100 && c >= 64 && c <= 127) || // CGNAT 100.64/10
    (a === 169 && c === 254) || // link-local (cloud metadata lives here)
    (a === 172 && c >= 16 && c <= 31) ||
    (a === 192 && c === 168) ||
    (a === 192 && c === 0 && d === 0) || // 192.0.0/24 IETF protocol assignments
    (a === 192 && c === 0 && d === 2) || // documentation TEST-NET-1 192.0.2/24 (RFC 5737)
    (a === 198 && c === 51 && d === 100) || // documentation TEST-NET-2 198.51.100/24
    (a === 203 && c === 0 && d === 113) || // documentation TEST-NET-3 203.0.113/24
    (a === 198 && (c === 18 || c === 19)) || // benchmarking 198.18/15
    a >= 224 // multicast, reserved, broadcast
  );
}

/** Eight 16-bit groups of an IPv6 address (zone id dropped), or undefined when malformed. */
function ipv6Groups(address: string): number[] | undefined {
  let text = address;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    // A dotted IPv4 tail (::ffff:10.0.0.1) becomes two hex groups.
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    if (!v4) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = v4;
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined): number[] =>
    part === undefined || part === ''
      ? []
      : part.split(':').map((group) => (/^[0-9a-f]{1,4}$/i.test(group) ? parseInt(group, 16) : NaN));
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  const total = head.length + rest.length;
  let groups: number[];
  if (halves.length === 2) {
    if (total > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - total).fill(0), ...rest];
  } else {
    if (total !== 8) return undefined;
    groups = head;
  }
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

const embeddedIpv4 = (hi: number, lo: number): number[] => [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];

/**
 * Within the IETF protocol assignments 2001::/23 (not globally reachable: Teredo, benchmarking, deprecated ORCHID...),
 * the blocks IANA's special-purpose registry marks globally reachable: PCP, TURN and DNS-SD SRP anycast (2001:1::1-3),
 * AMT 2001:3::/32, AS112-v6 2001:4:112::/48, ORCHIDv2 2001:20::/28 and DRIP 2001:30::/28.
 */
function isReachableProtocolAssignment(g: readonly number[]): boolean {
  const at = (i: number): number => g[i] ?? 0;
  if (at(1) === 1) return g.slice(2, 7).every((x) => x === 0) && at(7) >= 1 && at(7) <= 3;
  if (at(1) === 3) return true;
  if (at(1) === 4) return at(2) === 0x112;
  return (at(1) & 0xfff0) === 0x20 || (at(1) & 0xfff0) === 0x30;
}

function isPrivateIpv6(g: readonly number[]): boolean {
  const at = (i: number): number => g[i] ?? 0;
  const zeroUpTo = (n: number): boolean => g.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(7) && (at(7) === 0 || at(7) === 1)) return true; // :: and ::1
  if (zeroUpTo(5) && at(5) === 0xffff) return isPrivateIpv4(embeddedIpv4(at(6), at(7))); // IPv4-mapped
  if (zeroUpTo(6)) return isPrivateIpv4(embeddedIpv4(at(6), at(7))); // IPv4-compatible (deprecated)
  if (zeroUpTo(4) && at(4) === 0xffff && at(5) === 0) return isPrivateIpv4(embeddedIpv4(at(6), at(7))); // IPv4-translated ::ffff:0:0/96
  if (at(0) === 0x64 && at(1) === 0xff9b && at(2) === 1) return true; // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
  if (at(0) === 0x64 && at(1) === 0xff9b && at(2) === 0 && at(3) === 0 && at(4) === 0 && at(5) === 0) {
    return isPrivateIpv4(embeddedIpv4(at(6), at(7))); // NAT64
  }
  if (at(0) === 0x2002) return isPrivateIpv4(embeddedIpv4(at(1), at(2))); // 6to4
  if ((at(0) & 0xfe00) === 0xfc00) return true; // unique local fc00::/7
  if ((at(0) & 0xffc0) === 0xfe80 || (at(0) & 0xffc0) === 0xfec0) return true; // link-local, site-local
  if ((at(0) & 0xff00) === 0xff00) return true; // multicast
  if (at(0) === 0x100 && at(1) === 0 && at(2) === 0 && (at(3) === 0 || at(3) === 1)) return true; // discard-only 100::/64, dummy prefix 100:0:0:1::/64 (RFC 9780)
  if (at(0) === 0x2001 && at(1) === 0xdb8) return true; // documentation 2001:db8::/32 (RFC 3849)
  if (at(0) === 0x3fff && (at(1) & 0xf000) === 0) return true; // documentation 3fff::/20 (RFC 9637)
  if (at(0) === 0x5f00) return true; // SRv6 SIDs 5f00::/16 (RFC 9602)
  if (at(0) === 0x2001 && (at(1) & 0xfe00) === 0) return !isReachableProtocolAssignment(g); // 2001::/23
  return false;
}

/** True for any address that is not a public unicast address; malformed input counts as private. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return isPrivateIpv4(ipv4Bytes(address) ?? [0]);
  const groups = family === 6 || address.includes(':') ? ipv6Groups(address) : undefined;
  return groups === undefined ? true : isPrivateIpv6(groups);
}

/**
 * Whether `host` is one of the operator's allowed hosts. An IPv6 entry matches its address however either is spelled
 * (`fd00:0:0:0:0:0:0:7`, leading zeros, a dotted IPv4 tail): the URL parser and the resolver hand over the shortest form.
 */
function isAllowedHost(host: string, policy: NetworkPolicy): boolean {
  const lower = host.toLowerCase();
  const groups = lower.includes(':') ? ipv6Groups(lower) : undefined;
  return policy.allowedHosts.some((allowed) => {
    const entry = stripBrackets(allowed.toLowerCase());
    if (entry === lower) return true;
    if (groups === undefined || !entry.includes(':')) return false;
    const entryGroups = ipv6Groups(entry);
    return entryGroups !== undefined && entryGroups.every((group, index) => group === groups[index]);
  });
}

/** Whether a connection to `address` (resolved from `hostname`) is permitted. */
export function isAddressPermitted(hostname: string, address: string, policy: NetworkPolicy): boolean {
  return (
    policy.allowPrivateNetworks ||
    !isPrivateAddress(address) ||
    isAllowedHost(hostname, policy) ||
    isAllowedHost(address, policy)
  );
}

/**
 * First check of an upstream URL: http or https only, no credentials in the URL (they belong in the
 * configured headers), and an IP-literal host must be permitted. Host names are checked again when
 * they are resolved, by {@link createGuardedLookup}.
 */
export function checkUpstreamUrl(raw: string | null, policy: NetworkPolicy): UrlDecision {
  if (raw === null || raw === '') return { ok: false, reason: 'no URL configured' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'the URL does not parse' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, reason: 'only http and https are allowed' };
  if (url.username !== '' || url.password !== '')
    return { ok: false, reason: 'credentials in the URL are not allowed' };
  const host = stripBrackets(url.hostname);
  if (host === '') return { ok: false, reason: 'the URL has no host' };
  if (isIP(host) !== 0 && !isAddressPermitted(host, host, policy)) {
    return { ok: false, reason: 'the address is not permitted by the network policy' };
  }
  return { ok: true, url };
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/** Resolves a host name to every address it has (the shape of `dns.lookup` with `all: true`). */
export type AddressResolver = (
  hostname: string,
  options: { family?: number; hints?: number },
  callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

const systemResolver: AddressResolver = (hostname, options, callback) =>
  dnsLookup(hostname, { family: options.family, hints: options.hints, all: true }, callback);

/** How long a host's addresses are reused for new sockets (pooled sockets to upstreams come and go every few seconds). */
const ADDRESSES_KEPT_MS = 2_000;
/**
 * System lookups under way at once. `dns.lookup` holds one of libuv's four threads until the resolver gives up (many
 * seconds for a name whose nameservers never answer, and tenants choose the names): at most three, so file and crypto
 * work always keep one.
 */
export const MAX_LOOKUPS_IN_FLIGHT = 3;
/**
 * System lookups under way at once for one key (a tenant): at most this many, of which at most one not yet stuck
 * (`STUCK_LOOKUP_MS`). Below MAX_LOOKUPS_IN_FLIGHT: a lookup's slot is freed only when the resolver answers (its thread
 * is busy until then, deadline or not), so a tenant whose names never resolve holds this many and every other tenant's
 * lookups still have the rest; and a tenant's healthy names wait at most STUCK_LOOKUP_MS behind one stuck name of its
 * own (before, until the resolver gave up on it: its healthy upstreams' connects timed out, and counted against them).
 */
export const MAX_LOOKUPS_IN_FLIGHT_PER_KEY = 2;
/** A lookup running this long is stuck: its key may start another beside it (see MAX_LOOKUPS_IN_FLIGHT_PER_KEY). */
export const STUCK_LOOKUP_MS = 500;
/**
 * A name whose lookup got stuck and then failed, or ran out of time, fails at once for this long, without a lookup: a
 * dead upstream's name does not take its tenant's slots again with every new socket.
 */
export const SLOW_NAME_MS = 30_000;
/** The code of a lookup that waited past the deadline for a turn without running. */
export const LOOKUP_QUEUED = 'EPORTCULLIS_LOOKUP_QUEUED';
/**
 * A name not resolved within this (waiting for a turn included) fails: with ETIMEOUT when its lookup ran, with
 * LOOKUP_QUEUED when it never got a turn. The lookup may still finish.
 */
export const LOOKUP_DEADLINE_MS = 10_000;

/**
 * A `lookup` for net/http that resolves the name once, drops every address the policy refuses, and
 * hands the permitted ones to the socket, which then connects to exactly those. Check and use see the
 * same answer, so a DNS record that changes between them (rebinding) cannot slip a private address in.
 *
 * One key's lookups: see {@link createGuardedLookups} (for lookups made on behalf of many tenants).
 */
export function createGuardedLookup(policy: NetworkPolicy, resolver: AddressResolver = systemResolver, now: () => number = Date.now): LookupFunction {
  return createGuardedLookups(policy, resolver, now)('');
}

/**
 * Guarded lookups (see {@link createGuardedLookup}) per key, a tenant, sharing one budget of system lookups.
 *
 * Lookups of one name under way at once are made once, and an answer serves new sockets for ADDRESSES_KEPT_MS
 * (failures are not kept). `dns.lookup` runs on libuv's four-thread pool, shared with file and crypto work: without
 * this, every new socket to a host whose DNS answers slowly took a thread, and a few of them stalled every tenant's
 * connections. At most MAX_LOOKUPS_IN_FLIGHT names are resolved at once, at most MAX_LOOKUPS_IN_FLIGHT_PER_KEY of them
 * for one key (one of them not yet stuck), and keys waiting for a turn take turns (round robin): a tenant whose names
 * never resolve (tenants choose them) queues only its own lookups, not every tenant's behind its own, and its healthy
 * names wait at most STUCK_LOOKUP_MS behind a stuck one. A name not resolved within LOOKUP_DEADLINE_MS fails, and a
 * name whose lookup got stuck and failed fails at once for SLOW_NAME_MS: such upstreams hold three threads at most,
 * never the pool. The policy is applied to each use, cached or not.
 */
export function createGuardedLookups(policy: NetworkPolicy, resolver: AddressResolver = systemResolver, now: () => number = Date.now): (key: string) => LookupFunction {
  type Done = (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void;
  /** A name waiting for a turn, being resolved, or answered (the deadline included), with everyone waiting for it. */
  interface Pending {
    readonly callbacks: Done[];
    /** The keys it waits for a turn under: whichever gets one first resolves it for all. */
    readonly keys: Set<string>;
    state: 'waiting' | 'resolving' | 'settled';
    /** When its lookup began (`resolving`). */
    resolvingSince?: number;
  }
  interface Turn { readonly pending: Pending; readonly name: string; readonly hostname: string; readonly family: number | undefined; readonly hints: number | undefined }
  const kept = new Map<string, { readonly at: number; readonly addresses: LookupAddress[] }>();
  /**
   * Names whose lookups got stuck and failed, or ran out of time while running, until when they fail at once with the
   * same code (`SLOW_NAME_MS`). An answer for the name takes it out.
   */
  const slow = new Map<string, { readonly until: number; readonly code: string }>();
  const markSlow = (name: string, code: string): void => {
    if (slow.size >= 1_000) slow.clear();
    slow.set(name, { until: now() + SLOW_NAME_MS, code });
  };
  const waiting = new Map<string, Pending>();
  /** Per key, its names waiting for a turn, oldest first; keys in the order they get their next turn. */
  const turns = new Map<string, Turn[]>();
  /** Per key, its lookups under way, and of them those not yet stuck. */
  const inFlightPerKey = new Map<string, { all: number; fresh: number }>();
  let inFlight = 0;

  /** Answers everyone waiting for the name (once: a late answer after the deadline finds nobody). */
  const settle = (name: string, pending: Pending, error: NodeJS.ErrnoException | null, addresses: LookupAddress[]): void => {
    if (pending.state === 'settled') return;
    pending.state = 'settled';
    if (waiting.get(name) === pending) waiting.delete(name);
    for (const callback of pending.callbacks) callback(error, error === null ? addresses : []);
  };

  /** The next turn of the first key below its own limit, which then goes to the back; none when every key waits. */
  const nextTurn = (): { readonly key: string; readonly turn: Turn } | undefined => {
    for (const [key, queue] of turns) {
      const held = inFlightPerKey.get(key);
      if (held !== undefined && (held.all >= MAX_LOOKUPS_IN_FLIGHT_PER_KEY || held.fresh > 0)) continue;
      // Timed out while it waited, or another key's turn came first: nobody wants it any more.
      while (queue.length > 0 && queue[0]?.pending.state !== 'waiting') queue.shift();
      const turn = queue.shift();
      turns.delete(key);
      if (queue.length > 0) turns.set(key, queue);
      if (turn !== undefined) return { key, turn };
    }
    return undefined;
  };

  const next = (): void => {
    while (inFlight < MAX_LOOKUPS_IN_FLIGHT) {
      const chosen = nextTurn();
      if (chosen === undefined) return;
      const { key, turn } = chosen;
      turn.pending.state = 'resolving';
      turn.pending.resolvingSince = now();
      inFlight += 1;
      const held = inFlightPerKey.get(key) ?? { all: 0, fresh: 0 };
      held.all += 1;
      held.fresh += 1;
      inFlightPerKey.set(key, held);
      let stuck = false;
      let answered = false;
      const startedAt = now();
      // Stuck: the key's next name may go beside it (the key's other upstreams are not held up by its dead one).
      const stuckTimer = setTimeout(() => {
        if (answered) return;
        stuck = true;
        held.fresh -= 1;
        next();
      }, STUCK_LOOKUP_MS);
      stuckTimer.unref();
      resolver(turn.hostname, { family: turn.family, hints: turn.hints }, (error, addresses) => {
        if (answered) return;
        answered = true;
        clearTimeout(stuckTimer);
        inFlight -= 1;
        held.all -= 1;
        if (!stuck) held.fresh -= 1;
        if (held.all === 0 && inFlightPerKey.get(key) === held) inFlightPerKey.delete(key);
        // A late failure says nothing once a later lookup of the name was answered (found by re-review).
        const answeredSince = (kept.get(turn.name)?.at ?? Number.NEGATIVE_INFINITY) >= startedAt;
        if (error !== null && stuck && !answeredSince) markSlow(turn.name, error.code ?? 'ETIMEOUT');
        if (error === null) {
          slow.delete(turn.name);
          // Bounded: names come from configured upstreams, but an old entry goes whenever the map grows large.
          if (kept.size >= 1_000) kept.clear();
          kept.set(turn.name, { at: now(), addresses });
        }
        settle(turn.name, turn.pending, error, addresses);
        next();
      });
    }
  };

  const resolve = (key: string, hostname: string, family: number | undefined, hints: number | undefined, done: Done): void => {
    const name = `${hostname}\u0000${family ?? 0}\u0000${hints ?? 0}`;
    const hit = kept.get(name);
    if (hit !== undefined && now() - hit.at < ADDRESSES_KEPT_MS) {
      done(null, hit.addresses);
      return;
    }
    const lately = slow.get(name);
    if (lately !== undefined) {
      if (now() < lately.until) {
        // Its own failure, as the lookup that ran out of time was (the upstream's circuit counts it).
        const failed: NodeJS.ErrnoException = new Error('the host name could not be resolved lately');
        failed.code = lately.code;
        done(failed, []);
        return;
      }
      slow.delete(name);
    }
    let pending = waiting.get(name);
    if (pending === undefined) {
      const created: Pending = { callbacks: [], keys: new Set(), state: 'waiting' };
      pending = created;
      waiting.set(name, created);
      setTimeout(() => {
        // A name that never got its turn (its tenant's slot held by another of its names) says nothing of its own
        // upstream: it must not count against that upstream's circuit, as a lookup that ran out of time does.
        const queued = created.state === 'waiting';
        // Ran out of time while its lookup runs on: the next socket fails at once rather than look it up again beside it,
        // holding the tenant's other slot (found by re-review: its healthy names then waited behind two of the dead one).
        // Not one that waited for its turn and has been running only a moment: that says nothing of the name yet.
        if (created.state === 'resolving' && now() - (created.resolvingSince ?? 0) >= STUCK_LOOKUP_MS) markSlow(name, 'ETIMEOUT');
        const timedOut: NodeJS.ErrnoException = new Error(queued ? 'the host name waited too long for a lookup' : 'the host name was not resolved in time');
        timedOut.code = queued ? LOOKUP_QUEUED : 'ETIMEOUT';
        settle(name, created, timedOut, []);
      }, LOOKUP_DEADLINE_MS).unref();
    }
    pending.callbacks.push(done);
    // Not yet resolving: a turn under this key too, so a name another key also waits for is not held up by that key.
    if (pending.state === 'waiting' && !pending.keys.has(key)) {
      pending.keys.add(key);
      const turn: Turn = { pending, name, hostname, family, hints };
      const queue = turns.get(key);
      if (queue === undefined) turns.set(key, [turn]);
      else queue.push(turn);
      next();
    }
  };

  const guarded = (
    key: string,
    hostname: string,
    options: { all?: boolean; family?: number | string; hints?: number },
    callback: LookupCallback,
  ): void => {
    resolve(key, hostname, options.family as number | undefined, options.hints, (error, addresses) => {
      if (error) {
        callback(error, options.all ? [] : '');
        return;
      }
      const permitted = addresses.filter((entry) => isAddressPermitted(hostname, entry.address, policy));
      const first = permitted[0];
      if (first === undefined) {
        const refused: NodeJS.ErrnoException = new Error('every address of the host is refused by the network policy');
        refused.code = ADDRESS_REFUSED;
        callback(refused, options.all ? [] : '');
        return;
      }
      if (options.all) callback(null, permitted);
      else callback(null, first.address, first.family);
    });
  };
  return (key) => guarded.bind(undefined, key) as unknown as LookupFunction;
}
