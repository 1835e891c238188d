import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ErrorCode,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
  type ElicitResult,
  type LoggingMessageNotification,
  type Progress,
} from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connectInMemory, type InMemoryConnection } from '../testing/connect-in-memory';
import { resourceText, toolResultText } from '../testing/result-text';
import { COUNTER_URI, createKitchenSinkServer } from './kitchen-sink.server';

const fullClient = {
  capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } },
};

describe('kitchen-sink server', () => {
  let connection: InMemoryConnection | undefined;
  afterEach(async () => {
    await connection?.close();
    connection = undefined;
  });

  async function connect(
    configureClient?: (client: Client) => void,
    withCapabilities = true,
  ): Promise<Client> {
    connection = await connectInMemory(createKitchenSinkServer(), {
      ...(withCapabilities ? { clientOptions: fullClient } : {}),
      ...(configureClient ? { configureClient } : {}),
    });
    return connection.client;
  }

  function collectLogs(client: Client): LoggingMessageNotification['params'][] {
    const logs: LoggingMessageNotification['params'][] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      logs.push(notification.params);
    });
    return logs;
  }

  it('declares logging, completions, subscribable resources, tools and prompts', async () => {
    const client = await connect();
    expect(client.getServerCapabilities()).toMatchObject({
      logging: {},
      completions: {},
      resources: { subscribe: true },
      tools: {},
      prompts: {},
    });
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual([
      'add_tool',
      'confirm_action',
      'echo',
      'increment_counter',
      'list_roots',
      'log_message',
      'observed_events',
      'slow_count',
      'summarize_with_llm',
    ]);
  });

  it('echo returns its input unchanged', async () => {
    const client = await connect();
    const message = 'héllo\n{"json": true} 🦀';
    const result = await client.callTool({ name: 'echo', arguments: { message } });
    expect(result).toEqual({ content: [{ type: 'text', text: message }] });
    expect((await client.callTool({ name: 'echo', arguments: {} })).isError).toBe(true);
  });

  describe('slow_count', () => {
    it('reports progress for every step', async () => {
      const client = await connect();
      const progress: Progress[] = [];
      const result = await client.callTool(
        { name: 'slow_count', arguments: { steps: 4, interval_ms: 1 } },
        undefined,
        {
          onprogress: (update) => progress.push(update),
        },
      );
      expect(toolResultText(result)).toBe('Counted to 4.');
      expect(result.structuredContent).toEqual({ counted: 4 });
      expect(progress).toEqual(
        [1, 2, 3, 4].map((step) => ({ progress: step, total: 4, message: `step ${step} of 4` })),
      );
    });

    it('works without a progress token', async () => {
      const client = await connect();
      const result = await client.callTool({ name: 'slow_count', arguments: { steps: 2, interval_ms: 0 } });
      expect(toolResultText(result)).toBe('Counted to 2.');
    });

    it('stops counting when the request is cancelled', async () => {
      const client = await connect();
      await client.setLoggingLevel('debug');
      const logs = collectLogs(client);
      const controller = new AbortController();
      const call = client.callTool(
        { name: 'slow_count', arguments: { steps: 50, interval_ms: 20 } },
        undefined,
        {
          signal: controller.signal,
          onprogress: (update) => {
            if (update.progress === 2) controller.abort('enough');
          },
        },
      );
      await expect(call).rejects.toThrow();
      await new Promise((resolve) => setTimeout(resolve, 150));
      const steps = logs.map((log) => (log.data as { step: number }).step);
      expect(Math.max(...steps)).toBeLessThanOrEqual(3);
    });

    it('validates steps', async () => {
      const client = await connect();
      expect((await client.callTool({ name: 'slow_count', arguments: { steps: 0 } })).isError).toBe(true);
    });
  });

  describe('summarize_with_llm (sampling)', () => {
    it('asks the client model and returns its answer', async () => {
      const requests: unknown[] = [];
      const client = await connect((c) =>
        c.setRequestHandler(CreateMessageRequestSchema, (request) => {
          requests.push(request.params);
          return {
            model: 'test-model',
            role: 'assistant',
            content: { type: 'text', text: 'A short summary.' },
          };
        }),
      );
      const result = await client.callTool({
        name: 'summarize_with_llm',
        arguments: { text: 'A very long text.', max_tokens: 50 },
      });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toEqual({ summary: 'A short summary.', model: 'test-model' });
      expect(requests).toEqual([
        expect.objectContaining({
          maxTokens: 50,
          messages: [
            { role: 'user', content: { type: 'text', text: expect.stringContaining('A very long text.') } },
          ],
        }),
      ]);
    });

    it('describes non-text answers', async () => {
      const client = await connect((c) =>
        c.setRequestHandler(CreateMessageRequestSchema, () => ({
          model: 'm',
          role: 'assistant',
          content: { type: 'image', data: 'AAAA', mimeType: 'image/png' },
        })),
      );
      const result = await client.callTool({ name: 'summarize_with_llm', arguments: { text: 'x' } });
      expect(toolResultText(result)).toBe('[image content]');
    });

    it('turns a sampling failure into a tool error', async () => {
      const client = await connect((c) =>
        c.setRequestHandler(CreateMessageRequestSchema, () => {
          throw new McpError(ErrorCode.InvalidRequest, 'User rejected sampling request');
        }),
      );
      const result = await client.callTool({ name: 'summarize_with_llm', arguments: { text: 'x' } });
      expect(result.isError).toBe(true);
      expect(toolResultText(result)).toMatch(/User rejected sampling request/);
    });

    it('is a tool error when the client has no sampling capability', async () => {
      const client = await connect(undefined, false);
      const result = await client.callTool({ name: 'summarize_with_llm', arguments: { text: 'x' } });
      expect(result).toMatchObject({ isError: true });
      expect(toolResultText(result)).toBe('The client does not support sampling.');
    });
  });

  describe('confirm_action (elicitation)', () => {
    const answering = (answer: ElicitResult, seen: unknown[] = []) =>
      connect((c) =>
        c.setRequestHandler(ElicitRequestSchema, (request) => {
          seen.push(request.params);
          return answer;
        }),
      );

    it('sends a form with a required confirm field', async () => {
      const seen: unknown[] = [];
      const client = await answering({ action: 'accept', content: { confirm: true } }, seen);
      const result = await client.callTool({
        name: 'confirm_action',
        arguments: { action: 'delete the cache' },
      });
      expect(result.structuredContent).toEqual({ action: 'delete the cache', outcome: 'confirmed' });
      expect(toolResultText(result)).toBe('The user confirmed: delete the cache');
      expect(seen).toEqual([
        expect.objectContaining({
          message: 'Please confirm: delete the cache',
          requestedSchema: expect.objectContaining({ required: ['confirm'] }),
        }),
      ]);
    });

    it.each<[string, ElicitResult, string]>([
      [
        'rejected',
        { action: 'accept', content: { confirm: false, note: 'not today' } },
        'The user rejected: deploy (not today)',
      ],
      ['declined', { action: 'decline' }, 'The user declined: deploy'],
      ['cancelled', { action: 'cancel' }, 'The user cancelled: deploy'],
    ])('reports %s', async (outcome, answer, text) => {
      const client = await answering(answer);
      const result = await client.callTool({ name: 'confirm_action', arguments: { action: 'deploy' } });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ outcome });
      expect(toolResultText(result)).toBe(text);
    });

    it('is a tool error when the answer does not match the form', async () => {
      const client = await answering({ action: 'accept', content: { note: 'forgot confirm' } });
      const result = await client.callTool({ name: 'confirm_action', arguments: { action: 'deploy' } });
      expect(result.isError).toBe(true);
    });

    it('is a tool error when the client has no elicitation capability', async () => {
      const client = await connect(undefined, false);
      const result = await client.callTool({ name: 'confirm_action', arguments: { action: 'deploy' } });
      expect(toolResultText(result)).toBe('The client does not support elicitation.');
    });
  });

  describe('list_roots', () => {
    it('returns the roots the client reports', async () => {
      const client = await connect((c) =>
        c.setRequestHandler(ListRootsRequestSchema, () => ({
          roots: [{ uri: 'file:///work/project', name: 'project' }, { uri: 'file:///tmp' }],
        })),
      );
      const result = await client.callTool({ name: 'list_roots', arguments: {} });
      expect(toolResultText(result)).toBe('project: file:///work/project\nfile:///tmp');
      expect(result.structuredContent).toEqual({
        roots: [{ uri: 'file:///work/project', name: 'project' }, { uri: 'file:///tmp' }],
      });
    });

    it('handles an empty list and a client without roots', async () => {
      const client = await connect((c) => c.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [] })));
      expect(toolResultText(await client.callTool({ name: 'list_roots', arguments: {} }))).toBe(
        'The client has no roots.',
      );
      await connection?.close();
      const bare = await connect(undefined, false);
      expect((await bare.callTool({ name: 'list_roots', arguments: {} })).isError).toBe(true);
    });
  });

  describe('logging', () => {
    it('sends notifications/message, filtered by logging/setLevel', async () => {
      const client = await connect();
      const logs = collectLogs(client);
      await client.callTool({
        name: 'log_message',
        arguments: { level: 'debug', message: 'before setLevel' },
      });
      await client.setLoggingLevel('warning');
      await client.callTool({ name: 'log_message', arguments: { level: 'info', message: 'filtered' } });
      await client.callTool({ name: 'log_message', arguments: { level: 'error', message: 'kept' } });
      await client.callTool({ name: 'log_message', arguments: { message: 'default level is info' } });
      expect(logs).toEqual([
        { level: 'debug', logger: 'kitchen-sink', data: 'before setLevel' },
        { level: 'error', logger: 'kitchen-sink', data: 'kept' },
      ]);
    });

    it('rejects an unknown level', async () => {
      const client = await connect();
      expect(
        (await client.callTool({ name: 'log_message', arguments: { level: 'loud', message: 'x' } })).isError,
      ).toBe(true);
    });
  });

  describe('counter resource', () => {
    it('reads the counter and notifies subscribers of changes', async () => {
      const client = await connect();
      const updated: string[] = [];
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
        updated.push(notification.params.uri);
      });
      await client.callTool({ name: 'increment_counter', arguments: {} });
      expect(updated).toEqual([]);
      await client.subscribeResource({ uri: COUNTER_URI });
      const result = await client.callTool({ name: 'increment_counter', arguments: { by: 5 } });
      expect(result.structuredContent).toEqual({ value: 6 });
      expect(updated).toEqual([COUNTER_URI]);
      const read = await client.readResource({ uri: COUNTER_URI });
      expect(JSON.parse(resourceText(read))).toEqual({ value: 6 });
    });
  });

  describe('greeting prompt', () => {
    it('completes the language argument', async () => {
      const client = await connect();
      const complete = (value: string) =>
        client.complete({
          ref: { type: 'ref/prompt', name: 'greeting' },
          argument: { name: 'language', value },
        });
      expect((await complete('')).completion.values).toEqual([
        'dutch',
        'english',
        'french',
        'german',
        'italian',
        'spanish',
      ]);
      expect((await complete('Fr')).completion.values).toEqual(['french']);
      expect((await complete('x')).completion.values).toEqual([]);
    });

    it('greets in the chosen language, falling back to English', async () => {
      const client = await connect();
      const french = await client.getPrompt({
        name: 'greeting',
        arguments: { name: 'Ada', language: 'French' },
      });
      expect(french.messages[0]?.content).toMatchObject({ text: 'Say "Bonjour, Ada!" and nothing else.' });
      const unknown = await client.getPrompt({
        name: 'greeting',
        arguments: { name: 'Ada', language: 'klingon' },
      });
      expect(unknown.messages[0]?.content).toMatchObject({ text: 'Say "Hello, Ada!" and nothing else.' });
    });
  });
  describe('observed_events and add_tool', () => {
    it('records cancelled calls with their label and roots/list_changed notifications', async () => {
      const client = await connect();
      const controller = new AbortController();
      const call = client.callTool(
        { name: 'slow_count', arguments: { steps: 50, interval_ms: 20, label: 'spec-label' } },
        undefined,
        {
          signal: controller.signal,
          onprogress: (update) => {
            if (update.progress === 2) controller.abort('enough');
          },
        },
      );
      await expect(call).rejects.toThrow();
      await client.sendRootsListChanged();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const observed = JSON.parse(
        toolResultText(await client.callTool({ name: 'observed_events', arguments: {} })),
      ) as { cancelled: { label: string; step: number }[]; rootsListChanged: number };
      expect(observed.cancelled).toHaveLength(1);
      expect(observed.cancelled[0]).toMatchObject({ label: 'spec-label' });
      expect(observed.cancelled[0]?.step).toBeGreaterThanOrEqual(2);
      expect(observed.rootsListChanged).toBe(1);
    });

    it('add_tool registers a new tool and announces tools/list_changed', async () => {
      let changed = 0;
      const client = await connect((c) =>
        c.setNotificationHandler(ToolListChangedNotificationSchema, () => {
          changed += 1;
        }),
      );
      const added = await client.callTool({ name: 'add_tool', arguments: {} });
      expect(added.structuredContent).toEqual({ name: 'extra_1' });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(changed).toBe(1);
      const extra = await client.callTool({ name: 'extra_1', arguments: { message: 'hi' } });
      expect(toolResultText(extra)).toBe('hi');
    });
  });
});
