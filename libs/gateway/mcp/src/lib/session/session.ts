import { randomBytes } from 'node:crypto';
import type { ProtocolVersion } from '../protocol/versions';

/** Who is calling, as authentication established it. Sessions are bound to this. */
export interface Principal {
  readonly tenantId: string;
  readonly kind: 'agent_client' | 'user';
  readonly id: string;
  /**
   * The credential this request presented (an API key's id). Not part of the session binding (any of a principal's
   * keys may use its sessions); a call that waited for approval is checked against it again before it goes on.
   */
  readonly credentialId?: string;
}

export interface SessionRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly principalKind: Principal['kind'];
  readonly principalId: string;
  readonly protocolVersion: ProtocolVersion;
  readonly clientInfo: { readonly name: string; readonly version: string } | null;
  readonly clientCapabilities: Readonly<Record<string, unknown>>;
  /**
   * Per upstream: the upstream's own session id (Streamable HTTP) and negotiated version, and the
   * capabilities from its initialize result (so a replica that resumes the session knows what it supports).
   */
  readonly upstreams: Readonly<
    Record<
      string,
      {
        readonly sessionId: string | null;
        readonly protocolVersion: string;
        /** Where the upstream session was opened (`UpstreamSessionState.endpoint`). */
        readonly endpoint?: string;
        readonly capabilities?: Readonly<Record<string, unknown>>;
        /**
         * Joined after initialize (the upstream was down then, or configured later): it serves the session within the
         * capabilities initialize advertised, which do not change for it.
         */
        readonly joined?: true;
      }
    >
  >;
  readonly createdAt: number;
  /**
   * The agent's resource subscriptions, per upstream id: the URIs it subscribed to (and did not unsubscribe from)
   * through any replica. A new upstream session in place of a lost one is subscribed to them again (ADR 0007). At most
   * MAX_SUBSCRIPTIONS_PER_SESSION URIs in all. Absent: none (and in records written before it existed).
   */
  readonly subscriptions?: Readonly<Record<string, readonly string[]>>;
  /** The level the agent last set with `logging/setLevel` (one of MCP's levels), sent again to a new upstream session. */
  readonly logLevel?: string;
  /**
   * Set when an upstream of the tenant was missing from the session at initialize (down, or still connecting), or the
   * tenant had none: the session was then told of tools, prompts and resources, each with `listChanged`, whatever the
   * upstreams it had, so that what joins later can be announced and used. Absent: the capabilities are exactly the
   * upstreams'.
   */
  readonly openLists?: true;
  /**
   * A legacy HTTP+SSE session: served through its stream's `/messages` endpoint only, never on the Streamable HTTP
   * endpoint (where a GET would take its stream's place and end it). Absent: a Streamable HTTP session.
   */
  readonly legacy?: true;
  /**
   * The key (AES-128, base64url) that seals the session's listing cursors (`listing/cursor.ts`): what an upstream's own
   * cursor says, and the upstreams' ids, stay unreadable to the agent, and a cursor does not serve another session.
   * Absent (records written before it existed): cursors are not sealed.
   */
  readonly cursorKey?: string;
}

/**
 * Most resource URIs one session may be subscribed to, over all its upstreams: the record keeps them (Redis and every
 * replica's cache) and a renewed upstream session is subscribed to each again. A subscribe beyond it is refused by the
 * gateway and not forwarded.
 */
export const MAX_SUBSCRIPTIONS_PER_SESSION = 256;
/**
 * Most characters of subscribed URIs one session may hold in all. The record is read on every request that misses a
 * replica's cache and written whole by each change: 256 URIs of 8 KiB each would make it 2 MiB.
 */
export const MAX_SUBSCRIBED_URI_CHARS = 64 * 1024;

/** MCP's log levels, least severe first. */
/**
 * JSON-RPC errors with which an upstream refuses a subscription for good (MCP: -32002 resource not found; -32602
 * invalid params): a replayed subscription refused so leaves the record; one that failed otherwise is kept.
 */
export const REFUSED_SUBSCRIPTION_CODES: ReadonlySet<number> = new Set([-32002, -32602]);

export const LOG_LEVELS: readonly string[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** Whether one more subscription, to `uri`, fits in the record (MAX_SUBSCRIPTIONS_PER_SESSION, MAX_SUBSCRIBED_URI_CHARS). */
export function subscriptionFits(record: SessionRecord, uri: string): boolean {
  let count = 0;
  let chars = uri.length;
  for (const uris of Object.values(record.subscriptions ?? {})) {
    count += uris.length;
    for (const held of uris) chars += held.length;
  }
  return count < MAX_SUBSCRIPTIONS_PER_SESSION && chars <= MAX_SUBSCRIBED_URI_CHARS;
}

/**
 * Whether a subscription to `subscribed` covers a `notifications/resources/updated` about `uri`: the same URI, or a
 * part of it (MCP: an update may name a sub-resource of the one subscribed to, `file:///project/a.ts` for
 * `file:///project`). The one rule for who hears an update, in the session engine and on a shared stdio process.
 */
export function subscriptionCovers(subscribed: string, uri: string): boolean {
  if (uri === subscribed) return true;
  const base = subscribed.endsWith('/') ? subscribed : `${subscribed}/`;
  if (!uri.startsWith(base)) return false;
  // Not a part whose path climbs out of it (`mem://pub/../hr/salaries`, dots plain or encoded): it names what it
  // resolves to, which another principal may be subscribed to (found by review). Its query and fragment say nothing of
  // that; empty segments and encoded separators without dots stay inside (found by re-review).
  const part = uri.slice(base.length);
  const end = part.search(/[?#]/);
  return !DOT_SEGMENT.test(end === -1 ? part : part.slice(0, end));
}

/** A `.` or `..` path segment, its dots or separators written plainly or percent-encoded (`%2e`, `%2f`, `%5c`). */
const DOT_SEGMENT = /(?:^|\/|\\|%2f|%5c)(?:\.|%2e){1,2}(?:\/|\\|%2f|%5c|$)/i;

/** The upstream the session's record says it subscribed to `uri` on, if any. */
export function subscribedUpstream(record: SessionRecord, uri: string): string | undefined {
  return subscribedUpstreams(record, uri)[0];
}

/** Every upstream the record holds `uri` subscribed on (more than one after the URI's route moved and it was subscribed again). */
export function subscribedUpstreams(record: SessionRecord, uri: string): string[] {
  const held: string[] = [];
  for (const [upstreamId, uris] of Object.entries(record.subscriptions ?? {})) if (uris.includes(uri)) held.push(upstreamId);
  return held;
}

/**
 * `record` with `uri` subscribed to on `upstreamId` (or no longer), or undefined when that changes nothing: already
 * so, or a subscription past the bounds (`subscriptionFits`).
 */
export function withSubscription(record: SessionRecord, upstreamId: string, uri: string, subscribed: boolean): SessionRecord | undefined {
  const current = record.subscriptions?.[upstreamId] ?? [];
  if (current.includes(uri) === subscribed) return undefined;
  if (subscribed && !subscriptionFits(record, uri)) return undefined;
  const next = subscribed ? [...current, uri] : current.filter((held) => held !== uri);
  const subscriptions: Record<string, readonly string[]> = { ...record.subscriptions };
  if (next.length > 0) subscriptions[upstreamId] = next;
  else delete subscriptions[upstreamId];
  return { ...record, subscriptions };
}

/** `record` with the agent's log level `level`, or undefined when it has it already. */
export function withLogLevel(record: SessionRecord, level: string): SessionRecord | undefined {
  return record.logLevel === level ? undefined : { ...record, logLevel: level };
}

/** 256 random bits, base64url: visible ASCII only, as the Streamable HTTP transport requires. */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;
export const isWellFormedSessionId = (value: string): boolean => SESSION_ID.test(value);

/**
 * A session is served only to the principal that created it, in the tenant it was created in. Any
 * mismatch is reported exactly like a missing session.
 */
export function sessionBelongsTo(record: SessionRecord, principal: Principal): boolean {
  return (
    record.tenantId === principal.tenantId &&
    record.principalKind === principal.kind &&
    record.principalId === principal.id
  );
}
