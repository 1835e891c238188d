/** Protocol revisions the gateway speaks to agents, newest first. */
export const SUPPORTED_PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'] as const;
export type ProtocolVersion = (typeof SUPPORTED_PROTOCOL_VERSIONS)[number];
export const LATEST_PROTOCOL_VERSION: ProtocolVersion = SUPPORTED_PROTOCOL_VERSIONS[0];

/**
 * A client that sends no `MCP-Protocol-Version` header after initialisation is assumed to speak
 * 2025-03-26 (the first revision with Streamable HTTP), as the specification says.
 */
export const DEFAULT_HEADERLESS_VERSION: ProtocolVersion = '2025-03-26';

export function isSupportedVersion(value: unknown): value is ProtocolVersion {
  return typeof value === 'string' && (SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(value);
}

/**
 * Version negotiation for `initialize`: the client's version when we support it, otherwise our latest
 * (the client then decides whether it can continue).
 */
export function negotiateVersion(requested: unknown): ProtocolVersion {
  return isSupportedVersion(requested) ? requested : LATEST_PROTOCOL_VERSION;
}

/** JSON-RPC batches were allowed only in 2025-03-26. */
export const allowsBatches = (version: ProtocolVersion): boolean => version === '2025-03-26';

/**
 * From 2025-11-25 a server opens each SSE stream it can resume with a priming event (an id, empty data): the client
 * then holds an id to resume from before the first message (SEP-1699). Older clients would read the empty data as a
 * malformed message.
 */
export const primesStreams = (version: ProtocolVersion): boolean => version >= '2025-11-25';
