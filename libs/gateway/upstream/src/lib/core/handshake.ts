import { isSupportedVersion, type ClientIdentity, type UpstreamServerInfo } from '@portcullis/gateway/mcp';
import { relayedInstructions } from '@portcullis/contracts/tool-pins';
import { isStackExhausted } from '@portcullis/shared/util-errors';
import { errors } from './wire';

export const initializeParams = (identity: ClientIdentity): Record<string, unknown> => ({
  protocolVersion: identity.protocolVersion,
  capabilities: identity.capabilities,
  clientInfo: identity.clientInfo,
});

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks an initialize result; throws a protocol error for anything the gateway cannot work with. */
export function toServerInfo(result: Record<string, unknown>): UpstreamServerInfo {
  const { protocolVersion, serverInfo, capabilities, instructions } = result;
  if (!isSupportedVersion(protocolVersion))
    throw errors.protocol('unsupported protocol version in the initialize result');
  if (!isObject(serverInfo) || typeof serverInfo['name'] !== 'string')
    throw errors.protocol('initialize result without serverInfo');
  const version = typeof serverInfo['version'] === 'string' ? serverInfo['version'] : '';
  let capabilitiesText: string | undefined;
  try {
    // Merged into the agent's initialize answer and kept in the session record, both serialised: a result nested too
    // deeply for that failed every agent's initialize (all upstreams with it); now only this upstream drops out.
    JSON.stringify([serverInfo, instructions]);
    capabilitiesText = JSON.stringify(capabilities);
  } catch (error) {
    if (!isStackExhausted(error)) throw error;
    throw errors.protocol('initialize result nested too deeply');
  }
  // The capabilities are copied into every agent session's record in Redis: an upstream must not make each of them
  // megabytes (a message may be up to 16 MiB).
  if (capabilitiesText !== undefined && capabilitiesText.length > MAX_CAPABILITIES_CHARS) throw errors.protocol('initialize result capabilities too large');
  // And shallow: Redis's JSON decoder (the record's scripts read its owner) takes at most 1,000 levels.
  if (nestedDeeperThan(capabilities, MAX_CAPABILITIES_DEPTH)) throw errors.protocol('initialize result capabilities nested too deeply');
  return {
    protocolVersion,
    serverInfo: { ...serverInfo, name: serverInfo['name'], version },
    capabilities: isObject(capabilities) ? capabilities : {},
    ...(typeof instructions === 'string' ? { instructions: relayedInstructions(instructions) } : {}),
  };
}

/** The largest capabilities object an upstream may declare (serialised, UTF-16 code units). */
export const MAX_CAPABILITIES_CHARS = 64 * 1024;
/** The deepest nesting of objects and arrays an upstream's capabilities may have (real servers nest a few levels). */
export const MAX_CAPABILITIES_DEPTH = 32;

/** Whether `value` nests objects or arrays more than `limit` levels deep (walked only that far). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (limit === 0) return true;
  for (const child of Array.isArray(value) ? value : Object.values(value)) if (nestedDeeperThan(child, limit - 1)) return true;
  return false;
}
/** Info of a session resumed from its stored state: the initialize result is not known on this replica. */
export const resumedInfo = (protocolVersion: string, name: string): UpstreamServerInfo => ({
  protocolVersion,
  serverInfo: { name, version: '' },
  capabilities: {},
});
