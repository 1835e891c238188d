type Caps = Readonly<Record<string, unknown>>;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const flag = (caps: Caps, area: string, name: string): boolean => {
  const value = caps[area];
  return isObject(value) && value[name] === true;
};

/** Whether an upstream's capabilities include `tasks.requests.tools.call` (MCP 2025-11-25 tasks, server side). */
export function runsToolCallsAsTasks(caps: Caps): boolean {
  const tasks = caps['tasks'];
  const requests = isObject(tasks) ? tasks['requests'] : undefined;
  const tools = isObject(requests) ? requests['tools'] : undefined;
  return isObject(tools) && isObject(tools['call']);
}

/** Whether an upstream with these capabilities cancels its tasks (`tasks.cancel`). */
export function cancelsTasks(caps: Caps): boolean {
  const tasks = caps['tasks'];
  return isObject(tasks) && isObject(tasks['cancel']);
}

/**
 * The capabilities the gateway advertises: exactly what its upstreams support, merged. A capability is
 * advertised when at least one upstream has it; `resources.subscribe` when at least one upstream that has resources
 * sets it. `listChanged` is always set for tools, prompts and resources: what the agent may list changes with the
 * gateway's own state too (the tenant's policy, its upstreams being added, edited or removed), and the gateway tells
 * it so (`notifications/<area>/list_changed`) whether or not an upstream ever announces a change of its own.
 *
 * Tasks (`options.taskUpstreams`: the capabilities of the upstreams whose tasks the gateway can route for the session):
 * task-augmented `tools/call` when one of them runs tool calls as tasks, and `tasks/cancel` when one of those supports it.
 * `tasks/list` is never advertised: the gateway would have to merge upstream listings that, on a shared stdio
 * process, hold other sessions' tasks (ADR 0008).
 */
export function mergeServerCapabilities(upstreams: readonly Caps[], options: { readonly taskUpstreams?: readonly Caps[] } = {}): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  const has = (area: string) => upstreams.filter((caps) => isObject(caps[area]));
  const tools = has('tools');
  if (tools.length > 0) merged['tools'] = { listChanged: true };
  if (has('prompts').length > 0) merged['prompts'] = { listChanged: true };
  const resources = has('resources');
  if (resources.length > 0) {
    merged['resources'] = { ...(resources.some((c) => flag(c, 'resources', 'subscribe')) ? { subscribe: true } : {}), listChanged: true };
  }
  if (has('logging').length > 0) merged['logging'] = {};
  if (has('completions').length > 0) merged['completions'] = {};
  const taskRunners = (options.taskUpstreams ?? []).filter(runsToolCallsAsTasks);
  if (taskRunners.length > 0) {
    const cancel = taskRunners.some(cancelsTasks);
    merged['tasks'] = { ...(cancel ? { cancel: {} } : {}), requests: { tools: { call: {} } } };
  }
  return merged;
}

/**
 * What the gateway tells an upstream it (the client side) supports: only what the agent declared and
 * the gateway can relay (sampling, elicitation, roots). Never `sampling.context`: the agent sees the gateway as one
 * server, so the context it would add for `includeContext` ("thisServer", "allServers") is that of every upstream of
 * the session, which the gateway cannot narrow to the asking one (`relayedSamplingParams`). MCP 2025-11-25: a server uses
 * those values only when the client declares `sampling.context`.
 */
export function relayableClientCapabilities(agent: Caps): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ['sampling', 'elicitation', 'roots'] as const) {
    const declared = agent[key];
    if (!isObject(declared)) continue;
    if (key === 'sampling' && 'context' in declared) {
      const { context: _context, ...sampling } = declared;
      out[key] = sampling;
    } else {
      out[key] = declared;
    }
  }
  return out;
}

/** `includeContext` values that ask the client for context from servers: every upstream of the session, behind the gateway. */
const SERVER_CONTEXT = new Set<unknown>(['thisServer', 'allServers']);

/**
 * The params of an upstream's `sampling/createMessage` as the agent may be sent them: `includeContext` "thisServer" or
 * "allServers" becomes "none". The agent takes the gateway for one server, so either would have it put context from
 * all the session's upstreams (other upstreams' tool results, resources) into a completion that goes back to the
 * asking upstream: data of one upstream leaked to another. The gateway does not advertise `sampling.context`
 * (`relayableClientCapabilities`), so only an upstream that ignores that asks; MCP 2025-11-25 soft-deprecates both
 * values. `params` itself when nothing changes.
 */
export function relayedSamplingParams(params: Record<string, unknown>): Record<string, unknown> {
  return SERVER_CONTEXT.has(params['includeContext']) ? { ...params, includeContext: 'none' } : params;
}

/** Which area of the client's capabilities each server→client request needs. */
const CLIENT_AREA_OF: Readonly<Record<string, string>> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

/** Why the agent cannot be sent an upstream's request, by what its capabilities lack. */
export interface ClientCapabilityGap {
  /** -32601 when the agent lacks the whole area, -32602 when it lacks the mode or feature the request uses. */
  readonly code: -32601 | -32602;
  readonly message: string;
}

/**
 * What the agent's declared capabilities (`agent`) lack for an upstream's request, or undefined when it may be sent:
 * the area (sampling, elicitation, roots), then what MCP 2025-11-25 gates inside it. Elicitation in url mode needs
 * `elicitation.url`, in form mode `elicitation.form` or an empty `elicitation` (older clients' form only); sampling
 * with `tools` or `toolChoice` needs `sampling.tools`. Ping needs none. Any other method MCP defines no client area for
 * (the task methods are refused before this) is none the gateway relays: -32601, as a client that has no such method answers.
 * Before, it went to the agent, and an upstream could reach whatever method an agent's client implements beyond MCP's
 * (found by review).
 */
export function clientCapabilityGap(method: string, params: Readonly<Record<string, unknown>> | undefined, agent: Caps | undefined): ClientCapabilityGap | undefined {
  if (method === 'ping') return undefined;
  const area = Object.hasOwn(CLIENT_AREA_OF, method) ? CLIENT_AREA_OF[method] : undefined;
  if (area === undefined) return { code: -32601, message: `Method not found: ${method.slice(0, 64)}` };
  const declared = agent?.[area];
  if (!isObject(declared)) return { code: -32601, message: `The client does not support ${method}` };
  if (method === 'elicitation/create') {
    const mode = params?.['mode'] ?? 'form';
    const url = isObject(declared['url']);
    const form = isObject(declared['form']) || (!url && declared['form'] === undefined);
    if (mode === 'url' ? !url : mode !== 'form' || !form) {
      return { code: -32602, message: `The client does not support ${typeof mode === 'string' ? mode.slice(0, 32) : 'this'}-mode elicitation` };
    }
  } else if (method === 'sampling/createMessage' && (params?.['tools'] !== undefined || params?.['toolChoice'] !== undefined) && !isObject(declared['tools'])) {
    return { code: -32602, message: 'The client does not support tool use in sampling' };
  }
  return undefined;
}
