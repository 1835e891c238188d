import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  ListRootsResultSchema,
  LoggingLevelSchema,
  RootsListChangedNotificationSchema,
  type CreateMessageResult,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { DEMO_SERVERS_VERSION } from '../server-info';
import { abortableSleep } from '../protocol/abortable-sleep';
import { ClientLog } from '../protocol/client-log';
import { ResourceSubscriptions } from '../protocol/resource-subscriptions';
import { textResult, toolError } from '../protocol/tool-results';

export const COUNTER_URI = 'demo://counter';
export const GREETING_LANGUAGES = ['dutch', 'english', 'french', 'german', 'italian', 'spanish'] as const;

const GREETINGS: Readonly<Record<(typeof GREETING_LANGUAGES)[number], string>> = {
  dutch: 'Hallo',
  english: 'Hello',
  french: 'Bonjour',
  german: 'Guten Tag',
  italian: 'Ciao',
  spanish: 'Hola',
};

const confirmationSchema = z.object({ confirm: z.boolean(), note: z.string().optional() });

function sampledText(result: CreateMessageResult): string {
  const { content } = result;
  return content.type === 'text' ? content.text : `[${content.type} content]`;
}

/**
 * Every protocol feature a gateway has to carry, in one upstream: a fast `echo` (benchmarks), progress
 * and cancellation (`slow_count`), server→client requests (sampling, elicitation, roots), logging,
 * a subscribable resource, and prompt-argument completion. Declares the matching capabilities.
 */
export function createKitchenSinkServer(): McpServer {
  const server = new McpServer(
    { name: 'portcullis-demo-kitchen-sink', title: 'Demo kitchen sink', version: DEMO_SERVERS_VERSION },
    {
      capabilities: {
        logging: {},
        completions: {},
        resources: { subscribe: true, listChanged: true },
        tools: { listChanged: true },
        prompts: { listChanged: true },
      },
      instructions:
        'Protocol test server. Tools exercise progress, cancellation, sampling, elicitation and roots.',
    },
  );
  const log = new ClientLog(server, 'kitchen-sink');
  const subscriptions = new ResourceSubscriptions(server, (uri) => uri === COUNTER_URI);
  const clientSupports = (feature: 'sampling' | 'elicitation' | 'roots'): boolean =>
    server.server.getClientCapabilities()?.[feature] !== undefined;
  let counter = 0;
  // What this server instance observed from its client, for tests of a proxy in between (`observed_events`).
  const observed = {
    cancelled: [] as { label: string; step: number; reason: string }[],
    rootsListChanged: 0,
    addedTools: 0,
    /** The root URIs the client gave when last asked after a change, or why asking failed. */
    roots: null as string[] | null,
    rootsError: null as string | null,
  };
  server.server.setNotificationHandler(RootsListChangedNotificationSchema, () => {
    observed.rootsListChanged += 1;
    // As a server that keeps its client's roots does: ask for them again, on the session-wide channel (this request
    // belongs to no request of the client's).
    if (!clientSupports('roots')) return;
    server.server.listRoots().then(
      (result) => {
        observed.roots = result.roots.map((root) => root.uri);
        observed.rootsError = null;
      },
      (error: Error) => {
        observed.rootsError = error.message;
      },
    );
  });

  server.registerTool(
    'echo',
    {
      title: 'Echo',
      description: 'Return the message unchanged.',
      inputSchema: { message: z.string().max(1_000_000) },
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    ({ message }) => ({ content: [{ type: 'text', text: message }] }),
  );

  server.registerTool(
    'slow_count',
    {
      title: 'Slow count',
      description:
        'Count to `steps`, pausing `interval_ms` between steps. Reports progress when the request carries ' +
        'a progress token, logs each step at debug level, and stops when the request is cancelled.',
      inputSchema: {
        steps: z.number().int().min(1).max(1_000),
        interval_ms: z.number().int().min(0).max(10_000).default(100),
        label: z.string().max(200).optional().describe('Recorded with a cancellation (see observed_events)'),
      },
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ steps, interval_ms, label }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let step = 1; step <= steps; step += 1) {
        try {
          await abortableSleep(interval_ms, extra.signal);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          observed.cancelled.push({ label: label ?? '', step, reason });
          throw error;
        }
        await log.send(extra, 'debug', { tool: 'slow_count', step, steps });
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: step, total: steps, message: `step ${step} of ${steps}` },
          });
        }
      }
      return textResult(`Counted to ${steps}.`, { counted: steps });
    },
  );

  server.registerTool(
    'summarize_with_llm',
    {
      title: 'Summarize with the client LLM',
      description: "Summarise text by asking the client's model (sampling/createMessage).",
      inputSchema: {
        text: z.string().min(1).max(100_000),
        max_tokens: z.number().int().min(1).max(4_000).default(256),
      },
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async ({ text, max_tokens }, extra) => {
      if (!clientSupports('sampling')) return toolError('The client does not support sampling.');
      const result = await extra.sendRequest(
        {
          method: 'sampling/createMessage',
          params: {
            messages: [
              { role: 'user', content: { type: 'text', text: `Summarise in one paragraph:\n\n${text}` } },
            ],
            systemPrompt: 'You write short, factual summaries.',
            maxTokens: max_tokens,
            modelPreferences: { hints: [{ name: 'claude' }], speedPriority: 0.8, intelligencePriority: 0.3 },
          },
        },
        CreateMessageResultSchema,
      );
      const summary = sampledText(result);
      return textResult(summary, { summary, model: result.model });
    },
  );

  server.registerTool(
    'confirm_action',
    {
      title: 'Confirm an action',
      description: 'Ask the user to confirm an action (elicitation/create) and report their answer.',
      inputSchema: { action: z.string().min(1).max(500).describe('What is about to happen') },
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async ({ action }, extra) => {
      if (!clientSupports('elicitation')) return toolError('The client does not support elicitation.');
      const answer = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            message: `Please confirm: ${action}`,
            requestedSchema: {
              type: 'object',
              properties: {
                confirm: { type: 'boolean', title: 'Confirm', description: `Go ahead with: ${action}` },
                note: { type: 'string', title: 'Note', description: 'Optional remark' },
              },
              required: ['confirm'],
            },
          },
        },
        ElicitResultSchema,
      );
      if (answer.action !== 'accept') {
        return textResult(`The user ${answer.action === 'decline' ? 'declined' : 'cancelled'}: ${action}`, {
          action,
          outcome: answer.action === 'decline' ? 'declined' : 'cancelled',
        });
      }
      const content = confirmationSchema.safeParse(answer.content);
      if (!content.success) return toolError('The elicitation answer did not match the requested schema.');
      const outcome = content.data.confirm ? 'confirmed' : 'rejected';
      return textResult(
        `The user ${outcome}: ${action}${content.data.note ? ` (${content.data.note})` : ''}`,
        {
          action,
          outcome,
          ...(content.data.note === undefined ? {} : { note: content.data.note }),
        },
      );
    },
  );

  server.registerTool(
    'list_roots',
    {
      title: 'List client roots',
      description: 'Ask the client for its roots (roots/list).',
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async (extra) => {
      if (!clientSupports('roots')) return toolError('The client does not support roots.');
      const { roots } = await extra.sendRequest({ method: 'roots/list' }, ListRootsResultSchema);
      const lines = roots.map((root) => (root.name ? `${root.name}: ${root.uri}` : root.uri));
      return textResult(lines.length > 0 ? lines.join('\n') : 'The client has no roots.', {
        roots: roots.map((root) => ({
          uri: root.uri,
          ...(root.name === undefined ? {} : { name: root.name }),
        })),
      });
    },
  );

  server.registerTool(
    'log_message',
    {
      title: 'Log a message',
      description:
        'Send a notifications/message to the client at the given level (subject to logging/setLevel).',
      inputSchema: { level: LoggingLevelSchema.default('info'), message: z.string().max(10_000) },
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ level, message }, extra) => {
      await log.send(extra, level, message);
      return textResult(`Logged at ${level}.`);
    },
  );

  server.registerTool(
    'observed_events',
    {
      title: 'Observed events',
      description:
        'What this server instance saw from its client: cancelled slow_count calls (with their label and ' +
        'step), how many notifications/roots/list_changed arrived, and the roots it was given when it asked after one.',
      annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: false },
    },
    () => textResult(JSON.stringify(observed), { ...observed }),
  );

  server.registerTool(
    'add_tool',
    {
      title: 'Add a tool',
      description:
        'Register a new echo-like tool named `extra_<n>`; the server announces notifications/tools/list_changed ' +
        'on its session-wide channel (not on this request).',
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    () => {
      observed.addedTools += 1;
      const name = `extra_${observed.addedTools}`;
      server.registerTool(
        name,
        {
          description: 'Added at run time; echoes its message.',
          inputSchema: { message: z.string().max(1_000) },
        },
        ({ message }) => ({
          content: [{ type: 'text', text: message }],
        }),
      );
      return textResult(`Added ${name}.`, { name });
    },
  );

  server.registerTool(
    'increment_counter',
    {
      title: 'Increment counter',
      description: `Add to the counter resource (${COUNTER_URI}); subscribers get notifications/resources/updated.`,
      inputSchema: { by: z.number().int().min(-1_000).max(1_000).default(1) },
      outputSchema: { value: z.number().int() },
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    async ({ by }, extra) => {
      counter += by;
      await subscriptions.notifyUpdated(COUNTER_URI, extra);
      return textResult(`Counter is ${counter}.`, { value: counter });
    },
  );

  server.registerResource(
    'counter',
    COUNTER_URI,
    {
      title: 'Counter',
      description: 'A number that increment_counter changes',
      mimeType: 'application/json',
    },
    (uri) => ({
      contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ value: counter }) }],
    }),
  );

  server.registerPrompt(
    'greeting',
    {
      title: 'Greeting',
      description: 'Greet someone in a language; the language argument completes.',
      argsSchema: {
        name: z.string().min(1).max(100),
        language: completable(z.string().describe(`One of: ${GREETING_LANGUAGES.join(', ')}`), (value) =>
          GREETING_LANGUAGES.filter((language) => language.startsWith(value.trim().toLowerCase())),
        ),
      },
    },
    ({ name, language }) => {
      const key =
        GREETING_LANGUAGES.find((candidate) => candidate === language.trim().toLowerCase()) ?? 'english';
      return {
        messages: [
          {
            role: 'user',
            content: { type: 'text', text: `Say "${GREETINGS[key]}, ${name}!" and nothing else.` },
          },
        ],
      };
    },
  );

  return server;
}
