import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Where a task the agent sees lives: the upstream that created it, and that upstream's own task id. */
export interface TaskRoute {
  readonly upstreamId: string;
  readonly taskId: string;
}

/** Why a task could not be given an id the agent can use. */
export class TaskRouteError extends Error {
  constructor(
    readonly reason: 'too_many' | 'bad_task_id',
    message: string,
  ) {
    super(message);
    this.name = 'TaskRouteError';
  }
}

/**
 * The tasks (MCP 2025-11-25) upstreams created for one agent session, under ids the gateway gave them. The agent never
 * sees an upstream's task id: two upstreams may both number their tasks from 1, and an upstream session shared by
 * several agent sessions (a stdio process) would otherwise let one session reach another's task by its id. A task id
 * the agent presents is looked up in its own session's routes only, so it is bound to the session (and so to the
 * principal) that created it; an unknown one is "not found", whoever holds it.
 */
export interface TaskRouteStore {
  /**
   * Records a task an upstream created for the session and returns the id the agent is given (the same id again for a
   * task already recorded). Kept at least `ttlMs` (the task's own lifetime, bounded by the caller). Throws
   * TaskRouteError when the session holds its maximum of tasks or the upstream's id is unusable.
   */
  add(sessionId: string, route: TaskRoute, ttlMs: number): Promise<string>;
  /** The route of an id the agent was given in this session; undefined for any other. */
  route(sessionId: string, agentTaskId: string): Promise<TaskRoute | undefined>;
  /** The id the agent was given for an upstream's task, if this session created it. */
  agentTaskId(sessionId: string, route: TaskRoute): Promise<string | undefined>;
  /** Forgets the session's tasks (the session ended). */
  delete(sessionId: string): Promise<void>;
}

/** At most this many tasks per agent session (MCP: receivers should limit concurrent tasks per requestor). */
export const MAX_TASKS_PER_SESSION = 1_000;
/** An upstream task id longer than this is refused (it would be stored and compared on every lookup). */
export const MAX_UPSTREAM_TASK_ID_LENGTH = 512;
/** Routes are kept at most this long, whatever lifetime an upstream gives its task. */
export const MAX_TASK_ROUTE_TTL_MS = 24 * 60 * 60 * 1_000;

/** 128 random bits, base64url: what the gateway hands out. */
const AGENT_TASK_ID = /^[A-Za-z0-9_-]{22}$/;
const newAgentTaskId = (): string => randomBytes(16).toString('base64url');

/** `<upstream id>\n<upstream task id>`: upstream ids are UUIDs (no newline), so the first newline splits it. */
const routeText = (route: TaskRoute): string => `${route.upstreamId}\n${route.taskId}`;
const routeOf = (text: string): TaskRoute | undefined => {
  const cut = text.indexOf('\n');
  return cut <= 0 ? undefined : { upstreamId: text.slice(0, cut), taskId: text.slice(cut + 1) };
};

function checkRoute(route: TaskRoute): void {
  if (route.taskId.length === 0 || route.taskId.length > MAX_UPSTREAM_TASK_ID_LENGTH) {
    throw new TaskRouteError('bad_task_id', `the upstream's task id is empty or longer than ${MAX_UPSTREAM_TASK_ID_LENGTH} characters`);
  }
}

const tooMany = () => new TaskRouteError('too_many', `this session already has ${MAX_TASKS_PER_SESSION} tasks`);

const key = (sessionId: string) => `pcs:session:${sessionId}:tasks`;

/**
 * One hash per session: `g:<agent id>` → route and `u:<route>` → agent id. ARGV: agent id, route, max entries, TTL ms.
 * Returns the agent id (the existing one for a known route), or false at the limit.
 */
const ADD = `local known = redis.call('HGET', KEYS[1], 'u:' .. ARGV[2])
if known then return known end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) * 2 then return false end
redis.call('HSET', KEYS[1], 'g:' .. ARGV[1], ARGV[2], 'u:' .. ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return ARGV[1]`;

/** Task routes in Redis, so that any replica serves a session's tasks (ADR 0007). */
export class RedisTaskRouteStore implements TaskRouteStore {
  constructor(private readonly redis: Redis) {}

  async add(sessionId: string, route: TaskRoute, ttlMs: number): Promise<string> {
    checkRoute(route);
    const ttl = Math.min(Math.max(1, Math.ceil(ttlMs)), MAX_TASK_ROUTE_TTL_MS);
    const id = (await this.redis.eval(ADD, 1, key(sessionId), newAgentTaskId(), routeText(route), String(MAX_TASKS_PER_SESSION), String(ttl))) as string | null;
    if (id === null) throw tooMany();
    return id;
  }

  async route(sessionId: string, agentTaskId: string): Promise<TaskRoute | undefined> {
    if (!AGENT_TASK_ID.test(agentTaskId)) return undefined;
    const text = await this.redis.hget(key(sessionId), `g:${agentTaskId}`);
    return text === null ? undefined : routeOf(text);
  }

  async agentTaskId(sessionId: string, route: TaskRoute): Promise<string | undefined> {
    if (route.taskId.length > MAX_UPSTREAM_TASK_ID_LENGTH) return undefined;
    return (await this.redis.hget(key(sessionId), `u:${routeText(route)}`)) ?? undefined;
  }

  async delete(sessionId: string): Promise<void> {
    await this.redis.del(key(sessionId));
  }
}

/** The same in one process (specs, a single replica without Redis). Lifetimes are not enforced. */
export class MemoryTaskRouteStore implements TaskRouteStore {
  private readonly sessions = new Map<string, { readonly byAgent: Map<string, TaskRoute>; readonly byRoute: Map<string, string> }>();

  async add(sessionId: string, route: TaskRoute): Promise<string> {
    checkRoute(route);
    let tasks = this.sessions.get(sessionId);
    if (tasks === undefined) {
      tasks = { byAgent: new Map(), byRoute: new Map() };
      this.sessions.set(sessionId, tasks);
    }
    const known = tasks.byRoute.get(routeText(route));
    if (known !== undefined) return known;
    if (tasks.byAgent.size >= MAX_TASKS_PER_SESSION) throw tooMany();
    const id = newAgentTaskId();
    tasks.byAgent.set(id, { upstreamId: route.upstreamId, taskId: route.taskId });
    tasks.byRoute.set(routeText(route), id);
    return id;
  }

  async route(sessionId: string, agentTaskId: string): Promise<TaskRoute | undefined> {
    return this.sessions.get(sessionId)?.byAgent.get(agentTaskId);
  }

  async agentTaskId(sessionId: string, route: TaskRoute): Promise<string | undefined> {
    return this.sessions.get(sessionId)?.byRoute.get(routeText(route));
  }

  async delete(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
  }
}
