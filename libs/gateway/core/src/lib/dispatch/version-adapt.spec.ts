import { AudioContentSchema, CallToolResultSchema, GetPromptResultSchema, ResourceLinkSchema, TextContentSchema } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { adaptCallResult, adaptPromptResult, adaptRelayedRequest, clientCapabilitiesOf, isBefore } from './version-adapt';

// Blocks checked against the SDK's own schemas, so the shapes adapted here are the ones upstreams send.
const link = ResourceLinkSchema.parse({
  type: 'resource_link',
  uri: 'file:///project/README.md',
  name: 'README.md',
  title: 'Project README',
  description: 'What the project is,\nand how to run it.',
  mimeType: 'text/markdown',
  annotations: { audience: ['user'], priority: 0.5 },
});
const audio = AudioContentSchema.parse({ type: 'audio', data: 'UklGRg==', mimeType: 'audio/wav', annotations: { priority: 1 } });
const text = { type: 'text', text: 'hello' };
const image = { type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' };
const embedded = { type: 'resource', resource: { uri: 'mem://a', text: 'a' } };

/** A text block exactly as MCP defines it, nothing more (no `uri`, `data` or `name` left over). */
const strictText = TextContentSchema.strict();

const LINK_LINE = "Resource link: Project README <file:///project/README.md> (text/markdown): What the project is, and how to run it.";
const AUDIO_LINE = (version: string) => `Audio content (audio/wav) was omitted because this client's MCP protocol version (${version}) does not support audio content.`;

describe('isBefore', () => {
  it('compares MCP date versions', () => {
    expect(isBefore('2024-11-05', '2025-03-26')).toBe(true);
    expect(isBefore('2025-03-26', '2025-06-18')).toBe(true);
    expect(isBefore('2025-06-18', '2025-06-18')).toBe(false);
    expect(isBefore('2025-11-25', '2025-06-18')).toBe(false);
    // An older version MCP once had counts as older too.
    expect(isBefore('2024-10-07', '2024-11-05')).toBe(true);
  });

  it('takes a version that is not a date as the newest', () => {
    for (const odd of ['', 'latest', '2025-3-26', '2025-03-26 ', 'v2025-03-26', '20250326']) {
      expect(isBefore(odd, '2025-06-18')).toBe(false);
    }
    expect(isBefore(undefined as unknown as string, '2025-06-18')).toBe(false);
    expect(isBefore(20240101 as unknown as string, '2025-06-18')).toBe(false);
    expect(isBefore('2024-11-05', 'soon')).toBe(false);
  });
});

describe('adaptCallResult', () => {
  const result = (content: unknown, extra: Record<string, unknown> = {}) => ({ content, ...extra });

  it('passes everything to agents on 2025-06-18 and later, as the same object', () => {
    for (const version of ['2025-06-18', '2025-11-25', '2026-01-01']) {
      const mixed = result([text, link, audio, image, embedded]);
      expect(adaptCallResult(mixed, version)).toBe(mixed);
    }
  });

  it('turns resource links into one line of text naming the resource for agents before 2025-06-18, keeping annotations', () => {
    const adapted = adaptCallResult(result([text, link, image]), '2025-03-26');
    expect(adapted['content']).toEqual([text, { type: 'text', text: LINK_LINE, annotations: { audience: ['user'], priority: 0.5 } }, image]);
    const [, line] = adapted['content'] as unknown[];
    expect(strictText.parse(line)).toEqual(line);
    // The whole result parses, and audio is still audio for this version.
    expect(CallToolResultSchema.parse(adapted)).toEqual(adapted);
    expect(adaptCallResult(result([audio]), '2025-03-26')['content']).toEqual([audio]);
  });

  it('names a resource link by its title, else its name, else by its URI alone, with only the parts it has', () => {
    const line = (block: Record<string, unknown>) => ((adaptCallResult(result([{ type: 'resource_link', uri: 'mem://x', ...block }]), '2024-11-05')['content'] as Array<{ text: string }>)[0]?.text);
    expect(line({ name: 'x.txt', title: 'The X' })).toBe('Resource link: The X <mem://x>');
    expect(line({ name: 'x.txt' })).toBe('Resource link: x.txt <mem://x>');
    expect(line({ name: 'x.txt', title: '  ' })).toBe('Resource link: x.txt <mem://x>');
    expect(line({})).toBe('Resource link: <mem://x>');
    expect(line({ name: 'x.txt', mimeType: 'text/plain' })).toBe('Resource link: x.txt <mem://x> (text/plain)');
    expect(line({ name: 'x.txt', description: 'Line one.\n\nLine two.' })).toBe('Resource link: x.txt <mem://x>: Line one. Line two.');
    // Fields of the wrong type are left out rather than printed as "[object Object]".
    expect(line({ name: 7, title: { en: 'X' }, mimeType: null })).toBe('Resource link: <mem://x>');
    // No annotations: none added; icons, size and _meta are not part of the line.
    const [block] = adaptCallResult(result([{ type: 'resource_link', uri: 'mem://x', name: 'x', size: 10, icons: [], _meta: { a: 1 } }]), '2024-11-05')['content'] as unknown[];
    expect(block).toEqual({ type: 'text', text: 'Resource link: x <mem://x>' });
  });

  it('turns audio into text saying it was omitted for agents before 2025-03-26, keeping annotations', () => {
    const adapted = adaptCallResult(result([audio, link, text]), '2024-11-05');
    expect(adapted['content']).toEqual([
      { type: 'text', text: AUDIO_LINE('2024-11-05'), annotations: { priority: 1 } },
      { type: 'text', text: LINK_LINE, annotations: { audience: ['user'], priority: 0.5 } },
      text,
    ]);
    for (const block of adapted['content'] as unknown[]) expect(strictText.parse(block)).toEqual(block);
    expect((adaptCallResult(result([audio]), '2024-10-07')['content'] as Array<{ text: string }>)[0]?.text).toBe(AUDIO_LINE('2024-10-07'));
  });

  it('copies only what changed and leaves the input as it was', () => {
    const structuredContent = { rows: [{ uri: 'mem://x', type: 'resource_link' }] };
    const meta = { trace: 't' };
    const input = result([text, link, image], { structuredContent, isError: false, _meta: meta });
    const snapshot = structuredClone(input);
    const adapted = adaptCallResult(input, '2025-03-26');
    expect(adapted).not.toBe(input);
    expect(input).toEqual(snapshot);
    expect(adapted['structuredContent']).toBe(structuredContent);
    expect(adapted['_meta']).toBe(meta);
    expect(adapted['isError']).toBe(false);
    const [first, , third] = adapted['content'] as unknown[];
    expect(first).toBe(text);
    expect(third).toBe(image);
  });

  it('returns the same object for an older agent when no block needs adapting', () => {
    // Structured content beside a text block (which MCP asks for: its JSON) needs nothing either.
    for (const content of [[], [text, image, embedded], [text, { ...audio }]]) {
      const unchanged = result(content, content.length > 0 ? { structuredContent: { type: 'resource_link' } } : {});
      expect(adaptCallResult(unchanged, '2025-03-26')).toBe(unchanged);
    }
    const nothing = { isError: false };
    expect(adaptCallResult(nothing, '2024-11-05')).toBe(nothing);
  });

  it('gives an agent before 2025-06-18 structured content with no text block beside it as a text block of its JSON', () => {
    const structuredContent = { temperature: 22.5, unit: 'C' };
    const json = { type: 'text', text: JSON.stringify(structuredContent) };
    for (const version of ['2025-03-26', '2024-11-05']) {
      // Only structured content (content empty or missing): the agent would have nothing it can read.
      for (const input of [result([], { structuredContent }), { structuredContent }]) {
        const snapshot = structuredClone(input);
        const adapted = adaptCallResult(input, version);
        expect(adapted['content']).toEqual([json]);
        // Left in place, as other fields the agent's version does not define are: it ignores them.
        expect(adapted['structuredContent']).toBe(structuredContent);
        expect(input).toEqual(snapshot);
        expect(CallToolResultSchema.parse(adapted)).toEqual(adapted);
      }
      // Beside other blocks with no text, at the end.
      expect(adaptCallResult(result([image], { structuredContent }), version)['content']).toEqual([image, json]);
    }
    // Agents on 2025-06-18 and later read structuredContent themselves.
    const modern = result([], { structuredContent });
    expect(adaptCallResult(modern, '2025-06-18')).toBe(modern);
    // Structured content that is not an object (malformed) or cannot be serialised adds nothing.
    let deep: unknown = 'bottom';
    for (let level = 0; level < 100_000; level++) deep = { deep };
    for (const odd of [null, 'text', [1, 2], deep]) {
      const input = result([], { structuredContent: odd });
      expect(adaptCallResult(input, '2025-03-26')).toBe(input);
    }
  });

  it('adds the JSON beside a resource link or audio block, whose text the gateway wrote, not the server', () => {
    const structuredContent = { rows: 42, status: 'done' };
    const json = { type: 'text', text: JSON.stringify(structuredContent) };
    const linkText = { type: 'text', text: LINK_LINE, annotations: { audience: ['user'], priority: 0.5 } };
    const audioText = (version: string) => ({ type: 'text', text: AUDIO_LINE(version), annotations: { priority: 1 } });
    for (const version of ['2025-03-26', '2024-11-05']) {
      expect(adaptCallResult(result([link], { structuredContent }), version)['content']).toEqual([linkText, json]);
      expect(adaptCallResult(result([link, image], { structuredContent }), version)['content']).toEqual([linkText, image, json]);
      // A text block of the server's own beside the link: the server wrote what it meant to (MCP: the JSON), nothing is added.
      expect(adaptCallResult(result([text, link], { structuredContent }), version)['content']).toEqual([text, linkText]);
    }
    expect(adaptCallResult(result([audio], { structuredContent }), '2024-11-05')['content']).toEqual([audioText('2024-11-05'), json]);
  });

  it('leaves malformed input as it is, and never throws', () => {
    const odd: unknown[] = [
      result('resource_link'),
      result({ 0: link }),
      result(null),
      result([null, undefined, 3, 'resource_link', [link], { type: 'resource_link' }, { type: 'resource_link', uri: 7 }, { type: 'audio' }, { type: 'audio', mimeType: ['audio/wav'] }]),
    ];
    for (const input of odd) expect(adaptCallResult(input as Record<string, unknown>, '2024-11-05')).toBe(input);
    for (const input of [null, undefined, 'text', 42, [link]]) expect(adaptCallResult(input as unknown as Record<string, unknown>, '2024-11-05')).toBe(input);
    // A well-formed block next to malformed ones is still adapted; the malformed ones stay in place.
    const mixed = adaptCallResult(result([null, link, { type: 'resource_link' }]), '2024-11-05')['content'] as unknown[];
    expect(mixed).toEqual([null, { type: 'text', text: LINK_LINE, annotations: link.annotations }, { type: 'resource_link' }]);
  });
});

describe('adaptPromptResult', () => {
  const prompt = (...contents: unknown[]) => ({ description: 'p', messages: contents.map((content, n) => ({ role: n % 2 === 0 ? 'user' : 'assistant', content })) });

  it('adapts each message\'s content block as tool results are adapted, by version', () => {
    const input = prompt(text, link, audio);
    expect(adaptPromptResult(input, '2025-06-18')).toBe(input);
    const for0326 = adaptPromptResult(input, '2025-03-26');
    expect(for0326['messages']).toEqual([
      { role: 'user', content: text },
      { role: 'assistant', content: { type: 'text', text: LINK_LINE, annotations: link.annotations } },
      { role: 'user', content: audio },
    ]);
    expect(GetPromptResultSchema.parse(for0326)).toEqual(for0326);
    const for1105 = adaptPromptResult(input, '2024-11-05');
    expect((for1105['messages'] as Array<{ content: unknown }>)[2]?.content).toEqual({ type: 'text', text: AUDIO_LINE('2024-11-05'), annotations: { priority: 1 } });
    expect(for1105['description']).toBe('p');
  });

  it('copies only the messages that changed and leaves the input as it was', () => {
    const input = prompt(text, link);
    const snapshot = structuredClone(input);
    const adapted = adaptPromptResult(input, '2024-11-05');
    expect(input).toEqual(snapshot);
    const [first, second] = adapted['messages'] as unknown[];
    expect(first).toBe(input.messages[0]);
    expect(second).not.toBe(input.messages[1]);
  });

  it('returns the same object when nothing needs adapting, and leaves malformed input as it is', () => {
    const plain = prompt(text, image, embedded);
    expect(adaptPromptResult(plain, '2024-11-05')).toBe(plain);
    const odd: unknown[] = [
      { messages: 'x' },
      { messages: null },
      {},
      { messages: [null, 3, link, [link], { role: 'user' }, { role: 'user', content: [link] }, { role: 'user', content: { type: 'resource_link' } }] },
    ];
    for (const input of odd) expect(adaptPromptResult(input as Record<string, unknown>, '2024-11-05')).toBe(input);
    for (const input of [null, undefined, 'x']) expect(adaptPromptResult(input as unknown as Record<string, unknown>, '2024-11-05')).toBe(input);
  });
});

describe('adaptRelayedRequest', () => {
  const sampling = (content: unknown) => ({
    messages: [
      { role: 'user', content },
      { role: 'assistant', content: text },
    ],
    maxTokens: 10,
  });

  it('passes every request to a 2025-11-25 agent, and other methods to any, as the same object', () => {
    const params = sampling([text, audio]);
    expect(adaptRelayedRequest('sampling/createMessage', params, '2025-11-25')).toEqual({ params });
    expect(
      (adaptRelayedRequest('sampling/createMessage', params, '2025-11-25') as { params: unknown }).params,
    ).toBe(params);
    const roots = { x: [1] };
    expect((adaptRelayedRequest('roots/list', roots, '2024-11-05') as { params: unknown }).params).toBe(
      roots,
    );
    const plain = sampling(text);
    expect(
      (adaptRelayedRequest('sampling/createMessage', plain, '2025-06-18') as { params: unknown }).params,
    ).toBe(plain);
  });

  it('splits an array of content blocks into messages of one block each, in order and role, for agents before 2025-11-25', () => {
    const adapted = adaptRelayedRequest('sampling/createMessage', sampling([text, image]), '2025-06-18');
    expect(adapted).toEqual({
      params: {
        messages: [
          { role: 'user', content: text },
          { role: 'user', content: image },
          { role: 'assistant', content: text },
        ],
        maxTokens: 10,
      },
    });
    expect(adaptRelayedRequest('sampling/createMessage', sampling([audio]), '2025-03-26')).toEqual({
      params: {
        messages: [
          { role: 'user', content: audio },
          { role: 'assistant', content: text },
        ],
        maxTokens: 10,
      },
    });
  });

  it('refuses what the agent has no way to read: audio before 2025-03-26, tool use before 2025-11-25, empty content', () => {
    expect(adaptRelayedRequest('sampling/createMessage', sampling([text, audio]), '2024-11-05')).toEqual({
      refused: expect.stringContaining("type 'audio'"),
    });
    expect(adaptRelayedRequest('sampling/createMessage', sampling(audio), '2024-11-05')).toEqual({
      refused: expect.stringContaining('2024-11-05'),
    });
    const toolUse = { type: 'tool_use', id: 'c1', name: 'lookup', input: {} };
    expect(adaptRelayedRequest('sampling/createMessage', sampling([toolUse]), '2025-06-18')).toEqual({
      refused: expect.stringContaining("type 'tool_use'"),
    });
    expect(adaptRelayedRequest('sampling/createMessage', sampling([]), '2025-06-18')).toEqual({
      refused: expect.stringContaining('without content'),
    });
    // Malformed requests are the upstream's to answer for, as with any version.
    const malformed = { messages: 'none' };
    expect(
      (adaptRelayedRequest('sampling/createMessage', malformed, '2024-11-05') as { params: unknown }).params,
    ).toBe(malformed);
  });

  it('turns a titled single-select into enum and enumNames, and refuses a multi-select form, for agents before 2025-11-25', () => {
    const form = (field: Record<string, unknown>) => ({
      message: 'Pick',
      requestedSchema: {
        type: 'object',
        properties: { name: { type: 'string' }, choice: field },
        required: ['choice'],
      },
    });
    const titled = {
      type: 'string',
      title: 'Colour',
      oneOf: [
        { const: 'r', title: 'Red' },
        { const: 'b', title: 'Blue' },
      ],
      default: 'r',
    };
    expect(adaptRelayedRequest('elicitation/create', form(titled), '2025-06-18')).toEqual({
      params: form({
        type: 'string',
        title: 'Colour',
        enum: ['r', 'b'],
        enumNames: ['Red', 'Blue'],
        default: 'r',
      }),
    });
    expect(adaptRelayedRequest('elicitation/create', form(titled), '2025-11-25')).toEqual({
      params: form(titled),
    });
    const multi = { type: 'array', items: { type: 'string', enum: ['r', 'b'] } };
    expect(adaptRelayedRequest('elicitation/create', form(multi), '2025-06-18')).toEqual({
      refused: expect.stringContaining("multi-select field ('choice')"),
    });
    expect(
      adaptRelayedRequest(
        'elicitation/create',
        form({ type: 'string', anyOf: [{ const: 'x' }] }),
        '2025-06-18',
      ),
    ).toEqual({ refused: expect.stringContaining("('choice')") });
    // Fields the older version defines pass as the same request.
    const plain = form({ type: 'string', enum: ['r', 'b'], enumNames: ['Red', 'Blue'] });
    expect(
      (adaptRelayedRequest('elicitation/create', plain, '2025-06-18') as { params: unknown }).params,
    ).toBe(plain);
  });
});

describe('clientCapabilitiesOf', () => {
  const declared = { roots: { listChanged: true }, elicitation: { form: {}, url: {} }, sampling: { tools: {}, context: {} }, experimental: { x: {} } };

  it('keeps what a 2025-11-25 agent declared, the very object', () => {
    expect(clientCapabilitiesOf(declared, '2025-11-25')).toBe(declared);
  });

  it('cuts url-mode elicitation and sampling with tools or context for a 2025-06-18 agent', () => {
    expect(clientCapabilitiesOf(declared, '2025-06-18')).toEqual({ roots: { listChanged: true }, elicitation: {}, sampling: {}, experimental: { x: {} } });
    expect(declared.elicitation).toEqual({ form: {}, url: {} });
  });

  it('cuts elicitation altogether for a 2025-06-18 agent that named url mode only (it declared no form)', () => {
    expect(clientCapabilitiesOf({ elicitation: { url: {} }, roots: {} }, '2025-06-18')).toEqual({ roots: {} });
    expect(clientCapabilitiesOf({ elicitation: { form: {} } }, '2025-06-18')).toEqual({ elicitation: {} });
  });

  it.each(['2025-03-26', '2024-11-05'])('cuts elicitation altogether for a %s agent', (version) => {
    expect(clientCapabilitiesOf(declared, version)).toEqual({ roots: { listChanged: true }, sampling: {}, experimental: { x: {} } });
    expect(clientCapabilitiesOf({ roots: {} }, version)).toEqual({ roots: {} });
  });
});
