import { createLogger, type Logger } from '@portcullis/shared/util-logger';
import type { JsonRpcRequest, Principal } from '@portcullis/gateway/mcp';
import { SessionEngine, type EngineDeps, type EngineOptions } from '../dispatch/session-engine';
import { MemorySessionStore, requestMaker, shutDownAfterEach, SPEC_ENGINE_OPTIONS } from './fake-upstreams';

/**
 * What a spec gives to make an engine: a fresh MemorySessionStore and the spec file's logger unless it names others,
 * and the options that differ from SPEC_ENGINE_OPTIONS.
 */
export type SpecEngineDeps = Omit<EngineDeps, 'sessions' | 'logger' | 'options'> &
  Partial<Pick<EngineDeps, 'sessions' | 'logger'>> & { readonly options?: Partial<EngineOptions> };

/** How a spec opens a session: as `principal` (the spec file's), with this protocol version and these capabilities. */
export interface SpecSessionOptions {
  readonly principal?: Principal;
  readonly protocolVersion?: string;
  readonly capabilities?: Record<string, unknown>;
}

/**
 * Spec helper: the set-up every SessionEngine spec file shares. Call once, at the top of the file: it registers the
 * `afterEach` that shuts the file's engines down, and returns its principal, its logger (silent unless given), a
 * request maker (ids counting up from 1 in the file), and helpers to make an engine and open a session on it.
 */
export function engineSpecs(setup: { readonly logger?: Logger } = {}) {
  const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
  const logger = setup.logger ?? createLogger({ service: 'spec', level: 'silent' });
  const engines = shutDownAfterEach<SessionEngine>();
  const req = requestMaker();

  /** An initialize request from a client named 'spec'. */
  const initialize = (protocolVersion = '2025-06-18', capabilities: Record<string, unknown> = {}): JsonRpcRequest =>
    req('initialize', { protocolVersion, capabilities, clientInfo: { name: 'spec', version: '1' } });

  /** An engine over `deps` (its options over SPEC_ENGINE_OPTIONS), shut down after the test. */
  const makeEngine = (deps: SpecEngineDeps): SessionEngine => {
    const engine = new SessionEngine({ ...deps, sessions: deps.sessions ?? new MemorySessionStore(), logger: deps.logger ?? logger, options: { ...SPEC_ENGINE_OPTIONS, ...deps.options } });
    engines.push(engine);
    return engine;
  };

  /** The record of session `id` as `engine` (another replica, say) reads it; throws if there is none. */
  const recordOn = async (engine: SessionEngine, id: string, as: Principal = principal) => {
    const record = await engine.session(id, as);
    if (!record) throw new Error('no session');
    return record;
  };

  /** Initializes a session on `engine` and reads its record back (the initialize answer too); throws if there is none. */
  const openSession = async (engine: SessionEngine, options: SpecSessionOptions = {}) => {
    const as = options.principal ?? principal;
    const { sessionId, response } = await engine.initialize(as, initialize(options.protocolVersion, options.capabilities), 'trace');
    return { record: await recordOn(engine, sessionId ?? '', as), response };
  };

  return { principal, logger, engines, req, initialize, makeEngine, openSession, recordOn };
}
