import { createHash } from 'node:crypto';
import { canonicalJson } from '@portcullis/contracts/policy-ir';

/**
 * What an upstream advertises and the control plane stores (prisma `UpstreamToolKind`). `instructions` is the text of
 * the upstream's initialize answer, as the gateway relays it (`relayedInstructions`), stored under the one name
 * `INSTRUCTIONS_NAME`: advice the agent's model reads, pinned like a tool's description.
 */
export type PinnedKind = 'tool' | 'prompt' | 'resource' | 'resource_template' | 'instructions';

/** The name an upstream's instructions are stored and pinned under (an upstream has one text). */
export const INSTRUCTIONS_NAME = 'instructions';

/** How much of an upstream's instructions goes into every agent's initialize answer (UTF-16 code units). */
export const MAX_INSTRUCTIONS_CHARS = 16 * 1024;

/**
 * An upstream's instructions as the gateway relays them, and as their pin is computed: longer ones are cut (never
 * inside a surrogate pair), not refused. The control plane's test connection and the gateway both call this.
 */
export function relayedInstructions(instructions: string): string {
  if (instructions.length <= MAX_INSTRUCTIONS_CHARS) return instructions;
  let end = MAX_INSTRUCTIONS_CHARS;
  const last = instructions.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${instructions.slice(0, end)}…`;
}

/**
 * The fields of each kind that the pin covers: everything an agent (and the model behind it) reads to decide what
 * a tool does and how to call it. For tools that includes `annotations` (a rug pull that flips `readOnlyHint` or
 * `destructiveHint` changes how clients ask for consent) and `title`. Left out: `_meta` and `icons`, which are
 * presentation and transport details an upstream may vary without changing meaning.
 */
const PINNED_FIELDS: Readonly<Record<PinnedKind, readonly string[]>> = {
  tool: ['name', 'title', 'description', 'inputSchema', 'outputSchema', 'annotations'],
  prompt: ['name', 'title', 'description', 'arguments'],
  resource: ['uri', 'name', 'title', 'description', 'mimeType'],
  resource_template: ['uriTemplate', 'name', 'title', 'description', 'mimeType'],
  instructions: ['instructions'],
};

/** A definition reduced to its pinned fields (absent fields stay absent). */
export type PinnedDefinition = Readonly<Record<string, unknown>>;

/** The pinned fields of one listed item, as the upstream sent them. */
export function pinnedDefinition(kind: PinnedKind, item: Readonly<Record<string, unknown>>): PinnedDefinition {
  const out: Record<string, unknown> = {};
  for (const field of PINNED_FIELDS[kind]) {
    const value = item[field];
    if (value !== undefined) out[field] = value;
  }
  return out;
}

/**
 * The name an item is known by within its kind: `name` for tools and prompts, the URI (template) for resources,
 * `INSTRUCTIONS_NAME` for an upstream's instructions (`{ instructions: text }`).
 */
export function definitionKey(kind: PinnedKind, item: Readonly<Record<string, unknown>>): string | undefined {
  if (kind === 'instructions') return typeof item['instructions'] === 'string' ? INSTRUCTIONS_NAME : undefined;
  const value = kind === 'resource' ? item['uri'] : kind === 'resource_template' ? item['uriTemplate'] : item['name'];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/**
 * The content hash of a definition: lowercase hex SHA-256 of the canonical JSON (sorted keys, no whitespace) of
 * `{ kind, definition: pinnedDefinition(kind, item) }`. The control plane stores it at test-connection and approval
 * time; the gateway recomputes it from every listing it relays. Both call this one function.
 */
export function definitionHash(kind: PinnedKind, item: Readonly<Record<string, unknown>>): string {
  return createHash('sha256')
    .update(canonicalJson({ kind, definition: pinnedDefinition(kind, item) }))
    .digest('hex');
}

/** One difference between two definitions, at a JSON Pointer (RFC 6901) path. */
export interface DefinitionChange {
  readonly path: string;
  readonly change: 'added' | 'removed' | 'changed';
  readonly before?: unknown;
  readonly after?: unknown;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const pointer = (base: string, key: string) => `${base}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;

/**
 * What changed from `before` to `after`: objects are compared key by key (recursively), anything else (strings,
 * numbers, arrays) as a whole value. At most `limit` changes are returned (schemas can be large).
 */
export function diffDefinitions(before: unknown, after: unknown, limit = 200): DefinitionChange[] {
  const changes: DefinitionChange[] = [];
  const walk = (a: unknown, b: unknown, path: string): void => {
    if (changes.length >= limit) return;
    if (isRecord(a) && isRecord(b)) {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
      for (const key of keys) {
        const next = pointer(path, key);
        if (!(key in b) || b[key] === undefined) changes.push({ path: next, change: 'removed', before: a[key] });
        else if (!(key in a) || a[key] === undefined) changes.push({ path: next, change: 'added', after: b[key] });
        else walk(a[key], b[key], next);
        if (changes.length >= limit) return;
      }
      return;
    }
    if (canonicalJson(a ?? null) !== canonicalJson(b ?? null)) changes.push({ path: path === '' ? '/' : path, change: 'changed', before: a, after: b });
  };
  walk(before, after, '');
  return changes;
}
