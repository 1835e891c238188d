/**
 * Checks of the parts of an agent's request params that MCP defines strictly and the gateway passes on as they came.
 * Without them a malformed part reached the upstream: an HTTP upstream refused the message (the agent heard "upstream
 * unavailable" or the upstream's schema dump), and the SDK's stdio server dropped it without an answer, so the call
 * waited out its timeout, and a few such calls had the shared process killed and its circuit opened for every agent.
 * Each check answers what is wrong (for a -32602), or undefined; they look at a handful of fields, never walk values.
 */

import { RELATED_TASK } from './tasks';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `_meta` of a request: an object; its `progressToken` a string or an integer; its related task names a task id. */
export function metaProblem(params: Readonly<Record<string, unknown>>): string | undefined {
  const meta = params['_meta'];
  if (meta === undefined) return undefined;
  if (!isObject(meta)) return '_meta must be an object';
  const token = meta['progressToken'];
  if (token !== undefined && typeof token !== 'string' && !Number.isSafeInteger(token)) return '_meta.progressToken must be a string or an integer';
  const related = meta[RELATED_TASK];
  if (related !== undefined && !(isObject(related) && typeof related['taskId'] === 'string')) return `_meta["${RELATED_TASK}"] must name a taskId`;
  return undefined;
}

/** A map of names to text (prompt arguments, a completion's context arguments), when present. */
export function textMapProblem(value: unknown, label: string): string | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) return `${label} must be an object`;
  for (const key in value) if (typeof value[key] !== 'string') return `${label} must map names to strings`;
  return undefined;
}

/** `completion/complete` beside its `ref`: the argument being completed, and the context's arguments. */
export function completionProblem(params: Readonly<Record<string, unknown>>): string | undefined {
  const argument = params['argument'];
  if (!isObject(argument) || typeof argument['name'] !== 'string' || typeof argument['value'] !== 'string') {
    return 'completion/complete needs an argument with a name and a value (strings)';
  }
  const context = params['context'];
  if (context === undefined) return undefined;
  if (!isObject(context)) return 'context must be an object';
  return textMapProblem(context['arguments'], 'context.arguments');
}

// `sampling.context` is never relayed (see relayableClientCapabilities), so whatever it is does not matter here.
const OPTIONAL_OBJECTS: Readonly<Record<string, readonly string[]>> = {
  sampling: ['tools'],
  elicitation: ['form', 'url'],
  roots: [],
};

/**
 * The client capabilities the gateway relays to upstreams (sampling, elicitation, roots), as MCP types them: each an
 * object, their flags booleans and their sub-capabilities objects. A malformed one made every upstream refuse the
 * gateway's initialize, and the agent got a session with no upstreams and no word why.
 */
export function relayedCapabilitiesProblem(capabilities: Readonly<Record<string, unknown>>): string | undefined {
  for (const [area, parts] of Object.entries(OPTIONAL_OBJECTS)) {
    const declared = capabilities[area];
    if (declared === undefined) continue;
    if (!isObject(declared)) return `capabilities.${area} must be an object`;
    for (const part of parts) {
      if (declared[part] !== undefined && !isObject(declared[part])) return `capabilities.${area}.${part} must be an object`;
    }
  }
  const roots = capabilities['roots'];
  if (isObject(roots) && roots['listChanged'] !== undefined && typeof roots['listChanged'] !== 'boolean') return 'capabilities.roots.listChanged must be a boolean';
  const form = isObject(capabilities['elicitation']) ? capabilities['elicitation']['form'] : undefined;
  if (isObject(form) && form['applyDefaults'] !== undefined && typeof form['applyDefaults'] !== 'boolean') {
    return 'capabilities.elicitation.form.applyDefaults must be a boolean';
  }
  return undefined;
}
