import { createHash } from 'node:crypto';
import { JSON_RPC, type JsonRpcNotification, type JsonRpcRequest } from '../protocol/json-rpc';
import type { CancelSignal } from '../cancellation/cancellation';

/**
 * The contract between the gateway's request path (libs/gateway/core) and its upstream connections
 * (libs/gateway/upstream). Types only: implementations live in those libs.
 */

export type UpstreamTransport = 'streamable_http' | 'sse' | 'stdio';

/** An upstream as the registry hands it to the connector: secrets already decrypted, never logged. */
export interface UpstreamConfig {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly toolPrefix: string;
  readonly transport: UpstreamTransport;
  /** streamable_http and sse: the endpoint (for sse, the GET stream URL). */
  readonly url: string | null;
  /** Injected on every request to the upstream (credentials live here); never shown to agents. */
  readonly headers: Readonly<Record<string, string>>;
  /** stdio: executable and arguments, spawned without a shell. */
  readonly command: string | null;
  readonly args: readonly string[];
  /** stdio: the complete environment of the child (the gateway's own is never inherited). */
  readonly env: Readonly<Record<string, string>>;
  readonly connectTimeoutMs: number;
  readonly callTimeoutMs: number;
  /** Bumped on every change; a connection made from an older version is replaced. */
  readonly version: number;
  /**
   * A digest of the sealed headers and environment as stored (their ciphertext, never what they seal): it changes
   * whenever the credentials are sealed again, so an upstream session opened under the old ones is told apart
   * (`endpointOf`). Absent when the upstream has none sealed.
   */
  readonly sealedDigest?: string;
}

/**
 * Whether two configurations of an upstream connect the same way (transport, URL, headers, command, arguments,
 * environment, and the same sealing of the credentials): an edit elsewhere (a name, a description, a timeout) need not end the sessions and processes open.
 */
export function sameConnection(a: UpstreamConfig, b: UpstreamConfig): boolean {
  return (
    a.transport === b.transport &&
    a.url === b.url &&
    a.command === b.command &&
    JSON.stringify(a.args) === JSON.stringify(b.args) &&
    JSON.stringify(a.headers) === JSON.stringify(b.headers) &&
    JSON.stringify(a.env) === JSON.stringify(b.env) &&
    // Sealed again with equal contents (a keyring rotation, an edit that set the same value): the sessions' records
    // name the old digest, so every replica opens a new session; this one must not keep using the old one meanwhile.
    a.sealedDigest === b.sealedDigest
  );
}

export interface ClientIdentity {
  readonly clientInfo: { readonly name: string; readonly version: string };
  /** What the gateway may do for the upstream: only what the downstream agent also supports. */
  readonly capabilities: Readonly<Record<string, unknown>>;
  readonly protocolVersion: string;
  /**
   * Whose session this is (tenant, principal kind and id). Sessions of different principals sharing one upstream
   * process never see each other's messages that name no call (a stdio process's log messages). Absent: unknown, and
   * treated as different from every other.
   */
  readonly principal?: string;
}

/** What an upstream said in its initialize result. */
export interface UpstreamServerInfo {
  readonly protocolVersion: string;
  readonly serverInfo: { readonly name: string; readonly version: string; readonly [key: string]: unknown };
  readonly capabilities: Readonly<Record<string, unknown>>;
  readonly instructions?: string;
}

/**
 * An upstream's JSON-RPC error, passed through to the agent with its code and message. A code that is not an integer
 * (`1.5`; `1e400`, read as Infinity and written as null) becomes -32603 Internal error: JSON-RPC requires an integer,
 * and an agent's SDK refuses the whole message otherwise (an SSE answer is dropped, and its call waits out its timeout).
 */
export class UpstreamRpcError extends Error {
  readonly code: number;

  constructor(
    code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'UpstreamRpcError';
    this.code = Number.isSafeInteger(code) ? code : JSON_RPC.INTERNAL_ERROR;
  }
}

/** The upstream could not be reached, timed out, or broke the protocol. Never carries its address. */
export class UpstreamUnavailableError extends Error {
  constructor(
    readonly reason: 'connect_failed' | 'timeout' | 'protocol_error' | 'closed' | 'circuit_open' | 'session_expired' | 'overloaded',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpstreamUnavailableError';
  }
}

export interface UpstreamRequestOptions {
  /** Aborting sends `notifications/cancelled` upstream and rejects the call. */
  readonly signal?: CancelSignal;
  /** Overrides the upstream's callTimeoutMs for this call. */
  readonly timeoutMs?: number;
  /** Notifications the upstream sends about this request (progress, log messages on its stream). */
  readonly onNotification?: (notification: JsonRpcNotification) => void;
  /**
   * Requests the upstream sends while handling this request (sampling/createMessage,
   * elicitation/create, roots/list). The returned value is the JSON-RPC result sent back; a thrown
   * UpstreamRpcError becomes a JSON-RPC error. `context.shared`: the transport could tell only that one of several
   * calls of this caller made it (stdio, legacy SSE), so it is not surely this call's.
   */
  readonly onServerRequest?: (request: JsonRpcRequest, signal: AbortSignal, context?: { readonly shared?: boolean }) => Promise<Record<string, unknown>>;
}

/** State that lets any replica continue an upstream session (stored in the agent's session record). */
export interface UpstreamSessionState {
  readonly sessionId: string | null;
  readonly protocolVersion: string;
  /**
   * Where the session was opened (Streamable HTTP: `endpointOf` its configuration then). Its id is only ever sent
   * there: an upstream repointed to another URL gets a new session, never the old one's id (`sessionElsewhere`).
   * Absent for other transports. A Streamable HTTP state without it (a record written before the field existed) counts
   * as opened elsewhere: where its id belongs is unknown, so it is never sent, and a new session is opened instead.
   */
  readonly endpoint?: string;
}

/**
 * Where and as whom a Streamable HTTP upstream's session is opened: its URL's origin and path (without what may be a
 * credential: user, password, query, fragment), a digest of its query, and the digest of its sealed credentials
 * (`sealedDigest`) after a `#`.
 * Undefined for other transports and for a URL that does not parse.
 */
export function endpointOf(config: Pick<UpstreamConfig, 'transport' | 'url' | 'sealedDigest'>): string | undefined {
  if (config.transport !== 'streamable_http' || config.url === null) return undefined;
  try {
    const url = new URL(config.url);
    // A query may carry a credential (`?token=…`): only a digest of it, which changes with it.
    const query = url.search === '' ? '' : `?${createHash('sha256').update(url.search).digest('base64url').slice(0, 22)}`;
    return `${url.origin}${url.pathname}${query}${config.sealedDigest === undefined ? '' : `#${config.sealedDigest}`}`;
  } catch {
    return undefined;
  }
}

/**
 * Whether `state` names an upstream session that was opened at another endpoint than `config` now connects to (an
 * admin repointed the upstream), or under other credentials: its id must not go there, on a request or a DELETE. That
 * id is the old server's handle on the session, and whoever runs the new URL must not learn it; and a session opened
 * as one identity must not go on serving calls made with another's credentials (the upstream may have bound what the
 * session may do to the identity it saw at initialize).
 */
export function sessionElsewhere(state: UpstreamSessionState, config: Pick<UpstreamConfig, 'transport' | 'url' | 'sealedDigest'>): boolean {
  return state.sessionId !== null && state.endpoint !== endpointOf(config);
}

/** One initialised MCP session with an upstream. */
export interface UpstreamSession {
  readonly upstreamId: string;
  readonly info: UpstreamServerInfo;
  state(): UpstreamSessionState;
  /** Sends a request and resolves with its result, or rejects with UpstreamRpcError / UpstreamUnavailableError. */
  request(method: string, params: Record<string, unknown> | undefined, options?: UpstreamRequestOptions): Promise<Record<string, unknown>>;
  notify(method: string, params?: Record<string, unknown>): Promise<void>;
  /** Messages not tied to a request: list_changed, resources/updated, log messages. */
  onNotification(handler: (notification: JsonRpcNotification) => void): void;
  /** Server requests not tied to a request (e.g. roots/list on the standalone stream). */
  onServerRequest(handler: (request: JsonRpcRequest, signal: AbortSignal) => Promise<Record<string, unknown>>): void;
  /**
   * Whether anyone listens for the messages the two handlers above take outside requests. A transport that holds a
   * stream only for them (Streamable HTTP's GET) holds it only while so; transports whose one connection carries
   * everything (stdio, legacy SSE) leave this out. Nobody listens until this is called.
   */
  listen?(on: boolean): void;
  /** Ends the session (DELETE for Streamable HTTP, stdin close for stdio). */
  close(): Promise<void>;
  /**
   * Drops what this replica holds for the session (streams, timers, handlers) without ending it upstream, so that it
   * can be resumed later, here or on another replica. Sessions that cannot be resumed leave this out.
   */
  dispose?(): void;
  /**
   * Called once if the session ends by itself (its transport broke: a legacy SSE stream ended), so the caller stops
   * using it and connects again. Sessions whose transport cannot end under them leave this out.
   */
  onClosed?(handler: () => void): void;
}

export interface UpstreamConnector {
  /** Connects and runs the initialize handshake (initialize + notifications/initialized). */
  connect(config: UpstreamConfig, identity: ClientIdentity): Promise<UpstreamSession>;
  /** Continues a session another replica started (Streamable HTTP); others reconnect. */
  resume(config: UpstreamConfig, identity: ClientIdentity, state: UpstreamSessionState): Promise<UpstreamSession>;
  /** Closes every connection, pool and child process. */
  shutdown(): Promise<void>;
  /** Settles when stdio servers can be started (a user-id range is taken); rejects when they never can. Optional. */
  ready?(): Promise<void>;
  /** The circuit of every upstream this replica has connected to, under its latest configuration (metrics). */
  circuits?(): readonly UpstreamCircuit[];
  /**
   * The tenant's upstreams changed: what the connector keeps for one that left it (`current` has no configuration for
   * it) goes: its stdio processes stop once their sessions are gone (at once, for those with none), and its circuit is
   * forgotten. A stdio server edited where it starts (a command, an argument, its environment: a rotated credential)
   * has its processes stopped the same way; the next session starts new ones.
   */
  departed?(tenantId: string, current: (upstreamId: string) => UpstreamConfig | undefined): void;
}

/** One upstream's circuit breaker as the connector holds it. */
export interface UpstreamCircuit {
  readonly upstreamId: string;
  readonly tenantId: string;
  readonly state: 'closed' | 'open' | 'half_open';
}
