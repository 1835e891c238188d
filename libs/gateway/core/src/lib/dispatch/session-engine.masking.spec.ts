/**
 * The hooks judge an upstream's listing and instructions as the upstream wrote them; the agent is shown them with the
 * upstream's configured values masked. Tool pinning compares what it is given with what the control plane's test
 * connection hashed for approval (unmasked): before, the hooks were given the masked text, so an approved tool (or
 * approved instructions) mentioning a configured value was held as "changed" for good.
 */
import { MAX_INSTRUCTIONS_CHARS, relayedInstructions } from '@portcullis/contracts/tool-pins';
import { MemoryTaskRouteStore, type JsonRpcMessage, type JsonRpcResponse, type UpstreamConfig } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore, type FakeUpstream } from '../testing/fake-upstreams';
import { RELATED_TASK } from './tasks';
import { type MessageSink, NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

// An ordinary configured value (the organisation the server works for), 8 characters or more: masked for the agent.
const ORG = 'acme-widgets';
const TOOL = { name: 'repos', description: `Lists the repositories of the ${ORG} organisation`, inputSchema: { type: 'object' } };
const INSTRUCTIONS = `This server works on the ${ORG} organisation only.`;

describe('an upstream whose listing and instructions mention a configured value', () => {
  it('has the hooks judge them as written, and the agent shown them masked', async () => {
    const config: UpstreamConfig = { ...fakeConfig('u1', 'gh'), env: { GITHUB_OWNER: ORG } };
    const registry = new UpstreamRegistry('__');
    registry.replace([config], () => undefined);
    const judged: string[] = [];
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({
        u1: { capabilities: { tools: {} }, instructions: INSTRUCTIONS, handle: async (method) => (method === 'tools/list' ? { tools: [TOOL] } : {}) },
      }),
      hooks: {
        instructions: (_record, _config, text) => (judged.push(text), text),
        filter: (_record, _kind, _config, items) => {
          for (const item of items) judged.push(String(item['description']));
          return items;
        },
      },
      options: { listTimeoutMs: 500 },
    });
    const { record, response } = await openSession(engine);
    const listed = (await engine.request(record, req('tools/list'), NO_STREAM, 'trace')) as JsonRpcResponse & { result?: { tools: { name: string; description: string }[] } };
    expect(judged).toEqual([INSTRUCTIONS, TOOL.description]);
    expect((response as { result?: { instructions?: string } }).result?.instructions).toBe(`gh: ${INSTRUCTIONS.replace(ORG, '[redacted]')}`);
    expect(listed.result?.tools).toEqual([expect.objectContaining({ name: 'gh__repos', description: TOOL.description.replace(ORG, '[redacted]') })]);
  });
});

describe('instructions cut to their bound across a configured value', () => {
  it('show no part of the value: its beginning before the cut is masked too (found by review)', async () => {
    const secret = 'tenant-secret-0123456789abcdef';
    const config: UpstreamConfig = { ...fakeConfig('u1', 'gh'), env: { API_SECRET: secret } };
    const registry = new UpstreamRegistry('__');
    registry.replace([config], () => undefined);
    // As the handshake relays them: cut at MAX_INSTRUCTIONS_CHARS, the value's first 20 characters before the cut.
    const long = `${'x'.repeat(MAX_INSTRUCTIONS_CHARS - 20)}${secret} and more`;
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({ u1: { capabilities: { tools: {} }, instructions: relayedInstructions(long), handle: async () => ({ tools: [] }) } }),
      options: { listTimeoutMs: 500 },
    });
    const { response } = await openSession(engine);
    const shown = (response as { result?: { instructions?: string } }).result?.instructions ?? '';
    expect(shown).toContain('[redacted]');
    expect(shown).not.toContain(secret.slice(0, 8));
    expect(shown.endsWith('…')).toBe(true);
  });
});

/** The credential the gateway injects for the upstreams below (an Authorization header), which they quote back. */
const TOKEN = 'upstream-token-0123456789';

/**
 * An engine over one upstream (`web`, tool `run`) configured with TOKEN, which calls `duringCall` while a call runs
 * (to send notifications or requests of its own), and answers a task-augmented call by creating task `t-1`.
 */
function quotingUpstream(duringCall: (options: Parameters<FakeUpstream['handle']>[2]) => Promise<void>, capabilities: Record<string, unknown> = { tools: {}, logging: {} }) {
  const registry = new UpstreamRegistry('__');
  registry.replace([{ ...fakeConfig('u1', 'web'), headers: { authorization: `Bearer ${TOKEN}` } }], () => undefined);
  const connector = new FakeConnector({
    u1: {
      capabilities,
      handle: async (method, params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } }] };
        if (method === 'tools/call' && params?.['task'] !== undefined) {
          return { task: { taskId: 't-1', status: 'working', createdAt: '2026-12-06T00:00:00Z', lastUpdatedAt: '2026-12-06T00:00:00Z', ttl: 60_000 } };
        }
        await duringCall(options);
        return { content: [] };
      },
    },
  });
  return { engine: makeEngine({ registry, connector, sessions: new MemorySessionStore(), tasks: new MemoryTaskRouteStore() }), connector };
}

// A log message's `logger` is free text (MCP's LoggingMessageNotification) and every message's `_meta` is the upstream's
// to fill: both were relayed as written, so a logger named after its request's header, or the request itself in
// `_meta`, handed the agent the credential the gateway injects (found in review). What routes a message stays as is.
describe('an upstream message quoting its credentials outside the fields known as text', () => {
  it('reaches the agent with them masked in the logger name and _meta', async () => {
    const token = TOKEN;
    const { engine } = quotingUpstream(async (options) => {
      // A method MCP does not define, named like an object's own property (the masking looked its fields up in a
      // plain object): which of its fields route it is unknown, so all of them are masked.
      options?.onNotification?.({ jsonrpc: '2.0', method: 'constructor', params: { note: `Bearer ${token}` } });
      options?.onNotification?.({
        jsonrpc: '2.0',
        method: 'notifications/message',
        params: { level: 'error', logger: `http-client(Bearer ${token})`, data: 'request refused', _meta: { request: { authorization: `Bearer ${token}` }, attempt: 2 } },
      });
    });
    const { record } = await openSession(engine, {});
    const relayed: JsonRpcMessage[] = [];
    const sink: MessageSink = { canStream: true, send: (message) => relayed.push(message) > 0 };
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {} }), sink, 'trace');
    expect(relayed.map((message) => ('method' in message ? message.method : undefined))).toEqual(['constructor', 'notifications/message']);
    expect(JSON.stringify(relayed)).not.toContain(token);
    expect(relayed[1]).toMatchObject({ params: { logger: expect.stringContaining('http-client('), data: 'request refused', _meta: { request: { authorization: expect.any(String) }, attempt: 2 } } });
  });
});

// Masked was a list of fields known to be text; every field MCP leaves to the upstream but those (a sampling request's
// metadata, stop sequences and model hints, a field MCP does not name, the related-task `_meta` beside its id) still
// carried the credential to the agent (found in review). Now everything is masked but what routes a message.
describe('an upstream message quoting its credentials in fields that do not route it', () => {
  const token = TOKEN;
  const setUp = quotingUpstream;
  const relayedTo = () => {
    const relayed: JsonRpcMessage[] = [];
    return { relayed, sink: { canStream: true, send: (message: JsonRpcMessage) => relayed.push(message) > 0 } satisfies MessageSink };
  };

  it('masks a sampling request\'s metadata, stop sequences and model hints, and keeps its numbers', async () => {
    const { engine } = setUp(async (options) => {
      void options?.onServerRequest?.(
        {
          jsonrpc: '2.0',
          id: 7,
          method: 'sampling/createMessage',
          params: {
            messages: [],
            maxTokens: 40,
            metadata: { upstreamRequest: { authorization: `Bearer ${token}` } },
            stopSequences: [`Bearer ${token}`],
            modelPreferences: { hints: [{ name: `model-for-${token}` }], speedPriority: 0.5 },
          },
        },
        new AbortController().signal,
      ).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 20));
    });
    const { record } = await openSession(engine, { capabilities: { sampling: {} } });
    const { relayed, sink } = relayedTo();
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {} }), sink, 'trace');
    const sampling = relayed.find((message) => 'method' in message && message.method === 'sampling/createMessage');
    expect(sampling).toMatchObject({ params: { maxTokens: 40, modelPreferences: { speedPriority: 0.5 } } });
    expect(JSON.stringify(relayed)).not.toContain(token);
  });

  it('masks a progress notification\'s fields MCP does not name, and keeps its token and numbers', async () => {
    const { engine } = setUp(async (options) => {
      options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p1', progress: 1, total: 2, message: 'step', detail: `GET / authorization: Bearer ${token}` } });
    });
    const { record } = await openSession(engine, {});
    const { relayed, sink } = relayedTo();
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {}, _meta: { progressToken: 'p1' } }), sink, 'trace');
    expect(relayed).toMatchObject([{ method: 'notifications/progress', params: { progressToken: 'p1', progress: 1, total: 2, message: 'step' } }]);
    expect(JSON.stringify(relayed)).not.toContain(token);
  });

  it('masks the related-task _meta of a task\'s message beside the task id, which stays the agent\'s', async () => {
    const { engine, connector } = setUp(async () => undefined, { tools: {}, logging: {}, tasks: { cancel: {}, list: {}, requests: { tools: { call: {} } } } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const { relayed, sink } = relayedTo();
    engine.attachStandalone(record, sink);
    const created = await engine.request(record, req('tools/call', { name: 'web__run', arguments: {}, task: {} }), NO_STREAM, 'trace');
    const agentTaskId = (created as unknown as { result: { task: { taskId: string } } }).result.task.taskId;
    connector.emit('u1', {
      jsonrpc: '2.0',
      method: 'notifications/message',
      params: { level: 'error', data: 'refused', _meta: { [RELATED_TASK]: { taskId: 't-1', request: { authorization: `Bearer ${token}` } } } },
    });
    await expect.poll(() => relayed.length).toBe(1);
    expect(JSON.stringify(relayed)).not.toContain(token);
    expect(relayed[0]).toMatchObject({ params: { _meta: { [RELATED_TASK]: { taskId: agentTaskId } } } });
  });
});

// What routes a message passes as written only when it has MCP's type: a log level that is no level, progress that is
// no number, a method or a field named after the credential, a sampling request's toolChoice object, a related task
// whose id is no string all carried the injected credential to the agent (found in review).
describe('an upstream message quoting its credentials where a routing field or a name stands', () => {
  const token = TOKEN;
  const relayedDuringCall = async (notification: JsonRpcMessage, capabilities: Record<string, unknown> = {}) => {
    const { engine } = quotingUpstream(async (options) => {
      if ('id' in notification) {
        void options?.onServerRequest?.(notification as never, new AbortController().signal).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 20));
      } else options?.onNotification?.(notification as never);
    });
    // 2025-11-25: sampling with tools (toolChoice) is that version's.
    const { record } = await openSession(engine, { capabilities, protocolVersion: '2025-11-25' });
    const relayed: JsonRpcMessage[] = [];
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {}, _meta: { progressToken: 'p1' } }), { canStream: true, send: (message) => relayed.push(message) > 0 }, 'trace');
    return relayed;
  };

  it.each([
    ['a log level that is no level', { method: 'notifications/message', params: { level: `Bearer ${token}`, data: 'x' } }],
    ['progress that is no number', { method: 'notifications/progress', params: { progressToken: 'p1', progress: `Bearer ${token}` } }],
    ['the name of a method MCP does not define', { method: `notifications/debug/${token}`, params: { note: 'x' } }],
    ['a field\'s name and a _meta key', { method: 'notifications/message', params: { level: 'info', data: 'x', [`auth=${token}`]: true, _meta: { [`auth=${token}`]: 1 } } }],
    ['a related task whose id is no string', { method: 'notifications/message', params: { level: 'info', data: 'x', _meta: { [RELATED_TASK]: { taskId: { request: `Bearer ${token}` } } } } }],
  ])('masks it in %s', async (_label, message) => {
    const relayed = await relayedDuringCall({ jsonrpc: '2.0', ...message } as JsonRpcMessage);
    expect(relayed).toHaveLength(1);
    expect(JSON.stringify(relayed)).not.toContain(token);
  });

  it('masks it in a sampling request\'s toolChoice, and keeps well-typed routing fields as they are', async () => {
    const relayed = await relayedDuringCall(
      { jsonrpc: '2.0', id: 7, method: 'sampling/createMessage', params: { messages: [], maxTokens: 40, includeContext: 'none', tools: [{ name: 'lookup', inputSchema: { type: 'object' } }], toolChoice: { mode: 'auto', reason: `Bearer ${token}` } } },
      { sampling: { tools: {} } },
    );
    const sampling = relayed.find((message) => 'method' in message && message.method === 'sampling/createMessage');
    expect(sampling).toMatchObject({ params: { maxTokens: 40, includeContext: 'none', toolChoice: { mode: 'auto' } } });
    expect(JSON.stringify(relayed)).not.toContain(token);
  });
});
