import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Where a task the agent sees lives: the upstream that created it, and that upstream's own task id. */
export interface TaskRoute {
  readonly upstreamId: string;
  readonly taskId: string;
}

/** A route as looked up: when it lapses (ms since the epoch), and the tool whose call created the task, when known. */
export type StoredTaskRoute = TaskRoute & { readonly expiresAt: number; readonly tool?: string };

/** A tool name longer than this is not kept with a route (names are at most 128 characters in MCP listings). */
export const MAX_TASK_TOOL_NAME_LENGTH = 512;

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
   * task still recorded). Kept for `ttlMs` (the task's own lifetime and a margin; at most MAX_TASK_ROUTE_TTL_MS), then
   * unknown; only routes within their lifetime count toward MAX_TASKS_PER_SESSION. Throws TaskRouteError when the
   * session holds its maximum of tasks or the upstream's id is unusable. `tool`: the tool (as its upstream names it)
   * whose call created the task, kept with the route so that requests about the task are decided and audited as about
   * that tool.
   */
  add(sessionId: string, route: TaskRoute, ttlMs: number, tool?: string): Promise<string>;
  /** The route of an id the agent was given in this session; undefined for any other. */
  route(sessionId: string, agentTaskId: string): Promise<StoredTaskRoute | undefined>;
  /** The id the agent was given for an upstream's task, if this session created it. */
  agentTaskId(sessionId: string, route: TaskRoute): Promise<string | undefined>;
  /** Forgets the session's tasks (the session ended). */
  delete(sessionId: string): Promise<void>;
}

/** At most this many tasks within their lifetime per agent session (MCP: receivers should limit tasks per requestor). */
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

/** `<expires at, ms>\n<rest>`: the rest if it has not expired by `now`. */
function unexpired(text: string | null, now: number): string | undefined {
  if (text === null) return undefined;
  const cut = text.indexOf('\n');
  return cut > 0 && Number(text.slice(0, cut)) > now ? text.slice(cut + 1) : undefined;
}

function checkRoute(route: TaskRoute): void {
  if (route.taskId.length === 0 || route.taskId.length > MAX_UPSTREAM_TASK_ID_LENGTH) {
    throw new TaskRouteError('bad_task_id', `the upstream's task id is empty or longer than ${MAX_UPSTREAM_TASK_ID_LENGTH} characters`);
  }
}

/** The tool name kept with a route: none when absent, empty or too long to be a listed name. */
const keptTool = (tool: string | undefined): string | undefined =>
  tool !== undefined && tool.length > 0 && tool.length <= MAX_TASK_TOOL_NAME_LENGTH ? tool : undefined;

const lifetime = (ttlMs: number): number => Math.min(Math.max(1, Math.ceil(ttlMs)), MAX_TASK_ROUTE_TTL_MS);

const tooMany = () => new TaskRouteError('too_many', `this session already has ${MAX_TASKS_PER_SESSION} tasks`);

/** The two keys of a session's routes, in one hash slot (`{session id}`), as a script on both needs in a cluster. */
export const taskRouteKeys = (sessionId: string) => ({ routes: `pcs:tasks:{${sessionId}}`, expiry: `pcs:task-expiry:{${sessionId}}` });
const routesKey = (sessionId: string) => taskRouteKeys(sessionId).routes;
const expiryKey = (sessionId: string) => taskRouteKeys(sessionId).expiry;

/**
 * KEYS: the routes hash (`g:<agent id>` → `<expires>\n<route>`, `u:<route>` → `<expires>\n<agent id>`, `n:<agent id>` →
 * the tool that created the task, when known) and the expiry set (agent id by expiry). ARGV: agent id, route, max
 * tasks, lifetime ms, now (ms, the gateway's clock: the one lookups compare with, so a replica whose clock is off from
 * Redis's still agrees with itself), tool ('' when unknown). Routes past their lifetime are removed first (at most 200
 * a call), so the limit counts the tasks that can still be reached. Returns the agent id (the existing one for a route
 * still recorded), or false at the limit.
 */
const ADD = `local now = tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 200)
for _, id in ipairs(expired) do
  local value = redis.call('HGET', KEYS[1], 'g:' .. id)
  if value then
    local route = 'u:' .. string.sub(value, string.find(value, '\\n', 1, true) + 1)
    redis.call('HDEL', KEYS[1], 'g:' .. id, 'n:' .. id)
    -- The reverse entry only if it still names this id (the route may have been recorded again since).
    local back = redis.call('HGET', KEYS[1], route)
    if back and string.sub(back, string.find(back, '\\n', 1, true) + 1) == id then redis.call('HDEL', KEYS[1], route) end
  end
  redis.call('ZREM', KEYS[2], id)
end
local known = redis.call('HGET', KEYS[1], 'u:' .. ARGV[2])
if known then
  local cut = string.find(known, '\\n', 1, true)
  if tonumber(string.sub(known, 1, cut - 1)) > now then
    local id = string.sub(known, cut + 1)
    -- The tool that first started it stays; one recorded without (by a replica that kept none) learns it now.
    if ARGV[6] ~= '' then redis.call('HSETNX', KEYS[1], 'n:' .. id, ARGV[6]) end
    return id
  end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return false end
local expires = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'g:' .. ARGV[1], expires .. '\\n' .. ARGV[2], 'u:' .. ARGV[2], expires .. '\\n' .. ARGV[1])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'n:' .. ARGV[1], ARGV[6]) end
redis.call('ZADD', KEYS[2], expires, ARGV[1])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < tonumber(ARGV[4]) then redis.call('PEXPIRE', key, ARGV[4]) end
end
return ARGV[1]`;

type ScriptedRedis = Redis & {
  portcullisTaskRouteAdd(routes: string, expiry: string, id: string, route: string, max: number, lifetimeMs: number, now: number, tool: string): Promise<string | null>;
};

/** Task routes in Redis, so that any replica serves a session's tasks (ADR 0007). */
export class RedisTaskRouteStore implements TaskRouteStore {
  private readonly scripted: ScriptedRedis;

  constructor(private readonly redis: Redis) {
    this.scripted = redis as ScriptedRedis;
    // Sent once, then run by its digest (EVALSHA).
    if (typeof this.scripted.portcullisTaskRouteAdd !== 'function') redis.defineCommand('portcullisTaskRouteAdd', { numberOfKeys: 2, lua: ADD });
  }

  async add(sessionId: string, route: TaskRoute, ttlMs: number, tool?: string): Promise<string> {
    checkRoute(route);
    const id = await this.scripted.portcullisTaskRouteAdd(routesKey(sessionId), expiryKey(sessionId), newAgentTaskId(), routeText(route), MAX_TASKS_PER_SESSION, lifetime(ttlMs), Date.now(), keptTool(tool) ?? '');
    if (id === null) throw tooMany();
    return id;
  }

  async route(sessionId: string, agentTaskId: string): Promise<StoredTaskRoute | undefined> {
    if (!AGENT_TASK_ID.test(agentTaskId)) return undefined;
    const [stored, tool] = await this.redis.hmget(routesKey(sessionId), `g:${agentTaskId}`, `n:${agentTaskId}`);
    const text = unexpired(stored ?? null, Date.now());
    const route = text === undefined ? undefined : routeOf(text);
    if (route === undefined) return undefined;
    const expiresAt = Number((stored as string).slice(0, (stored as string).indexOf('\n')));
    // A route a replica without tool names recorded (during an upgrade) has none.
    return tool ? { ...route, expiresAt, tool } : { ...route, expiresAt };
  }

  async agentTaskId(sessionId: string, route: TaskRoute): Promise<string | undefined> {
    if (route.taskId.length > MAX_UPSTREAM_TASK_ID_LENGTH) return undefined;
    return unexpired(await this.redis.hget(routesKey(sessionId), `u:${routeText(route)}`), Date.now());
  }

  async delete(sessionId: string): Promise<void> {
    await this.redis.del(routesKey(sessionId), expiryKey(sessionId));
  }
}

/** The same in one process (specs, a single replica without Redis). */
export class MemoryTaskRouteStore implements TaskRouteStore {
  private readonly sessions = new Map<string, Map<string, { readonly route: TaskRoute; readonly expires: number; readonly tool: string | undefined }>>();

  constructor(private readonly now: () => number = Date.now) {}

  async add(sessionId: string, route: TaskRoute, ttlMs: number, tool?: string): Promise<string> {
    checkRoute(route);
    let tasks = this.sessions.get(sessionId);
    if (tasks === undefined) {
      tasks = new Map();
      this.sessions.set(sessionId, tasks);
    }
    const now = this.now();
    for (const [id, task] of tasks) if (task.expires <= now) tasks.delete(id);
    for (const [id, task] of tasks) {
      if (task.route.upstreamId !== route.upstreamId || task.route.taskId !== route.taskId) continue;
      if (task.tool === undefined && keptTool(tool) !== undefined) tasks.set(id, { ...task, tool: keptTool(tool) });
      return id;
    }
    if (tasks.size >= MAX_TASKS_PER_SESSION) throw tooMany();
    const id = newAgentTaskId();
    tasks.set(id, { route: { upstreamId: route.upstreamId, taskId: route.taskId }, expires: now + lifetime(ttlMs), tool: keptTool(tool) });
    return id;
  }

  async route(sessionId: string, agentTaskId: string): Promise<StoredTaskRoute | undefined> {
    const task = this.sessions.get(sessionId)?.get(agentTaskId);
    if (task === undefined || task.expires <= this.now()) return undefined;
    return task.tool === undefined ? { ...task.route, expiresAt: task.expires } : { ...task.route, expiresAt: task.expires, tool: task.tool };
  }

  async agentTaskId(sessionId: string, route: TaskRoute): Promise<string | undefined> {
    const now = this.now();
    for (const [id, task] of this.sessions.get(sessionId) ?? []) {
      if (task.expires > now && task.route.upstreamId === route.upstreamId && task.route.taskId === route.taskId) return id;
    }
    return undefined;
  }

  async delete(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
  }
}
