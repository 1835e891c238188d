import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

/** A successful tool result with a text block and, when given, the same data as structured content. */
export function textResult(text: string, structuredContent?: Record<string, unknown>): CallToolResult {
  return structuredContent === undefined
    ? { content: [{ type: 'text', text }] }
    : { content: [{ type: 'text', text }], structuredContent };
}

/**
 * A tool-level failure the model can read and act on (`isError: true`), as opposed to a JSON-RPC
 * protocol error: the call itself worked, the operation did not.
 */
export function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true };
}
