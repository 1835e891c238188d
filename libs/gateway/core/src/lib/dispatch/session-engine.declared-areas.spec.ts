/**
 * What an agent is sent stays within what its initialize declared. A tenant with no upstream yet declares the three
 * lists, so that an upstream configured later is announced when it joins. Log messages go to the agent only when
 * `logging` was declared (MCP 2025-11-25: servers that emit log messages MUST declare it): not from an upstream that
 * sends them undeclared, nor from one that joined after initialize, whose capabilities the session was never told.
 * A session opened while an upstream was missing declares logging with the lists, so the late upstream's messages
 * reach it; where logging was not declared, `logging/setLevel` is refused (-32601), since what it would turn on could
 * not be passed on. The end of a url-mode elicitation goes only to an agent that declared that mode (no other was
 * relayed one).
 */
import type { JsonRpcMessage } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { NO_STREAM, type MessageSink } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sinkOf = (into: JsonRpcMessage[]): MessageSink => ({ canStream: true, send: (message) => into.push(message) > 0 });
const methods = (messages: readonly JsonRpcMessage[]) => messages.map((message) => ('method' in message ? message.method : 'answer'));
const advertisedBy = (response: JsonRpcMessage) => ('result' in response ? response.result['capabilities'] : {}) as Record<string, unknown>;

describe('a tenant with no upstream at initialize', () => {
  it('is told of every list, and hears of the first upstream configured once it joins', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    expect(advertisedBy(response)).toMatchObject({ tools: { listChanged: true }, prompts: { listChanged: true }, resources: { listChanged: true } });
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(told));

    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    engine.listsChangedFor('t1');
    engine.joinMissingUpstreams();
    await expect.poll(() => connector.opened.some((opened) => opened.upstreamId === 'u1')).toBe(true);
    const listed = (await engine.request(record, req('tools/list'), NO_STREAM, 'trace')) as { result?: { tools: { name: string }[] } };
    expect(listed.result?.tools.map((tool) => tool.name)).toEqual(['files__echo']);
    expect(methods(told)).toContain('notifications/tools/list_changed');
  });
});

describe('log messages', () => {
  it.each([
    ['not relayed from an upstream that sends them without declaring logging', { tools: {} }, 0],
    ['relayed from one that declared it', { tools: {}, logging: {} }, 2],
  ])("are %s, on the agent's stream and a call's", async (_case, capabilities, expected) => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities,
        handle: async (method, _params, options) => {
          if (method === 'tools/list') return { tools: [{ name: 'work', inputSchema: { type: 'object' } }] };
          options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'during the call' } });
          return { content: [] };
        },
      },
    });
    const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore() });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    expect(advertisedBy(response)['logging']).toEqual(expected === 0 ? undefined : {});
    const onStream: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(onStream));
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'outside calls' } });
    const onCall: JsonRpcMessage[] = [];
    expect(await engine.request(record, req('tools/call', { name: 'docs__work', arguments: {} }), sinkOf(onCall), 'trace')).toMatchObject({ result: {} });
    await sleep(20);
    expect(methods([...onStream, ...onCall]).filter((method) => method === 'notifications/message')).toHaveLength(expected);
  });

  it('of an upstream joined after initialize do not reach an agent that was told of no logging', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
      u2: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    expect(advertisedBy(response)['logging']).toBeUndefined();
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(told));

    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'logs')], () => undefined);
    engine.joinMissingUpstreams();
    await expect.poll(() => (connector.notificationHandlers.get('u2') ?? []).length > 0).toBe(true);
    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', logger: 'db', data: 'connection lost' } });
    // The list change the join made is sent (the gateway's tools are advertised with listChanged); the log is not.
    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    await expect.poll(() => methods(told)).toContain('notifications/tools/list_changed');
    expect(methods(told)).not.toContain('notifications/message');
  });

  it('of an upstream that declares logging and was still starting at initialize reach the agent once it joined', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
    });
    connector.openDelayMs.set('u1', 100);
    const engine = makeEngine({ registry, connector, options: { initializeWaitMs: 20 } });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const advertised = ('result' in response ? response.result['capabilities'] : {}) as Record<string, unknown>;
    // Told of the lists, so that the upstream can serve once it joins.
    expect(advertised).toMatchObject({ tools: { listChanged: true } });
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message) > 0 });
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    await sleep(20);
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', logger: 'db', data: 'connection lost' } });
    await sleep(20);
    expect(told.map((message) => ('method' in message ? message.method : 'answer')), 'the joined upstream\'s error log').toContain('notifications/message');
  });

  it('cannot be turned on by logging/setLevel where initialize declared no logging, though an upstream joined since has it', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
      u2: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message) > 0 });
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'logs')], () => undefined);
    engine.joinMissingUpstreams();
    await expect.poll(() => (connector.notificationHandlers.get('u2') ?? []).length > 0).toBe(true);

    const set = await engine.request(record, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace');
    expect(set).toMatchObject({ error: { code: -32601 } });
    expect(connector.calls.some((call) => call.upstreamId === 'u2' && call.method === 'logging/setLevel')).toBe(false);
    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'debug', data: 'as asked' } });
    await sleep(20);
    expect(told.some((message) => 'method' in message && message.method === 'notifications/message')).toBe(false);
  });
});

describe('notifications/elicitation/complete', () => {
  it.each([
    ['reaches an agent that declared url-mode elicitation', { elicitation: { url: {} } }, 1],
    ['does not reach one that declared form mode only', { elicitation: {} }, 0],
  ])('%s', async (_case, capabilities, expected) => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const engine = makeEngine({ registry, connector });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25', capabilities });
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(told));
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId: 'e-1' } });
    // A list change after it, which every agent here gets: once it is in, the one before it was sent or dropped.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    await expect.poll(() => methods(told)).toContain('notifications/tools/list_changed');
    expect(methods(told).filter((method) => method === 'notifications/elicitation/complete')).toHaveLength(expected);
  });
});
