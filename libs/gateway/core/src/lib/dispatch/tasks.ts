import { MAX_TASK_ROUTE_TTL_MS } from '@portcullis/gateway/mcp';

/**
 * Tasks (MCP 2025-11-25, experimental): an upstream may answer a task-augmented `tools/call` with a task, which the
 * agent then polls (`tasks/get`), waits on (`tasks/result`) or cancels (`tasks/cancel`). The agent is only ever shown
 * ids the gateway gave (`TaskRouteStore`); these helpers swap one id for the other in the messages that carry them.
 */

/** The `_meta` key that ties a request, notification or result to a task. */
export const RELATED_TASK = 'io.modelcontextprotocol/related-task';

/** MCP: an unknown task id is Invalid params; the same words whether it never existed or is another session's. */
export const TASK_NOT_FOUND = 'Failed to retrieve task: Task not found';

/** Whether a task status is one a task never leaves (MCP: completed, failed, cancelled). */
export const isTerminalTaskStatus = (status: unknown): boolean => status === 'completed' || status === 'failed' || status === 'cancelled';

/** Tasks came with this protocol version; a session that negotiated an older one is offered none. */
const FIRST_TASKS_VERSION = '2025-11-25';

/** Whether a session of this protocol version is offered tasks, given a store for their routes. */
export const offersTasks = (protocolVersion: string, hasStore: boolean): boolean => hasStore && protocolVersion >= FIRST_TASKS_VERSION;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A minute past the task's own lifetime (at most a day); a day when it has none (`ttl: null`) or did not say. */
export function taskLifetimeMs(ttl: unknown): number {
  if (typeof ttl === 'number' && Number.isFinite(ttl) && ttl > 0) return Math.min(ttl + 60_000, MAX_TASK_ROUTE_TTL_MS);
  return MAX_TASK_ROUTE_TTL_MS;
}

/** The task a message's params refer to: a status notification's `taskId`, or the related-task `_meta`. */
export function referencedTask(method: string | undefined, params: Readonly<Record<string, unknown>> | undefined): string | undefined {
  if (params === undefined) return undefined;
  if (method === 'notifications/tasks/status' && typeof params['taskId'] === 'string') return params['taskId'];
  return relatedTaskId(params);
}

/** The related-task id in `_meta` of a params or result object. */
export function relatedTaskId(value: Readonly<Record<string, unknown>>): string | undefined {
  const meta = value['_meta'];
  const related = isObject(meta) ? meta[RELATED_TASK] : undefined;
  return isObject(related) && typeof related['taskId'] === 'string' ? related['taskId'] : undefined;
}

/** `value` with its related-task `_meta` naming `taskId` instead (other `_meta` keys kept). */
function withRelatedTask<T extends Record<string, unknown>>(value: T, taskId: string): T {
  const meta = value['_meta'] as Record<string, unknown>;
  return { ...value, _meta: { ...meta, [RELATED_TASK]: { ...(meta[RELATED_TASK] as Record<string, unknown>), taskId } } };
}

/**
 * A message's params with every mention of the upstream's task id `from` replaced by `to`: the `taskId` of a status
 * notification or a task result, and the related-task `_meta`.
 */
export function renameTask(params: Record<string, unknown>, from: string, to: string): Record<string, unknown> {
  let out = params;
  if (out['taskId'] === from) out = { ...out, taskId: to };
  if (relatedTaskId(out) === from) out = withRelatedTask(out, to);
  return out;
}

/** The params to send upstream for a task method: the upstream's own task id, and no related-task `_meta` (MCP: `taskId` is the source of truth). */
export function upstreamTaskParams(params: Readonly<Record<string, unknown>>, upstreamTaskId: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...params, taskId: upstreamTaskId };
  const meta = params['_meta'];
  if (isObject(meta) && RELATED_TASK in meta) {
    const { [RELATED_TASK]: _dropped, ...rest } = meta;
    out['_meta'] = rest;
  }
  return out;
}
