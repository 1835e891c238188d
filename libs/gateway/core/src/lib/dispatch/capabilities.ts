type Caps = Readonly<Record<string, unknown>>;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const flag = (caps: Caps, area: string, name: string): boolean => {
  const value = caps[area];
  return isObject(value) && value[name] === true;
};

/**
 * The capabilities the gateway advertises: exactly what its upstreams support, merged. A capability is
 * advertised when at least one upstream has it; a sub-flag (listChanged, subscribe) when at least one
 * upstream that has the area sets it.
 */
export function mergeServerCapabilities(upstreams: readonly Caps[]): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  const has = (area: string) => upstreams.filter((caps) => isObject(caps[area]));
  const tools = has('tools');
  if (tools.length > 0) merged['tools'] = tools.some((c) => flag(c, 'tools', 'listChanged')) ? { listChanged: true } : {};
  const prompts = has('prompts');
  if (prompts.length > 0) merged['prompts'] = prompts.some((c) => flag(c, 'prompts', 'listChanged')) ? { listChanged: true } : {};
  const resources = has('resources');
  if (resources.length > 0) {
    merged['resources'] = {
      ...(resources.some((c) => flag(c, 'resources', 'subscribe')) ? { subscribe: true } : {}),
      ...(resources.some((c) => flag(c, 'resources', 'listChanged')) ? { listChanged: true } : {}),
    };
  }
  if (has('logging').length > 0) merged['logging'] = {};
  if (has('completions').length > 0) merged['completions'] = {};
  return merged;
}

/**
 * What the gateway tells an upstream it (the client side) supports: only what the agent declared and
 * the gateway can relay (sampling, elicitation, roots).
 */
export function relayableClientCapabilities(agent: Caps): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ['sampling', 'elicitation', 'roots'] as const) {
    if (isObject(agent[key])) out[key] = agent[key];
  }
  return out;
}
