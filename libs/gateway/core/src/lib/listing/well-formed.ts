import { PromptSchema, ResourceSchema, ResourceTemplateSchema, ToolSchema } from '@modelcontextprotocol/sdk/types.js';
import type { ItemCheck } from './exposed-items';

type Schema = { safeParse(value: unknown): { success: boolean; error?: { issues: readonly { path: readonly PropertyKey[] }[] } } };

/**
 * An item of an upstream's listing checked against MCP's schema for its kind, as the official SDK's clients check
 * what a server lists: a tool without an `inputSchema` of `type: "object"`, a resource without a `name`, a template
 * without a `uriTemplate`... A client that finds one refuses the whole listing, and with it every other upstream's
 * items, so the gateway leaves such an item out (found by review). The reason names the field, never its value.
 */
const check =
  (schema: Schema): ItemCheck =>
  (item) => {
    const parsed = schema.safeParse(item);
    if (parsed.success) return undefined;
    const path = parsed.error?.issues[0]?.path.map(String).join('.') ?? '';
    return `upstream item breaks MCP's schema for its kind${path === '' ? '' : ` (at ${path.slice(0, 128)})`}; skipped`;
  };

export const WELL_FORMED = {
  tools: check(ToolSchema),
  prompts: check(PromptSchema),
  resources: check(ResourceSchema),
  resourceTemplates: check(ResourceTemplateSchema),
} as const satisfies Record<string, ItemCheck>;
