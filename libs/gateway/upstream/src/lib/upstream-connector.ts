import { randomInt } from 'node:crypto';
import {
  sameConnection,
  sessionElsewhere,
  type ClientIdentity,
  type UpstreamConfig,
  type UpstreamCircuit,
  type UpstreamConnector,
  type UpstreamSession,
  type UpstreamSessionState,
} from '@portcullis/gateway/mcp';
import { CircuitBreaker, type CircuitBreakerOptions } from './core/circuit-breaker';
import { resumedInfo } from './core/handshake';
import { SILENT_LOGGER, type UpstreamLogger } from './core/logger';
import { logFields, type DisposableSession, type SessionContext } from './core/session-base';
import { checkUpstreamUrl, createGuardedLookups, type NetworkPolicy } from '@portcullis/shared/util-net-guard';
import { errors } from './core/wire';
import { HttpPool } from './http/http-pool';
import { LegacySseSession } from './http/legacy-sse-session';
import { StreamableHttpSession } from './http/streamable-http-session';
import type { StdioOptions } from './stdio/stdio-process';
import { StdioPool } from './stdio/stdio-pool';
import { StdioUserIds } from '@portcullis/shared/util-process-user';
import { DEFAULT_HELD_ANSWER_BYTES, DEFAULT_HELD_ANSWER_BYTES_PER_TENANT, HeldAnswers } from './http/held-answers';


/**
 * A URL's origin for logs: paths and query strings may carry tokens (`?api_key=`), so logs name only where an
 * upstream is, never the whole URL.
 */
function originOf(url: string | null | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).origin;
  } catch {
    return 'unparsable';
  }
}

export interface UpstreamConnectorOptions {
  readonly logger?: UpstreamLogger;
  /** Bound on the processes one stdio upstream may have on this replica. */
  readonly maxStdioProcessesPerUpstream: number;
  /** A stdio process without traffic for this long is stopped. */
  readonly stdioIdleMs: number;
  /** Crashes in a row before a stdio upstream's circuit opens. Default 5. */
  readonly stdioMaxRestarts?: number;
  /** Restart delay after the n-th crash in a row: min(max, initial × 2^(n-1)). Default 250 ms … 30 s. */
  readonly stdioRestartBackoffMs?: { readonly initial: number; readonly max: number };
  /** A stdio process that served this long before dying starts a fresh crash count. Default 30 s. */
  readonly stdioStableMs?: number;
  /** Between SIGTERM and SIGKILL when stopping a stdio process. Default 2 s. */
  readonly stdioKillGraceMs?: number;
  /** The user and group stdio servers run as (see `StdioOptions.runAs`); unset: the gateway's own. */
  readonly stdioRunAs?: { readonly uid: number; readonly gid: number };
  /** Instead of `stdioRunAs`: a user id of its own for each running stdio server, from this range (see `StdioOptions.userIds`). */
  readonly stdioUidRange?: { readonly first: number; readonly last: number };
  /** Let URL-based upstreams reach loopback, private and link-local addresses. Default false. */
  readonly allowPrivateNetworks?: boolean;
  /** Host names or IP literals permitted even when private. */
  readonly allowedHosts?: readonly string[];
  /** Per-upstream circuit breaker. Default 5 failures, 30 s cool-down. */
  readonly breaker?: CircuitBreakerOptions;
  /** Keep-alive sockets per upstream (each has a pool of its own, also beside others on its origin). Default 128. */
  readonly maxSocketsPerOrigin?: number;
  /** Largest message (JSON body, SSE event, stdio line) accepted from an upstream. Default 16 MiB. */
  readonly maxMessageBytes?: number;
  /**
   * Bytes of answers the replica holds while they arrive, in all and per tenant (see `HeldAnswers`); defaults 256 MiB
   * and 64 MiB.
   */
  readonly maxHeldAnswerBytes?: number;
  readonly maxHeldAnswerBytesPerTenant?: number;
  /**
   * Reconnect delay of a Streamable HTTP upstream's standalone (GET) stream after its n-th failure in a row:
   * min(max, initial × 2^n). Default 500 ms … 60 s.
   */
  readonly standaloneBackoffMs?: { readonly initial: number; readonly max: number };
}

interface UpstreamState {
  version: number;
  readonly tenantId: string;
  readonly breaker: CircuitBreaker;
}

/**
 * The gateway's connections to upstream MCP servers: Streamable HTTP (keep-alive pool per origin),
 * legacy HTTP+SSE, and stdio (bounded, multiplexed, restarted child processes), each behind a
 * per-upstream circuit breaker and, for URLs, the SSRF guard.
 */
export function createUpstreamConnector(options: UpstreamConnectorOptions): UpstreamConnector {
  const logger = options.logger ?? SILENT_LOGGER;
  const policy: NetworkPolicy = {
    allowPrivateNetworks: options.allowPrivateNetworks ?? false,
    allowedHosts: options.allowedHosts ?? [],
  };
  const breakerOptions = options.breaker ?? { failureThreshold: 5, cooldownMs: 30_000 };
  const maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const heldAnswers = new HeldAnswers(options.maxHeldAnswerBytes ?? DEFAULT_HELD_ANSWER_BYTES, options.maxHeldAnswerBytesPerTenant ?? DEFAULT_HELD_ANSWER_BYTES_PER_TENANT);
  const stdioOptions: StdioOptions = {
    idleMs: options.stdioIdleMs,
    maxRestarts: options.stdioMaxRestarts ?? 5,
    restartBackoffMs: options.stdioRestartBackoffMs ?? { initial: 250, max: 30_000 },
    stableMs: options.stdioStableMs ?? 30_000,
    killGraceMs: options.stdioKillGraceMs ?? 2_000,
    stderr: { linesPerWindow: 20, windowMs: 10_000, maxLineLength: 500 },
    ...(options.stdioRunAs ? { runAs: options.stdioRunAs } : {}),
    // One range for every upstream and tenant of this gateway: no two of its processes share an id.
    ...(options.stdioUidRange ? { userIds: new StdioUserIds(options.stdioUidRange.first, options.stdioUidRange.last) } : {}),
  };
  const pool = new HttpPool({
    maxSocketsPerOrigin: options.maxSocketsPerOrigin ?? 128,
    // One budget of DNS lookups for the replica, shared out per tenant: a tenant's names that never resolve hold up
    // only its own connections.
    lookupFor: createGuardedLookups(policy),
  });
  const upstreams = new Map<string, UpstreamState>();
  const stdioPools = new Map<string, StdioPool>();
  /**
   * Pools a configuration change replaced, until their last process is gone: their processes serve the sessions kept
   * on them, and a shutdown waits for those to exit as for any other (else one slow to exit outlives the gateway).
   */
  const retiredStdioPools = new Set<StdioPool>();
  const registry = new Set<DisposableSession>();
  // Ids toward Streamable HTTP upstreams: a random base makes two replicas continuing one upstream
  // session very unlikely to use the same id at once.
  let nextHttpId = randomInt(1, 2 ** 31) * 2 ** 20;
  const nextId = (): number => nextHttpId++;
  let shutDown = false;

  function stateOf(config: UpstreamConfig): UpstreamState {
    let state = upstreams.get(config.id);
    if (state === undefined || state.version < config.version) {
      // A new configuration starts with a closed circuit: the old one may have been the problem.
      state = { version: config.version, tenantId: config.tenantId, breaker: new CircuitBreaker(breakerOptions) };
      upstreams.set(config.id, state);
    }
    return state;
  }

  /**
   * A connect that may have been the half-open probe failed without telling the breaker (the URL refused, the stream
   * answered 4xx or not as SSE): the next probe must not wait a whole cool-down. Not for a connect the open circuit
   * refused: that one was never the probe, and would free the slot of the probe still under way.
   */
  function endedWithoutVerdict(breaker: CircuitBreaker, error: unknown): void {
    if ((error as { reason?: unknown } | null)?.reason !== 'circuit_open') breaker.probeEnded();
  }

  function contextFor(config: UpstreamConfig): SessionContext {
    return { config, breaker: stateOf(config).breaker, logger, maxMessageBytes, heldAnswers, registry };
  }

  function targetFor(config: UpstreamConfig) {
    const decision = checkUpstreamUrl(config.url, policy);
    if (!decision.ok) {
      logger.warn({ ...logFields(config), why: decision.reason }, 'upstream URL refused');
      logger.debug({ ...logFields(config), origin: originOf(config.url) }, 'refused upstream URL');
      throw errors.connectFailed();
    }
    return pool.target(decision.url, config.tenantId, config.id);
  }

  function stdioPoolFor(config: UpstreamConfig): StdioPool {
    let stdio = stdioPools.get(config.id);
    if (stdio !== undefined && stdio.version < config.version) {
      // An edit that does not change how the process starts (a name, a timeout) keeps the processes: retired, they
      // would live on for the sessions kept on them beside a new pool's, beyond the bound on processes.
      if (sameConnection(stdio.config, config)) stdio.keepFor(contextFor(config));
      else {
        const retired = stdio;
        retiredStdioPools.add(retired);
        retired.retire(() => retiredStdioPools.delete(retired));
        stdio = undefined;
      }
    }
    if (stdio === undefined) {
      stdio = new StdioPool(
        contextFor(config),
        stdioOptions,
        Math.max(1, options.maxStdioProcessesPerUpstream),
      );
      stdioPools.set(config.id, stdio);
    }
    return stdio;
  }

  async function connect(config: UpstreamConfig, identity: ClientIdentity): Promise<UpstreamSession> {
    if (shutDown) throw errors.closed();
    switch (config.transport) {
      case 'streamable_http': {
        // The initialize request itself goes through the breaker (and is the half-open probe).
        const ctx = contextFor(config);
        const session = new StreamableHttpSession(
          { ...ctx, target: targetFor(config), nextId, standaloneBackoffMs: options.standaloneBackoffMs },
          { sessionId: null, protocolVersion: identity.protocolVersion },
          resumedInfo(identity.protocolVersion, config.name),
          false,
        );
        try {
          await session.handshake(identity);
        } catch (error) {
          // An upstream that named a session before the handshake failed (a protocol version we do not speak, the
          // initialized notification refused) is told it ends (DELETE), in the background: otherwise each retry left
          // one more session open there.
          void session.close().catch(() => undefined);
          endedWithoutVerdict(ctx.breaker, error);
          throw error;
        }
        logger.debug({ ...logFields(config), origin: originOf(config.url) }, 'upstream session opened');
        return session;
      }
      case 'sse': {
        const ctx = contextFor(config);
        if (!ctx.breaker.tryPass()) throw errors.circuitOpen();
        try {
          const session = new LegacySseSession({ ...ctx, target: targetFor(config) });
          await session.handshake(identity);
          logger.debug({ ...logFields(config), origin: originOf(config.url) }, 'upstream session opened');
          return session;
        } catch (error) {
          endedWithoutVerdict(ctx.breaker, error);
          throw error;
        }
      }
      case 'stdio':
        return stdioPoolFor(config).connect(identity);
      default:
        throw errors.protocol('unknown transport');
    }
  }

  async function resume(
    config: UpstreamConfig,
    identity: ClientIdentity,
    state: UpstreamSessionState,
  ): Promise<UpstreamSession> {
    if (shutDown) throw errors.closed();
    if (config.transport !== 'streamable_http' || state.sessionId === null) return connect(config, identity);
    // The upstream was repointed since its session was opened: the old server's session id must not go to the new
    // URL (the engine opens a new session instead; this is the last line).
    if (sessionElsewhere(state, config)) throw errors.sessionExpired();
    const ctx = contextFor(config);
    return new StreamableHttpSession(
      { ...ctx, target: targetFor(config), nextId, standaloneBackoffMs: options.standaloneBackoffMs },
      state,
      resumedInfo(state.protocolVersion, config.name),
      true,
    );
  }

  async function shutdown(): Promise<void> {
    shutDown = true;
    for (const session of [...registry]) session.dispose();
    await Promise.all([...stdioPools.values(), ...retiredStdioPools].map((stdio) => stdio.shutdown()));
    stdioPools.clear();
    retiredStdioPools.clear();
    await stdioOptions.userIds?.release();
    pool.destroy();
  }

  // Ready when the stdio user-id range is this process's (and what a crashed gateway left is cleared).
  const ready = (): Promise<void> => stdioOptions.userIds?.ready ?? Promise.resolve();

  const circuits = (): UpstreamCircuit[] =>
    [...upstreams].map(([upstreamId, { tenantId, breaker }]) => ({ upstreamId, tenantId, state: breaker.state }));

  function departed(tenantId: string, current: (upstreamId: string) => UpstreamConfig | undefined): void {
    for (const [upstreamId, stdio] of [...stdioPools]) {
      if (stdio.config.tenantId !== tenantId) continue;
      const config = current(upstreamId);
      // Still configured and started the same way (or not newer: a replica's registry may lag the pool's config).
      if (config !== undefined && (config.version <= stdio.version || sameConnection(stdio.config, config))) continue;
      stdioPools.delete(upstreamId);
      retiredStdioPools.add(stdio);
      stdio.retire(() => retiredStdioPools.delete(stdio));
    }
    for (const [upstreamId, state] of [...upstreams]) if (state.tenantId === tenantId && current(upstreamId) === undefined) upstreams.delete(upstreamId);
  }

  return { connect, resume, shutdown, ready, circuits, departed };
}
