/**
 * Results relayed from an upstream that speaks a newer MCP protocol version than the agent, adapted to what the agent's
 * version defines. Results are otherwise passed on verbatim, so an older agent could receive content blocks its version
 * has no type for, and a client that parses content as a strict union then rejects the whole result over one block.
 *
 * Pure functions on parsed JSON: no input is trusted to be well-formed, nothing here throws, and what the agent can
 * read already (the common case) is returned as the very same object, without a copy.
 */

/** The version that added `audio` content blocks. */
const AUDIO_SINCE = '2025-03-26';
/** The version that added `resource_link` content blocks. */
const RESOURCE_LINK_SINCE = '2025-06-18';
/** The version that added `structuredContent` to tool results (and asked for its JSON in a text block beside it). */
const STRUCTURED_CONTENT_SINCE = '2025-06-18';
/** Agents on a version before this one may need results adapted; from it on, none do (a caller's cheap first test). */
export const ADAPTED_BEFORE = RESOURCE_LINK_SINCE;

const DATE_VERSION = /^\d{4}-\d{2}-\d{2}$/;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Whether protocol version `version` is older than `than`. MCP versions are YYYY-MM-DD dates, so for well-formed ones
 * comparing the strings compares the dates. A version that is not such a date is taken as the newest there is: it
 * never counts as older, so nothing is adapted for it.
 */
export function isBefore(version: string, than: string): boolean {
  return typeof version === 'string' && typeof than === 'string' && DATE_VERSION.test(version) && DATE_VERSION.test(than) && version < than;
}

/** What an agent's version lacks among the content block types and result fields adapted here. */
interface Gaps {
  readonly agentVersion: string;
  readonly resourceLink: boolean;
  readonly audio: boolean;
  readonly structuredContent: boolean;
}

/** The gaps of `agentVersion`, or undefined when it reads everything adapted here (nothing to scan for). */
function gapsOf(agentVersion: string): Gaps | undefined {
  // Audio came before resource links and structured content (which came together): an agent that has resource links
  // has the rest too.
  if (!isBefore(agentVersion, RESOURCE_LINK_SINCE)) return undefined;
  return { agentVersion, resourceLink: true, audio: isBefore(agentVersion, AUDIO_SINCE), structuredContent: isBefore(agentVersion, STRUCTURED_CONTENT_SINCE) };
}

/** One line of text: line breaks and runs of blanks become one space (a description may span paragraphs). */
const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

const nonEmpty = (value: unknown): string | undefined => (typeof value === 'string' && oneLine(value) !== '' ? oneLine(value) : undefined);

/**
 * The line that stands for a resource link, e.g. `Resource link: Project README <file:///README.md> (text/markdown):
 * The project's readme`. The title is preferred to the name, as clients display them; the URI is in angle brackets,
 * the usual way to set a URI apart in text, so the agent can still read it with `resources/read`.
 */
function describeResourceLink(block: Record<string, unknown>, uri: string): string {
  const label = nonEmpty(block['title']) ?? nonEmpty(block['name']);
  const mimeType = nonEmpty(block['mimeType']);
  const description = nonEmpty(block['description']);
  let line = `Resource link: ${label !== undefined ? `${label} ` : ''}<${oneLine(uri)}>`;
  if (mimeType !== undefined) line += ` (${mimeType})`;
  if (description !== undefined) line += `: ${description}`;
  return line;
}

/** A text block in place of `block`, with its annotations (audience, priority) if it had any. */
function textBlock(text: string, block: Record<string, unknown>): Record<string, unknown> {
  return block['annotations'] === undefined ? { type: 'text', text } : { type: 'text', text, annotations: block['annotations'] };
}

/**
 * `block` as the agent can read it: the same value when it needs nothing, else a text block. Only blocks well-formed
 * enough to describe are replaced (a resource link with a string URI, audio with a string MIME type); a malformed block
 * is the upstream's error, which the agent would see with any version, and is passed on as it is.
 */
function adaptBlock(block: unknown, gaps: Gaps): unknown {
  if (!isObject(block)) return block;
  const type = block['type'];
  if (type === 'resource_link' && gaps.resourceLink && typeof block['uri'] === 'string') {
    return textBlock(describeResourceLink(block, block['uri']), block);
  }
  if (type === 'audio' && gaps.audio && typeof block['mimeType'] === 'string') {
    return textBlock(
      `Audio content (${oneLine(block['mimeType'])}) was omitted because this client's MCP protocol version (${gaps.agentVersion}) does not support audio content.`,
      block,
    );
  }
  return block;
}

/** `blocks` with each block adapted: the same array when none changed, copied only from the first change on. */
function adaptBlocks(blocks: readonly unknown[], gaps: Gaps): readonly unknown[] {
  let copy: unknown[] | undefined;
  for (let index = 0; index < blocks.length; index += 1) {
    const block = blocks[index];
    const adapted = adaptBlock(block, gaps);
    if (adapted !== block) {
      copy ??= blocks.slice();
      copy[index] = adapted;
    }
  }
  return copy ?? blocks;
}

/**
 * `content` (the result's blocks as adapted) with a text block holding `structured` as JSON at its end, for an agent
 * whose version has no `structuredContent` and would otherwise get nothing to read: only when the server's own blocks
 * (`original`) have no text block (MCP 2025-06-18 asks a tool returning structured content to put its JSON in a text
 * block as well; one that did not has it added here). Decided on `original`, not `content`: the text blocks the
 * gateway wrote for a resource link or audio do not carry the structured content. A value that cannot be serialised
 * (nested past the stack, say) adds nothing.
 */
function withStructuredText(content: readonly unknown[], original: readonly unknown[], structured: unknown): readonly unknown[] {
  if (!isObject(structured) || original.some((block) => isObject(block) && block['type'] === 'text')) return content;
  let text: string;
  try {
    text = JSON.stringify(structured);
  } catch {
    return content;
  }
  return [...content, { type: 'text', text }];
}

/**
 * A `tools/call` result as an agent on `agentVersion` can read it: for an agent before 2025-06-18 each `resource_link`
 * content block becomes a text block naming the resource, and before 2025-03-26 each `audio` block a text block saying
 * it was omitted. For an agent before 2025-06-18, a result with `structuredContent` but no text block of the server's
 * own (the ones written here for resource links and audio do not count) also gets a text block with the structured
 * content's JSON (such an agent knows no `structuredContent`: without it, a result that carries only that has nothing it
 * can read). Everything else (other blocks, `structuredContent` itself, which an older agent ignores, `isError`,
 * `_meta`) is left as it is; `result` itself is returned when nothing needed adapting.
 */
export function adaptCallResult(result: Record<string, unknown>, agentVersion: string): Record<string, unknown> {
  const gaps = gapsOf(agentVersion);
  if (gaps === undefined || !isObject(result)) return result;
  const content = result['content'];
  // No content at all: a server answering with structured content only (content is required, but an older agent is
  // better served by the JSON than by nothing). Content that is there but not an array is malformed, and left so.
  const blocks: readonly unknown[] | undefined = Array.isArray(content) ? content : content === undefined ? [] : undefined;
  if (blocks === undefined) return result;
  let adapted = adaptBlocks(blocks, gaps);
  if (gaps.structuredContent) adapted = withStructuredText(adapted, blocks, result['structuredContent']);
  return adapted === blocks ? result : { ...result, content: adapted };
}

/**
 * A `prompts/get` result as an agent on `agentVersion` can read it: each message's content (one block in a prompt
 * message) adapted as in `adaptCallResult`. `result` itself is returned when nothing needed adapting.
 */
export function adaptPromptResult(result: Record<string, unknown>, agentVersion: string): Record<string, unknown> {
  const gaps = gapsOf(agentVersion);
  if (gaps === undefined || !isObject(result)) return result;
  const messages = result['messages'];
  if (!Array.isArray(messages)) return result;
  let copy: unknown[] | undefined;
  for (let index = 0; index < messages.length; index += 1) {
    const message: unknown = messages[index];
    if (!isObject(message)) continue;
    const content = message['content'];
    const adapted = adaptBlock(content, gaps);
    if (adapted !== content) {
      copy ??= messages.slice();
      copy[index] = { ...message, content: adapted };
    }
  }
  return copy === undefined ? result : { ...result, messages: copy };
}

/** The version that added elicitation (`elicitation/create`, the client's `elicitation` capability). */
const ELICITATION_SINCE = '2025-06-18';
/** The version that added url-mode elicitation, the client's `elicitation.form`/`url`, and `sampling.tools`/`context`. */
const CLIENT_FEATURES_SINCE = '2025-11-25';

/**
 * The client capabilities an agent on `version` declared (`declared`), cut to what that version defines: an agent is
 * sent requests of its version's methods only, whatever its capabilities object names (the SDK's client declares what
 * its application registered, at any version it speaks), and upstreams are offered no more. Elicitation goes before
 * 2025-06-18; its `url` mode (and elicitation altogether when that was the only mode named), and sampling's `tools` and
 * `context`, before 2025-11-25. `declared` itself when nothing
 * is cut. Before, a 2025-03-26 agent that named `elicitation` was sent `elicitation/create`, which its version lacks.
 */
export function clientCapabilitiesOf(declared: Record<string, unknown>, version: string): Record<string, unknown> {
  if (!isBefore(version, CLIENT_FEATURES_SINCE)) return declared;
  const out: Record<string, unknown> = { ...declared };
  const elicitation = declared['elicitation'];
  if (isBefore(version, ELICITATION_SINCE)) delete out['elicitation'];
  else if (isObject(elicitation) && ('url' in elicitation || 'form' in elicitation)) {
    // A 2025-06-18 client's elicitation is form mode. One that named url mode only declared no form: it has none its
    // version can be sent (found by re-review: `{ url: {} }` cut to `{}` read as form mode).
    const { url: _url, form, ...rest } = elicitation;
    if (form === undefined) delete out['elicitation'];
    else out['elicitation'] = rest;
  }
  const sampling = declared['sampling'];
  if (isObject(sampling) && ('tools' in sampling || 'context' in sampling)) {
    const { tools: _tools, context: _context, ...rest } = sampling;
    out['sampling'] = rest;
  }
  return out;
}

/**
 * The version that made a sampling message's content an array of blocks, and added multi-select and titled enums to
 * forms: agents before it may need an upstream's requests adapted (a caller's cheap first test).
 */
export const ADAPTED_REQUESTS_BEFORE = '2025-11-25';

/** An upstream's request to the agent as its version can read it, or why it cannot be sent at all. */
export type RelayedRequestParams = { readonly params: Record<string, unknown> } | { readonly refused: string };

/**
 * A `sampling/createMessage` or `elicitation/create` request from an upstream, as an agent on `agentVersion` can read
 * it (other methods, and agents on 2025-11-25 or later, get `params` back as they are). What an older version has no
 * way to say is refused (the upstream gets -32602 with the reason), never sent in a shape the agent's schema rejects
 * or quietly dropped from the model's prompt or the user's form:
 * - sampling, before 2025-11-25: a message whose content is an array of blocks becomes one message per block, in
 *   order and with the same role (one block is the same message unwrapped); an empty array, or a block of a type the
 *   version lacks (`audio` before 2025-03-26; `tool_use`, `tool_result` and any other before 2025-11-25) is refused;
 * - elicitation, before 2025-11-25: without `mode`; a field that is a titled single-select (`oneOf` of `const`/`title`)
 *   becomes the older `enum` with `enumNames`; a multi-select (`type: array`) or any other field type is refused.
 */
export function adaptRelayedRequest(method: string, params: Record<string, unknown>, agentVersion: string): RelayedRequestParams {
  if (!isBefore(agentVersion, ADAPTED_REQUESTS_BEFORE)) return { params };
  if (method === 'sampling/createMessage') return adaptSamplingParams(params, agentVersion);
  if (method === 'elicitation/create') return adaptElicitationParams(params, agentVersion);
  return { params };
}

/** Content block types a sampling message could carry before 2025-11-25, by the version that added them. */
const SAMPLING_BLOCK_SINCE: Readonly<Record<string, string>> = { text: '2024-11-05', image: '2024-11-05', audio: AUDIO_SINCE };

function adaptSamplingParams(params: Record<string, unknown>, agentVersion: string): RelayedRequestParams {
  const messages = params['messages'];
  // Malformed: the upstream's error, which the agent would see with any version (as for results).
  if (!Array.isArray(messages)) return { params };
  let copy: unknown[] | undefined;
  for (let index = 0; index < messages.length; index += 1) {
    const message: unknown = messages[index];
    if (!isObject(message)) {
      copy?.push(message);
      continue;
    }
    const content = message['content'];
    const blocks: readonly unknown[] = Array.isArray(content) ? content : [content];
    if (blocks.length === 0) return { refused: `A sampling message without content cannot be sent to this client (MCP protocol version ${agentVersion})` };
    for (const block of blocks) {
      const type = isObject(block) ? block['type'] : undefined;
      const since = typeof type === 'string' ? SAMPLING_BLOCK_SINCE[type] : undefined;
      if (typeof type === 'string' && (since === undefined || isBefore(agentVersion, since))) {
        return { refused: `Sampling content of type '${type.slice(0, 64)}' cannot be sent to this client (MCP protocol version ${agentVersion})` };
      }
    }
    if (!Array.isArray(content)) {
      copy?.push(message);
      continue;
    }
    copy ??= messages.slice(0, index);
    for (const block of blocks) copy.push({ ...message, content: block });
  }
  return copy === undefined ? { params } : { params: { ...params, messages: copy } };
}

/** Field types of an elicitation form before 2025-11-25 (MCP 2025-06-18's primitive schemas). */
const FORM_FIELD_TYPES: ReadonlySet<unknown> = new Set(['string', 'number', 'integer', 'boolean']);

function adaptElicitationParams(asked: Record<string, unknown>, agentVersion: string): RelayedRequestParams {
  // `mode` is 2025-11-25's (only a form reaches an older agent: `clientCapabilitiesOf`).
  const params = 'mode' in asked ? withoutMode(asked) : asked;
  const schema = params['requestedSchema'];
  const properties = isObject(schema) ? schema['properties'] : undefined;
  if (!isObject(properties)) return { params };
  let copy: Record<string, unknown> | undefined;
  for (const [name, field] of Object.entries(properties)) {
    if (!isObject(field)) continue;
    const titled = field['type'] === 'string' ? titledChoices(field['oneOf']) : undefined;
    if (titled !== undefined) {
      const { oneOf: _choices, ...rest } = field;
      copy ??= { ...properties };
      copy[name] = { ...rest, enum: titled.map((choice) => choice.value), enumNames: titled.map((choice) => choice.title) };
    } else if (!FORM_FIELD_TYPES.has(field['type']) || field['oneOf'] !== undefined || field['anyOf'] !== undefined) {
      const kind = field['type'] === 'array' ? 'a multi-select field' : 'a field of a type it does not define';
      return { refused: `The form has ${kind} ('${name.slice(0, 64)}'), which this client cannot show (MCP protocol version ${agentVersion})` };
    }
  }
  return copy === undefined ? { params } : { params: { ...params, requestedSchema: { ...(schema as Record<string, unknown>), properties: copy } } };
}

function withoutMode({ mode: _mode, ...rest }: Record<string, unknown>): Record<string, unknown> {
  return rest;
}

/** The choices of a titled single-select (`oneOf` of `{ const, title }` strings), or undefined when it is not one. */
function titledChoices(oneOf: unknown): { value: string; title: string }[] | undefined {
  if (!Array.isArray(oneOf) || oneOf.length === 0) return undefined;
  const choices: { value: string; title: string }[] = [];
  for (const choice of oneOf) {
    if (!isObject(choice) || typeof choice['const'] !== 'string') return undefined;
    choices.push({ value: choice['const'], title: typeof choice['title'] === 'string' ? choice['title'] : choice['const'] });
  }
  return choices;
}
