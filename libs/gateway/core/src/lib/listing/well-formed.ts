import { PromptSchema, ResourceSchema, ResourceTemplateSchema, ToolSchema } from '@modelcontextprotocol/sdk/types.js';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import type { ListKind } from './cursor';
import { deepFreeze } from './immutable';

type Item = Readonly<Record<string, unknown>>;
type Schema = { safeParse(value: unknown): { success: boolean; error?: { issues: readonly { path: readonly PropertyKey[] }[] } } };

/** What a listed item is once checked: the item to list (perhaps mended), or why it is left out. */
export type CheckedItem =
  | { readonly item: Item; readonly leftOut: readonly string[]; readonly why?: undefined }
  | { readonly item?: undefined; readonly leftOut?: undefined; readonly why: string };

const SCHEMAS: Readonly<Record<ListKind, Schema>> = { tools: ToolSchema, prompts: PromptSchema, resources: ResourceSchema, resourceTemplates: ResourceTemplateSchema };

/**
 * The fields a problem in which leaves the item out: what names it and what an agent relies on to use it (a tool's
 * schemas, a prompt's arguments). A problem anywhere else (a description that is no string, annotations, icons, a
 * `lastModified` the SDK reads more strictly than the specification's "ISO 8601") leaves out only that part.
 */
const ESSENTIAL: Readonly<Record<ListKind, ReadonlySet<string>>> = {
  tools: new Set(['name', 'inputSchema', 'outputSchema']),
  prompts: new Set(['name', 'arguments']),
  resources: new Set(['name', 'uri']),
  resourceTemplates: new Set(['name', 'uriTemplate']),
};

/**
 * The JSON Schema compiler the SDK's clients compile a listed tool's `outputSchema` with, set up as theirs is
 * (`@modelcontextprotocol/sdk/validation/ajv`): a schema it cannot compile (a `$ref` to nowhere, an unknown type) makes
 * `listTools()` throw as surely as a schema error does (found by re-review). Each schema is compiled, then removed with
 * every `$id` nested in it (Ajv keeps what it compiled), and the verdict kept by its text for the next listing of it.
 */
const ajv = new Ajv({ strict: false, validateFormats: true, validateSchema: false, allErrors: true });
addFormats(ajv);
const compiledVerdicts = new Map<string, boolean>();
const MAX_COMPILED_VERDICTS = 1_000;
const MAX_REMEMBERED_SCHEMA_LENGTH = 64 * 1024;

function compiles(schema: object): boolean {
  const text = JSON.stringify(schema);
  const known = compiledVerdicts.get(text);
  if (known !== undefined) return known;
  let verdict: boolean;
  // What the compiler held before: the `$id`s nested in this schema are added beside its own, and go with it.
  const held = new Set([...Object.keys(ajv.schemas), ...Object.keys(ajv.refs)]);
  // One that names a schema the compiler holds (a client's compiler holds the same meta-schemas) cannot be added: not
  // compiled at all, since removing it after would remove the meta-schema every other schema here relies on (found by
  // re-review: one upstream's tool took draft-07 out of the process, and every tool referring to it was left out).
  const id = (schema as { $id?: unknown }).$id;
  if (typeof id === 'string' && (held.has(id) || held.has(id.replace(/#$/, '')))) return remember(text, false);
  try {
    ajv.compile(schema);
    verdict = true;
  } catch {
    verdict = false;
  } finally {
    try {
      ajv.removeSchema(schema);
    } catch {
      // An `$id` Ajv cannot read (a number) fails its removal too: nothing of it was kept.
    }
    // Left, a nested `$id` stayed for good, holding the schema it came in: an upstream naming new ones in each listing
    // filled the process.
    for (const key of [...Object.keys(ajv.schemas), ...Object.keys(ajv.refs)]) if (!held.has(key)) ajv.removeSchema(key);
  }
  return remember(text, verdict);
}

/** Keeps the verdict on a schema's text for its next listing (bounded), and returns it. */
function remember(text: string, verdict: boolean): boolean {
  if (text.length <= MAX_REMEMBERED_SCHEMA_LENGTH) {
    if (compiledVerdicts.size >= MAX_COMPILED_VERDICTS) compiledVerdicts.delete(compiledVerdicts.keys().next().value as string);
    compiledVerdicts.set(text, verdict);
  }
  return verdict;
}

/** How many schemas and `$id`s the compiler holds (for tests: what a check adds, it removes). */
export const heldByCompiler = (): number => Object.keys(ajv.schemas).length + Object.keys(ajv.refs).length;

/** The most parts left out of one item before it is left out whole. */
const MAX_MENDS = 8;

/** `item` without what `path` names: its leaf, or the whole top-level field when the path goes through an array. */
function without(item: Item, path: readonly PropertyKey[]): Item {
  const [field, ...rest] = path;
  const copy: Record<string, unknown> = { ...item };
  const value = copy[field as string];
  if (rest.length === 0 || typeof value !== 'object' || value === null || Array.isArray(value) || typeof rest[0] !== 'string') delete copy[field as string];
  else copy[field as string] = without(value as Item, rest);
  return copy;
}

const verdicts: Readonly<Record<ListKind, WeakMap<object, CheckedItem>>> = {
  tools: new WeakMap(),
  prompts: new WeakMap(),
  resources: new WeakMap(),
  resourceTemplates: new WeakMap(),
};

/**
 * An upstream's listed item checked against MCP's schema for its kind, as the official SDK's clients check what a
 * server lists: one that breaks it makes such a client refuse the whole listing, every other upstream's items with it
 * (found by review). A problem in an essential field (`ESSENTIAL`) leaves the item out; one elsewhere leaves out only
 * that part. Reasons name fields, never values. Remembered per item object (pages are frozen as they arrive).
 */
export function checkedItem(kind: ListKind, item: Item): CheckedItem {
  const memo = verdicts[kind];
  const known = memo.get(item);
  if (known !== undefined) return known;
  let current = item;
  const leftOut: string[] = [];
  let verdict: CheckedItem | undefined;
  for (let attempt = 0; verdict === undefined; attempt += 1) {
    const parsed = SCHEMAS[kind].safeParse(current);
    if (parsed.success) {
      const output = current['outputSchema'];
      if (kind === 'tools' && typeof output === 'object' && output !== null && !compiles(output)) {
        verdict = { why: "upstream tool's outputSchema cannot be compiled as JSON Schema (at outputSchema); skipped" };
        break;
      }
      // A mended copy is frozen as the page's items are, so what is built from it is kept as theirs is.
      verdict = { item: leftOut.length === 0 ? current : deepFreeze(current), leftOut };
      break;
    }
    const path = parsed.error?.issues[0]?.path ?? [];
    const where = path.map(String).join('.').slice(0, 128);
    if (typeof path[0] !== 'string' || ESSENTIAL[kind].has(path[0]) || attempt >= MAX_MENDS) {
      verdict = { why: `upstream item breaks MCP's schema for its kind${where === '' ? '' : ` (at ${where})`}; skipped` };
      break;
    }
    leftOut.push(where);
    current = without(current, path);
  }
  memo.set(item, verdict);
  return verdict;
}

/** Per kind, whether an item can be listed at all (mended or not): which of two items of one name `distinct` keeps. */
export const listable: Readonly<Record<ListKind, (item: Item) => boolean>> = {
  tools: (item) => checkedItem('tools', item).why === undefined,
  prompts: (item) => checkedItem('prompts', item).why === undefined,
  resources: (item) => checkedItem('resources', item).why === undefined,
  resourceTemplates: (item) => checkedItem('resourceTemplates', item).why === undefined,
};
