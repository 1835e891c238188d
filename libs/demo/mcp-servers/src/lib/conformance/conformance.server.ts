import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  EmptyResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CallToolResult,
  type GetPromptResult,
  type ReadResourceResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { DEMO_SERVERS_VERSION } from '../server-info';
import { abortableSleep } from '../protocol/abortable-sleep';
import { ClientLog, type ToolExtra } from '../protocol/client-log';
import { RESOURCE_NOT_FOUND, ResourceSubscriptions } from '../protocol/resource-subscriptions';
import { textResult, toolError } from '../protocol/tool-results';

/**
 * What the MCP conformance suite (`@modelcontextprotocol/conformance`, its server scenarios) expects of the server it
 * tests, served so that it can be tested *through a gateway*: the suite calls tools and prompts by fixed names
 * (`test_simple_text`, `test_simple_prompt`, …), and a gateway exposes `<prefix><separator><name>`. So the names here
 * lack the leading `test_`: behind the tool prefix `test` and the separator `_` they become the suite's names.
 * Resource URIs are the suite's own (a gateway routes them unchanged).
 *
 * The JSON Schema 2020-12 scenario calls `json_schema_2020_12_tool`: {@link createConformanceSchemaServer} serves
 * `schema_2020_12_tool` for an upstream with the prefix `json`.
 */
export const CONFORMANCE_TOOL_PREFIX = 'test';
export const CONFORMANCE_SCHEMA_TOOL_PREFIX = 'json';

/** A 1×1 PNG (one red pixel). */
const PIXEL_PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

/** A 16-sample, 8 kHz, 8-bit mono WAV of silence, built here rather than kept as an opaque string. */
function silentWav(): string {
  const samples = 16;
  const wav = Buffer.alloc(44 + samples);
  wav.write('RIFF', 0, 'ascii');
  wav.writeUInt32LE(36 + samples, 4);
  wav.write('WAVEfmt ', 8, 'ascii');
  wav.writeUInt32LE(16, 16); // fmt chunk size
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(8_000, 24); // sample rate
  wav.writeUInt32LE(8_000, 28); // byte rate
  wav.writeUInt16LE(1, 32); // block align
  wav.writeUInt16LE(8, 34); // bits per sample
  wav.write('data', 36, 'ascii');
  wav.writeUInt32LE(samples, 40);
  wav.fill(128, 44); // 8-bit PCM silence is the midpoint
  return wav.toString('base64');
}

const WATCHED_URI = 'test://watched-resource';

const noArguments = { type: 'object', properties: {} } as const;

const TOOLS: readonly Tool[] = [
  { name: 'simple_text', description: 'Returns one text block.', inputSchema: noArguments },
  { name: 'image_content', description: 'Returns a PNG image.', inputSchema: noArguments },
  { name: 'audio_content', description: 'Returns a WAV clip.', inputSchema: noArguments },
  { name: 'embedded_resource', description: 'Returns an embedded text resource.', inputSchema: noArguments },
  { name: 'multiple_content_types', description: 'Returns text, an image and a resource.', inputSchema: noArguments },
  { name: 'tool_with_logging', description: 'Logs three messages at info level while it runs.', inputSchema: noArguments },
  { name: 'tool_with_progress', description: 'Reports progress 0, 50 and 100 of 100.', inputSchema: noArguments },
  { name: 'error_handling', description: 'Always fails (isError).', inputSchema: noArguments },
  {
    name: 'sampling',
    description: "Asks the client's model (sampling/createMessage).",
    inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
  },
  {
    name: 'elicitation',
    description: 'Asks the user for a username and an email (elicitation/create).',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  },
  { name: 'elicitation_sep1034_defaults', description: 'Elicits with a default for every primitive type.', inputSchema: noArguments },
  { name: 'elicitation_sep1330_enums', description: 'Elicits with every enum form.', inputSchema: noArguments },
  { name: 'ping_client', description: 'Pings the client while it runs and says whether it answered.', inputSchema: noArguments },
  {
    name: 'reconnection',
    description: 'Closes its response stream mid-call when the transport can resume it (SEP-1699), then answers.',
    inputSchema: noArguments,
  },
];

const USER_DETAILS_SCHEMA = {
  type: 'object',
  properties: {
    username: { type: 'string', description: "User's response" },
    email: { type: 'string', description: "User's email address" },
  },
  required: ['username', 'email'],
} as const;

const ELICITATION_DEFAULTS_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Name', default: 'John Doe' },
    age: { type: 'integer', description: 'Age', default: 30 },
    score: { type: 'number', description: 'Score', default: 95.5 },
    status: { type: 'string', description: 'Status', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', description: 'Verified', default: true },
  },
} as const;

const ELICITATION_ENUMS_SCHEMA = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', description: 'Pick one', enum: ['option1', 'option2', 'option3'] },
    titledSingle: {
      type: 'string',
      description: 'Pick one (titled)',
      oneOf: [
        { const: 'value1', title: 'First Option' },
        { const: 'value2', title: 'Second Option' },
        { const: 'value3', title: 'Third Option' },
      ],
    },
    legacyEnum: {
      type: 'string',
      description: 'Pick one (legacy titles)',
      enum: ['opt1', 'opt2', 'opt3'],
      enumNames: ['Option One', 'Option Two', 'Option Three'],
    },
    untitledMulti: {
      type: 'array',
      description: 'Pick any',
      items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    },
    titledMulti: {
      type: 'array',
      description: 'Pick any (titled)',
      items: {
        anyOf: [
          { const: 'value1', title: 'First Choice' },
          { const: 'value2', title: 'Second Choice' },
          { const: 'value3', title: 'Third Choice' },
        ],
      },
    },
  },
} as const;

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', description: 'A fixed text resource.', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A fixed PNG.', mimeType: 'image/png' },
  { uri: WATCHED_URI, name: 'watched-resource', description: 'A resource that can be subscribed to.', mimeType: 'text/plain' },
] as const;

const TEMPLATE = /^test:\/\/template\/([^/]+)\/data$/;

const PROMPTS = [
  { name: 'simple_prompt', description: 'A prompt without arguments.' },
  {
    name: 'prompt_with_arguments',
    description: 'A prompt with two arguments.',
    arguments: [
      { name: 'arg1', description: 'First test argument', required: true },
      { name: 'arg2', description: 'Second test argument', required: true },
    ],
  },
  {
    name: 'prompt_with_embedded_resource',
    description: 'A prompt that embeds a resource.',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
  },
  { name: 'prompt_with_image', description: 'A prompt with an image.' },
] as const;

function stringArgument(args: Record<string, unknown> | undefined, name: string): string {
  const value = args?.[name];
  if (typeof value !== 'string') throw new McpError(ErrorCode.InvalidParams, `${name} must be a string`);
  return value;
}

/** The conformance suite's reference behaviours (see the module comment for the names). */
export function createConformanceServer(): McpServer {
  const server = new McpServer(
    { name: 'portcullis-demo-conformance', version: DEMO_SERVERS_VERSION },
    {
      capabilities: {
        logging: {},
        completions: {},
        tools: {},
        prompts: {},
        resources: { subscribe: true },
      },
    },
  );
  const log = new ClientLog(server, 'conformance');
  new ResourceSubscriptions(server, (uri) => RESOURCES.some((resource) => resource.uri === uri));
  const clientSupports = (feature: 'sampling' | 'elicitation'): boolean =>
    server.server.getClientCapabilities()?.[feature] !== undefined;

  /** Asks the client (elicitation/create) and reports its answer after `label`. */
  const elicit = async (extra: ToolExtra, message: string, requestedSchema: object, label = 'Elicitation completed'): Promise<CallToolResult> => {
    if (!clientSupports('elicitation')) return toolError('The client does not support elicitation.');
    const answer = await extra.sendRequest(
      { method: 'elicitation/create', params: { message, requestedSchema: requestedSchema as never } },
      ElicitResultSchema,
    );
    return textResult(`${label}: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
  };

  const tools: Record<string, (args: Record<string, unknown> | undefined, extra: ToolExtra) => Promise<CallToolResult>> = {
    simple_text: async () => textResult('This is a simple text response for testing.'),
    image_content: async () => ({ content: [{ type: 'image', data: PIXEL_PNG, mimeType: 'image/png' }] }),
    audio_content: async () => ({ content: [{ type: 'audio', data: silentWav(), mimeType: 'audio/wav' }] }),
    embedded_resource: async () => ({
      content: [
        {
          type: 'resource',
          resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
        },
      ],
    }),
    multiple_content_types: async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PIXEL_PNG, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    }),
    tool_with_logging: async (_args, extra) => {
      await log.send(extra, 'info', 'Tool execution started');
      await abortableSleep(50, extra.signal);
      await log.send(extra, 'info', 'Tool processing data');
      await abortableSleep(50, extra.signal);
      await log.send(extra, 'info', 'Tool execution completed');
      return textResult('Tool with logging executed successfully.');
    },
    tool_with_progress: async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progress > 0) await abortableSleep(50, extra.signal);
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
        }
      }
      return textResult('Tool with progress executed successfully.');
    },
    error_handling: async () => toolError('This tool intentionally returns an error for testing'),
    sampling: async (args, extra) => {
      const prompt = stringArgument(args, 'prompt');
      if (!clientSupports('sampling')) return toolError('The client does not support sampling.');
      const result = await extra.sendRequest(
        {
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
        },
        CreateMessageResultSchema,
      );
      const text = result.content.type === 'text' ? result.content.text : `[${result.content.type}]`;
      return textResult(`LLM response: ${text}`);
    },
    elicitation: async (args, extra) => elicit(extra, stringArgument(args, 'message'), USER_DETAILS_SCHEMA, 'User response'),
    elicitation_sep1034_defaults: (_args, extra) =>
      elicit(extra, 'Test client default value handling - please accept with defaults', ELICITATION_DEFAULTS_SCHEMA),
    elicitation_sep1330_enums: (_args, extra) => elicit(extra, 'Pick from each kind of enum', ELICITATION_ENUMS_SCHEMA),
    ping_client: async (_args, extra) => {
      await extra.sendRequest({ method: 'ping' }, EmptyResultSchema, { timeout: 5_000 });
      return textResult('The client answered the ping.');
    },
    reconnection: async (_args, extra) => {
      await abortableSleep(50, extra.signal);
      // Only a transport with an event store offers this (the demo host gives this server one), and only to a client
      // of 2025-11-25 or later (one that was sent a priming event it can resume from).
      const streamClosed = extra.closeSSEStream !== undefined;
      extra.closeSSEStream?.();
      await abortableSleep(200, extra.signal);
      await log.send(extra, 'info', 'Reconnection test: still working after the stream closed');
      await abortableSleep(50, extra.signal);
      return textResult('Reconnection test completed successfully', { streamClosed });
    },
  };

  server.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [...TOOLS] }));
  server.server.setRequestHandler(CallToolRequestSchema, (request, extra) => {
    const handler = tools[request.params.name];
    if (handler === undefined) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    return handler(request.params.arguments, extra);
  });

  server.server.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: [...RESOURCES] }));
  server.server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [
      { uriTemplate: 'test://template/{id}/data', name: 'template-data', description: 'Data for an id.', mimeType: 'application/json' },
    ],
  }));
  server.server.setRequestHandler(ReadResourceRequestSchema, (request): ReadResourceResult => {
    const { uri } = request.params;
    if (uri === 'test://static-text') {
      return { contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] };
    }
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PIXEL_PNG }] };
    if (uri === WATCHED_URI) return { contents: [{ uri, mimeType: 'text/plain', text: 'Watched resource content.' }] };
    const id = TEMPLATE.exec(uri)?.[1];
    if (id !== undefined) {
      const text = JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` });
      return { contents: [{ uri, mimeType: 'application/json', text }] };
    }
    throw new McpError(RESOURCE_NOT_FOUND, `Resource ${uri} not found`, { uri });
  });

  server.server.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: PROMPTS.map((prompt) => ({ ...prompt })) }));
  server.server.setRequestHandler(GetPromptRequestSchema, (request): GetPromptResult => {
    const args = request.params.arguments;
    switch (request.params.name) {
      case 'simple_prompt':
        return { messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] };
      case 'prompt_with_arguments': {
        const text = `Prompt with arguments: arg1='${stringArgument(args, 'arg1')}', arg2='${stringArgument(args, 'arg2')}'`;
        return { messages: [{ role: 'user', content: { type: 'text', text } }] };
      }
      case 'prompt_with_embedded_resource':
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'resource',
                resource: { uri: stringArgument(args, 'resourceUri'), mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
              },
            },
            { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
          ],
        };
      case 'prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: PIXEL_PNG, mimeType: 'image/png' } },
            { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
          ],
        };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${request.params.name}`);
    }
  });

  server.server.setRequestHandler(CompleteRequestSchema, (request) => {
    const { ref, argument } = request.params;
    const candidates = ref.type === 'ref/prompt' && ref.name === 'prompt_with_arguments' ? ['paris', 'park', 'party', 'test'] : [];
    const values = candidates.filter((value) => value.startsWith(argument.value));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  return server;
}

/** One tool whose input schema uses JSON Schema 2020-12 keywords (`$schema`, `$defs`, `$ref`), for the prefix `json`. */
export function createConformanceSchemaServer(): McpServer {
  const server = new McpServer(
    { name: 'portcullis-demo-conformance-schema', version: DEMO_SERVERS_VERSION },
    { capabilities: { tools: {} } },
  );
  const tool: Tool = {
    name: 'schema_2020_12_tool',
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  };
  server.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [tool] }));
  server.server.setRequestHandler(CallToolRequestSchema, (request) => {
    if (request.params.name !== tool.name) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    return textResult(`Received ${JSON.stringify(request.params.arguments ?? {})}`);
  });
  return server;
}
