/**
 * Resource routing, completion routing, list cursors and tasks: cases a review of the session engine found wrong
 * (each failed before its fix).
 */
import { createLogger, type Logger } from '@portcullis/shared/util-logger';
import { MemoryTaskRouteStore, UpstreamRpcError, UpstreamUnavailableError, type JsonRpcMessage, type JsonRpcNotification, type JsonRpcRequest, type JsonRpcResponse, type SessionRecord, type UpstreamConfig, type UpstreamRequestOptions } from '@portcullis/gateway/mcp';
import { describe, expect, it, vi } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore, type FakeUpstream } from '../testing/fake-upstreams';
import { GATEWAY_RPC } from '../http/gateway-error';
import type { RequestHooks } from '../hooks/request-hooks';
import { GatewayRequestError, type SessionEngine } from './session-engine';
import { NO_STREAM, type MessageSink } from './sinks';
import { RELATED_TASK } from './tasks';

const { principal, req, initialize, makeEngine, openSession, recordOn } = engineSpecs();

function build(upstreams: Record<string, FakeUpstream & { prefix: string }>, extra: { tasks?: boolean; initializeWaitMs?: number; joinRetryMs?: number; logger?: Logger; hooks?: RequestHooks } = {}) {
  const registry = new UpstreamRegistry('__');
  const configs = Object.entries(upstreams).map(([id, u]) => fakeConfig(id, u.prefix));
  registry.replace(configs, () => undefined);
  const connector = new FakeConnector(upstreams);
  const sessions = new MemorySessionStore();
  const engine = makeEngine({
    registry, connector, sessions, logger: extra.logger,
    ...(extra.tasks ? { tasks: new MemoryTaskRouteStore() } : {}),
    ...(extra.hooks ? { hooks: extra.hooks } : {}),
    options: { listTimeoutMs: 200,
      ...(extra.initializeWaitMs !== undefined ? { initializeWaitMs: extra.initializeWaitMs } : {}),
      ...(extra.joinRetryMs !== undefined ? { joinRetryMs: extra.joinRetryMs } : {}) },
  });
  return { engine, connector, registry, sessions, configs };
}
const open = (engine: SessionEngine, protocolVersion?: string, capabilities?: Record<string, unknown>) => openSession(engine, { protocolVersion, capabilities });

/** A resource URI of about 8 K characters: 128 of them are a megabyte of routes (a session's own bound). */
const bigUri = (i: number) => `mem://big/${String(i).padStart(4, '0')}/${'x'.repeat(8_000 - 15)}`;

/** An upstream (prefix `r`) listing 128 `bigUri`s, whose reads answer `text`. */
const bigLister = (text: string): FakeUpstream & { prefix: string } => ({
  prefix: 'r',
  capabilities: { resources: {} },
  handle: async (method, params) => {
    if (method === 'resources/list') return { resources: Array.from({ length: 128 }, (_, i) => ({ uri: bigUri(i), name: `n${i}` })) };
    if (method === 'resources/read') return { contents: [{ uri: params?.['uri'], text }] };
    return { resourceTemplates: [] };
  },
});

/** 80 new sessions list the big URIs: 80 MiB of routes, past the replica's 64 MiB budget. */
async function listFromOtherSessions(engine: SessionEngine): Promise<void> {
  for (let i = 0; i < 80; i += 1) {
    const { record } = await openSession(engine);
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
  }
}

/** A response's result; a spec error for an error response. */
function resultOf(response: JsonRpcResponse): Record<string, unknown> {
  if (!('result' in response)) throw new Error(`expected a result: ${JSON.stringify(response)}`);
  return response.result;
}
const sinkOf = (into: JsonRpcMessage[]): MessageSink => ({ canStream: true, send: (m) => into.push(m) > 0 });
/**
 * An upstream (prefix `a`) whose resources/list asks the agent for its roots and answers its page without waiting (it
 * will use them later, or never); `context` as its connection gives it (`shared`: several requests may have asked).
 */
const askingLister = (signal: AbortSignal, context?: { readonly shared: boolean }): FakeUpstream & { prefix: string } => ({
  prefix: 'a',
  capabilities: { resources: {} },
  handle: async (method, _params, options) => {
    if (method !== 'resources/list') return {};
    void options?.onServerRequest?.({ jsonrpc: '2.0', id: 'q1', method: 'roots/list' }, signal, context).catch(() => undefined);
    return { resources: [{ uri: 'notes://a', name: 'a' }] };
  },
});

/**
 * A session's standalone stream and a listing's POST stream (open until its answer is written, as a PostResponder
 * takes nothing after it), noting which one each message went on. `list` lists resources on the POST; `question` is the
 * upstream's roots/list as relayed, `cancellations` the streams its cancellation went on.
 */
function listingStreams(engine: SessionEngine, record: Parameters<SessionEngine['request']>[0]) {
  const received: { via: string; message: JsonRpcMessage }[] = [];
  engine.attachStandalone(record, { canStream: true, send: (message) => received.push({ via: 'standalone', message }) > 0 });
  let postOpen = true;
  const post: MessageSink = {
    get canStream() {
      return postOpen;
    },
    send: (message) => postOpen && received.push({ via: 'post', message }) > 0,
  };
  const question = () => received.find((entry) => 'method' in entry.message && entry.message.method === 'roots/list');
  return {
    received,
    async list() {
      const listed = await engine.request(record, req('resources/list'), post, 'trace');
      postOpen = false;
      return listed;
    },
    question,
    cancellations: () =>
      received
        .filter((entry) => 'method' in entry.message && entry.message.method === 'notifications/cancelled' && entry.message.params?.['requestId'] === (question()?.message as JsonRpcRequest | undefined)?.id)
        .map((entry) => entry.via),
  };
}
/** What a task-capable upstream answers a task-augmented call with: task t-1, working. */
const TASK_ANSWER = { task: { taskId: 't-1', status: 'working', createdAt: 'x', lastUpdatedAt: 'x', ttl: 60_000 } };
/** An upstream (prefix up1) that runs every tools/call as task t-1. */
const taskRunner: FakeUpstream & { prefix: string } = {
  prefix: 'up1',
  capabilities: { tools: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } },
  handle: async (method) => (method === 'tools/call' ? TASK_ANSWER : {}),
};

describe('SessionEngine: resource routes, cursors and tasks', () => {
  it('sends completion/complete of a resource template to the upstream that listed that template, not to the first whose template matches its text', async () => {
    const resUpstream = (prefix: string, template: string, value: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { resources: {}, completions: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [] };
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: template, name: prefix }] };
        if (method === 'completion/complete') return { completion: { values: [value] } };
        return { contents: [] };
      },
    });
    const { engine, connector } = build({ a: resUpstream('a', 'file:///{+path}', 'from-a'), b: resUpstream('b', 'file:///home/{user}/notes/{note}', 'from-b') });
    const { record } = await open(engine);
    await engine.request(record, req('resources/templates/list'), NO_STREAM, 'trace'); // the agent sees b's template
    const answer = await engine.request(record, req('completion/complete', { ref: { type: 'ref/resource', uri: 'file:///home/{user}/notes/{note}' }, argument: { name: 'user', value: '' } }), NO_STREAM, 'trace');
    expect(connector.calls.filter((c) => c.method === 'completion/complete').map((c) => c.upstreamId)).toEqual(['b']);
    expect(answer).toMatchObject({ result: { completion: { values: ['from-b'] } } });
  });

  it('reads a URI first listed by an upstream since removed from the tenant from the upstream that lists it now', async () => {
    const lister = (prefix: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [{ uri: 'notes://shared/readme', name: 'readme' }] };
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        return { contents: [{ uri: 'notes://shared/readme', text: prefix }] };
      },
    });
    const { engine, registry, configs } = build({ u1: lister('old'), u2: lister('new') });
    // The tenant has only u1 at first.
    registry.replace([configs[0] as UpstreamConfig], () => undefined);
    const { record } = await open(engine);
    expect(await engine.request(record, req('resources/read', { uri: 'notes://shared/readme' }), NO_STREAM, 'trace')).toMatchObject({ result: { contents: [{ text: 'old' }] } });
    // The admin replaces u1 by u2 (same content); the agent is told its lists changed and lists again: u2 joins and lists the URI.
    registry.replace([configs[1] as UpstreamConfig], () => undefined);
    engine.listsChangedFor('t1');
    const listed = await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(listed).toMatchObject({ result: { resources: [{ uri: 'notes://shared/readme' }] } });
    const read = await engine.request(record, req('resources/read', { uri: 'notes://shared/readme' }), NO_STREAM, 'trace');
    expect(read).toMatchObject({ result: { contents: [{ text: 'new' }] } });
  });

  it("names the upstream's task id again in the agent's answer to a request about a task", async () => {
    const { engine, connector } = build({ u1: taskRunner }, { tasks: true });
    const { record } = await open(engine, '2025-11-25', { elicitation: {} });
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    const created = await engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } }), NO_STREAM, 'trace');
    const agentTaskId = (resultOf(created)['task'] as { taskId: string }).taskId;
    // The upstream asks for input for its task t-1 (input_required), on its own stream.
    const answered = connector.ask('u1', { jsonrpc: '2.0', id: 99, method: 'elicitation/create', params: { message: 'ok?', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId: 't-1' } } } });
    await new Promise((r) => setTimeout(r, 20));
    const relayed = toAgent.find((m) => 'method' in m && m.method === 'elicitation/create') as JsonRpcRequest;
    expect((relayed.params?.['_meta'] as Record<string, { taskId: string }>)[RELATED_TASK]?.taskId).toBe(agentTaskId);
    // MCP: the response shares the related task id -- the agent knows it as agentTaskId.
    engine.answer(record, { jsonrpc: '2.0', id: relayed.id, result: { action: 'accept', content: {}, _meta: { [RELATED_TASK]: { taskId: agentTaskId } } } });
    const toUpstream = await answered;
    expect((toUpstream['_meta'] as Record<string, { taskId: string }>)[RELATED_TASK]?.taskId).toBe('t-1');
  });

  it('runs a task-augmented call as a plain one where initialize offered no tasks, though a task-capable upstream joined since', async () => {
    const tasksUpstream: FakeUpstream & { prefix: string } = {
      prefix: 'up1',
      capabilities: { tools: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } },
      handle: async (method, params) => {
        if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } }] };
        if (method === 'tools/call' && params?.['task'] !== undefined) return { task: { taskId: 't-1', status: 'working', createdAt: 'x', lastUpdatedAt: 'x', ttl: 60_000 } };
        return { content: [{ type: 'text', text: 'plain' }] };
      },
    };
    const { engine, connector } = build({ u1: tasksUpstream }, { tasks: true, initializeWaitMs: 20 });
    connector.openDelayMs.set('u1', 100); // slow to start: joins after initialize answered
    const { record, response } = await open(engine, '2025-11-25');
    expect((resultOf(response)['capabilities'] as Record<string, unknown>)['tasks']).toBeUndefined();
    await new Promise((r) => setTimeout(r, 200));
    const answer = await engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } }), NO_STREAM, 'trace');
    // Answered as a plain call: no task was created upstream that the agent could never reach (tasks/get is not offered).
    expect(answer).toMatchObject({ result: { content: [{ text: 'plain' }] } });
    expect(resultOf(answer)['task']).toBeUndefined();
    expect(connector.calls.find((call) => call.method === 'tools/call')?.params).not.toHaveProperty('task');
  });

  it('holds at most a bounded number of messages about a new task while its answer is awaited, dropping the rest', async () => {
    let release: () => void = () => undefined;
    const flood: FakeUpstream & { prefix: string } = {
      prefix: 'up1',
      capabilities: { tools: {}, tasks: { requests: { tools: { call: {} } } } },
      handle: async (method, _params, options?: UpstreamRequestOptions) => {
        if (method !== 'tools/call') return {};
        for (let i = 0; i < 5_000; i += 1) options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'working', statusMessage: 'x'.repeat(100) } });
        await new Promise<void>((r) => (release = r));
        return { task: { taskId: 't-1', status: 'working', createdAt: 'x', lastUpdatedAt: 'x', ttl: 60_000 } };
      },
    };
    const { engine } = build({ u1: flood }, { tasks: true });
    const { record } = await open(engine, '2025-11-25');
    const toAgent: JsonRpcMessage[] = [];
    const call = engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: {} }), sinkOf(toAgent), 'trace');
    await new Promise((r) => setTimeout(r, 50));
    release();
    await call;
    await new Promise((r) => setTimeout(r, 50));
    // The first ones are passed on under the agent's task id once it is known; the flood past the bound is not kept.
    const statuses = toAgent.filter((m) => 'method' in m && m.method === 'notifications/tasks/status');
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.length).toBeLessThanOrEqual(64);
  });

  it('lists a URI two upstreams list once, as the one its reads go to, and the other\'s copy when that one drops out', async () => {
    const uri = 'notes://shared/readme';
    let aListings = 0;
    const lister = (prefix: string, failsSecond: boolean): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') {
          if (failsSecond && ++aListings === 2) throw new UpstreamRpcError(-32603, 'listing backend busy, try again');
          return { resources: [{ uri, name: `readme of ${prefix}` }] };
        }
        return { contents: [{ uri, text: `from ${prefix}` }] };
      },
    });
    const { engine } = build({ ua: lister('a', true), ub: lister('b', false) });
    const { record } = await open(engine);
    const listing = async () => (resultOf(await engine.request(record, req('resources/list'), NO_STREAM, 'trace'))['resources'] as { name: string }[]).map((r) => r.name);
    // Before, both copies were listed; b's could never be read.
    expect(await listing()).toEqual(['readme of a']);
    // a's listing fails this once: b's copy is listed (before a first form of the fix, the URI was in no entry at all).
    expect(await listing()).toEqual(['readme of b']);
    // Reads go to a all along.
    expect(resultOf(await engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace'))).toMatchObject({ contents: [{ text: 'from a' }] });
    expect(await listing()).toEqual(['readme of a']);
  });

  it('lists a URI from the other upstream on a later page when its holder dropped out of the walk\'s first page', async () => {
    const uri = 'notes://shared/readme';
    let aListings = 0;
    const { engine } = build({
      ua: {
        prefix: 'a',
        capabilities: { resources: {} },
        handle: async (method) => {
          if (method !== 'resources/list') return { contents: [{ uri, text: 'from a' }] };
          // The second walk: a's listing is busy this once.
          if (++aListings === 2) throw new UpstreamRpcError(-32603, 'listing backend busy, try again');
          return { resources: [{ uri, name: 'readme of a' }] };
        },
      },
      ub: {
        prefix: 'b',
        capabilities: { resources: {} },
        handle: async (method, params) => {
          if (method !== 'resources/list') return { contents: [{ uri, text: 'from b' }] };
          if (params?.['cursor'] === 'p2') return { resources: [{ uri, name: 'readme of b' }] };
          return { resources: [{ uri: 'notes://b/other', name: 'other of b' }], nextCursor: 'p2' };
        },
      },
    });
    const { record } = await open(engine);
    /** A whole walk, following nextCursor: the names listed. */
    const walk = async (): Promise<string[]> => {
      const names: string[] = [];
      let cursor: string | undefined;
      do {
        const page = resultOf(await engine.request(record, req('resources/list', cursor === undefined ? {} : { cursor }), NO_STREAM, 'trace'));
        for (const resource of page['resources'] as { name: string }[]) names.push(resource.name);
        cursor = page['nextCursor'] as string | undefined;
      } while (cursor !== undefined);
      return names;
    };
    // b's copy comes on a page after a's last: listed too (a cursor does not say whether a's part ended or failed).
    expect(await walk()).toEqual(['readme of a', 'other of b', 'readme of b']);
    // a failed the second walk's first page: b's copy is the URI's only listing. An earlier form of the
    // de-duplication left it out (the URI was in no page of the walk).
    expect(await walk()).toEqual(['other of b', 'readme of b']);
  });

  it('refuses an upstream\'s request of a method MCP gives no client area (-32601), never sending it to the agent', async () => {
    const { engine } = build({
      u1: {
        prefix: 'fs',
        capabilities: { resources: {} },
        handle: (method, _params, options?: UpstreamRequestOptions) => {
          if (method !== 'resources/list') return Promise.resolve({ contents: [] });
          const asked = options?.onServerRequest?.({ jsonrpc: '2.0', id: 7, method: 'acme/openUrl', params: { url: 'https://example.test' } }, new AbortController().signal) ?? Promise.reject(new Error('no relay'));
          return asked.then(
            () => ({ resources: [{ uri: 'file:///answered', name: 'answered' }] }),
            (error: { code?: number }) => ({ resources: [{ uri: 'file:///refused', name: `refused ${error.code}` }] }),
          );
        },
      },
    });
    // An agent that declared everything, an experimental area of that name included.
    const { record } = await open(engine, '2025-11-25', { roots: {}, sampling: {}, elicitation: {}, experimental: { 'acme/openUrl': {} } });
    const sent: JsonRpcMessage[] = [];
    const answer = await engine.request(record, req('resources/list'), sinkOf(sent), 'trace');
    expect(answer).toMatchObject({ result: { resources: [{ uri: 'file:///refused', name: 'refused -32601' }] } });
    expect(sent).toEqual([]);
  });

  it('asks the agent what an upstream asks while it lists on the listing\'s own stream, when there is no other', async () => {
    const { engine } = build({
      u1: {
        prefix: 'fs',
        capabilities: { resources: {} },
        handle: (method, _params, options?: UpstreamRequestOptions) => {
          if (method !== 'resources/list') return Promise.resolve({ contents: [] });
          const asked = options?.onServerRequest?.({ jsonrpc: '2.0', id: 7, method: 'roots/list' }, new AbortController().signal) ?? Promise.reject(new Error('no relay'));
          return asked.then(
            (answer) => ({ resources: ((answer['roots'] ?? []) as { uri: string }[]).map((root) => ({ uri: `${root.uri}/README.md`, name: 'readme' })) }),
            (error: Error) => ({ resources: [{ uri: 'file:///relay-failed', name: `relay failed: ${error.message}` }] }),
          );
        },
      },
    });
    const { record } = await open(engine, '2025-06-18', { roots: {} });
    // The listing's POST answered as an SSE stream; the agent never opened a GET stream. Sent only to the session's
    // stream (an earlier form of the fix), the question was refused ("The client cannot receive this request now").
    const asked: string[] = [];
    const sink: MessageSink = {
      canStream: true,
      send: (message) => {
        if ('method' in message && 'id' in message) {
          asked.push(message.method);
          setTimeout(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { roots: [{ uri: 'file:///home/one' }] } }), 5);
        }
        return true;
      },
    };
    const answer = await engine.request(record, req('resources/list'), sink, 'trace');
    expect(asked).toEqual(['roots/list']);
    expect(answer).toMatchObject({ result: { resources: [{ uri: 'file:///home/one/README.md' }] } });
  });

  it('ends an upstream\'s question with the listing page that asked it, on the listing\'s stream before its answer', async () => {
    const { engine } = build({ ua: askingLister(new AbortController().signal) });
    const { record } = await open(engine, undefined, { roots: {} });
    const { list, question, cancellations } = listingStreams(engine, record);
    const listed = await list();
    expect(listed).toMatchObject({ result: { resources: [{ uri: 'notes://a' }] } });
    expect(question()?.via).toBe('post');
    // Tied to nothing, it outlived the listing's stream, and its cancellation had no stream to reach the agent on.
    expect(cancellations()).toEqual(['post']);
  });

  it('puts a question several requests of the session may have asked while it lists on the session\'s stream', async () => {
    const upstreamSide = new AbortController();
    // A connection several requests of this session share: the question may be any of theirs (`shared`).
    const { engine } = build({ ua: askingLister(upstreamSide.signal, { shared: true }) });
    const { record } = await open(engine, undefined, { roots: {} });
    const { list, question, cancellations } = listingStreams(engine, record);
    await list();
    // It outlives the listing: on the listing's stream (an earlier form of the fix), its cancellation found it closed.
    expect(question()?.via).toBe('standalone');
    upstreamSide.abort();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(cancellations()).toEqual(['standalone']);
  });

  it('bounds the URI routes a session learns (an upstream whose resources keep changing without list_changed)', async () => {
    let round = 0;
    const churn: FakeUpstream & { prefix: string } = {
      prefix: 'logs',
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') { round += 1; return { resources: Array.from({ length: 1_000 }, (_, i) => ({ uri: `logs://run/${round}-${i}`, name: 'x' })) }; }
        return { resourceTemplates: [] };
      },
    };
    const { engine } = build({ u1: churn });
    const { record } = await open(engine);
    for (let i = 0; i < 100; i += 1) await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    const live = (engine as unknown as { live: Map<string, { resourceRoutes: Map<string, string> }> }).live.get(record.id);
    expect(live?.resourceRoutes.size).toBeLessThanOrEqual(10_000);
  });

  it('takes back every merged cursor it issues (an upstream cursor of 13 KB), and a templated read still finds its upstream', async () => {
    const bigCursor = 'c'.repeat(13_000);
    const paged: FakeUpstream & { prefix: string } = {
      prefix: 'a',
      capabilities: { tools: {}, resources: {} },
      handle: async (method, params) => {
        const second = params?.['cursor'] === bigCursor;
        if (method === 'tools/list') return second ? { tools: [{ name: 'two', inputSchema: { type: 'object' } }] } : { tools: [{ name: 'one', inputSchema: { type: 'object' } }], nextCursor: bigCursor };
        if (method === 'resources/list') return second ? { resources: [] } : { resources: [], nextCursor: bigCursor };
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        return { contents: [] };
      },
    };
    const templated: FakeUpstream & { prefix: string } = {
      prefix: 'b',
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [] };
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: 'mem://{key}', name: 'mem' }] };
        return { contents: [{ uri: 'mem://1', text: 'b' }] };
      },
    };
    const { engine } = build({ a: paged, b: templated });
    const { record } = await open(engine);
    const first = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    const next = resultOf(first)['nextCursor'];
    const second = await engine.request(record, req('tools/list', { cursor: next }), NO_STREAM, 'trace');
    // A read of b's templated resource: the route walk pages through a's resources with the same kind of cursor.
    const read = await engine.request(record, req('resources/read', { uri: 'mem://1' }), NO_STREAM, 'trace');
    expect(typeof next === 'string' && next.length).toBeGreaterThan(16 * 1024);
    expect({ second, read }).toMatchObject({ second: { result: { tools: [{ name: 'a__two' }] } }, read: { result: { contents: [{ text: 'b' }] } } });
  });
  it('issues only cursors it takes back, however many upstreams carry a long one (the largest parts end their listings)', async () => {
    // 16 K control characters each: JSON escapes them six-fold, so a dozen upstreams outgrow the merged cursor's bound.
    const longCursor = '\u0001'.repeat(16 * 1024);
    const upstreams: Record<string, FakeUpstream & { prefix: string }> = {};
    for (let i = 0; i < 12; i += 1) {
      upstreams[`u${i}`] = {
        prefix: `p${i}`,
        capabilities: { tools: {} },
        handle: async (_method, params) =>
          params?.['cursor'] === longCursor
            ? { tools: [{ name: 'second', inputSchema: { type: 'object' } }] }
            : { tools: [{ name: 'first', inputSchema: { type: 'object' } }], nextCursor: longCursor },
      };
    }
    const { engine } = build(upstreams);
    const { record } = await open(engine);
    const first = resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'));
    expect((first['tools'] as unknown[]).length).toBe(12);
    const next = first['nextCursor'];
    expect(typeof next).toBe('string');
    const second = await engine.request(record, req('tools/list', { cursor: next }), NO_STREAM, 'trace');
    const names = (resultOf(second)['tools'] as { name: string }[]).map((tool) => tool.name);
    // Some upstreams' second pages, all of them named: the cursor was taken back.
    expect(names.length).toBeGreaterThan(0);
    expect(names.length).toBeLessThan(12);
    for (const name of names) expect(name).toMatch(/^p\d+__second$/);
  });

  it('fits the merged cursor of a hundred upstreams with long cursors in one pass, not one encoding per part dropped', async () => {
    const longCursor = '\u0001'.repeat(16 * 1024);
    const upstreams: Record<string, FakeUpstream & { prefix: string }> = {};
    for (let i = 0; i < 100; i += 1) {
      upstreams[`u${i}`] = { prefix: `p${i}`, capabilities: { tools: {} }, handle: async () => ({ tools: [{ name: 'first', inputSchema: { type: 'object' } }], nextCursor: longCursor }) };
    }
    const { engine } = build(upstreams);
    const { record } = await open(engine);
    const started = performance.now();
    const first = resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'));
    const elapsed = performance.now() - started;
    expect((first['tools'] as unknown[]).length).toBe(100);
    expect(typeof first['nextCursor'] === 'string' && first['nextCursor'].length).toBeLessThanOrEqual(1024 * 1024);
    // Generous: one pass takes tens of milliseconds here; the loop it replaced took about 1.5 s for a hundred.
    expect(elapsed).toBeLessThan(800);
  });

  it('neither lists nor routes a resource URI longer than a read may name, and bounds the characters of the routes it keeps', async () => {
    const long = (i: number) => `mem://long/${String(i).padStart(4, '0')}/${'x'.repeat(100_000)}`;
    const near = (i: number) => `mem://near/${String(i).padStart(4, '0')}/${'y'.repeat(8_000)}`;
    const up: FakeUpstream & { prefix: string } = {
      prefix: 'r',
      capabilities: { resources: {} },
      handle: async (method, params) => {
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: `mem://t/${'z'.repeat(9_000)}/{key}`, name: 'huge' }] };
        if (method !== 'resources/list') return { contents: [] };
        const page = Number(params?.['cursor'] ?? '0');
        const resources = Array.from({ length: 100 }, (_, i) => ({ uri: page === 0 && i < 20 ? long(i) : near(page * 100 + i), name: `n${i}` }));
        return page < 4 ? { resources, nextCursor: String(page + 1) } : { resources };
      },
    };
    const { engine } = build({ r: up });
    const { record } = await open(engine);
    const first = resultOf(await engine.request(record, req('resources/list'), NO_STREAM, 'trace'));
    const uris = (first['resources'] as { uri: string }[]).map((resource) => resource.uri);
    expect(uris).toHaveLength(80);
    for (const uri of uris) expect(uri.length).toBeLessThanOrEqual(8 * 1024);
    // A walk over all five pages (480 URIs of 8 K characters, 3.9 M in all) keeps at most a megabyte of them.
    await engine.request(record, req('resources/read', { uri: 'mem://unknown' }), NO_STREAM, 'trace');
    const live = (engine as unknown as { live: Map<string, { resourceRoutes: { size: number; keyChars: number }; templateRoutes: { size: number } }> }).live.get(record.id);
    expect(live?.resourceRoutes.keyChars).toBeLessThanOrEqual(1024 * 1024);
    expect(live?.resourceRoutes.size).toBeGreaterThan(0);
    expect(live?.templateRoutes.size).toBe(0);
    // The newest routes are the ones kept: a URI of the last page still reads.
    const read = await engine.request(record, req('resources/read', { uri: near(499) }), NO_STREAM, 'trace');
    expect('result' in read).toBe(true);
  });

  // Found by review: each session's megabyte of routes was bounded, their sum was not (300 sessions of one principal held
  // 293 MiB of URIs an upstream chose).
  it('bounds the routes all sessions keep together; a session whose routes went to others reads by walking again', async () => {
    const up = bigLister('ok');
    const { engine } = build({ r: up });
    const records = [];
    for (let i = 0; i < 80; i += 1) {
      const { record } = await open(engine);
      resultOf(await engine.request(record, req('resources/list'), NO_STREAM, 'trace'));
      records.push(record);
    }
    const live = (engine as unknown as { live: Map<string, { resourceRoutes: { keyChars: number } }> }).live;
    const held = records.reduce((sum, record) => sum + (live.get(record.id)?.resourceRoutes.keyChars ?? 0), 0);
    // 80 sessions of a megabyte each: no more than the replica's 64 MiB, the newest sessions' routes whole.
    expect(held).toBeLessThanOrEqual(64 * 1024 * 1024);
    expect(live.get(records.at(-1)?.id ?? '')?.resourceRoutes.keyChars).toBe(128 * 8_000);
    expect(live.get(records[0]?.id ?? '')?.resourceRoutes.keyChars).toBe(0);
    const read = resultOf(await engine.request(records[0] as never, req('resources/read', { uri: bigUri(5) }), NO_STREAM, 'trace'));
    expect(read['contents']).toEqual([{ uri: bigUri(5), text: 'ok' }]);
  }, 60_000);

  it('routes a URI to the most specific matching template, and a template two upstreams list to the first by prefix, whatever answered first', async () => {
    const templated = (prefix: string, uriTemplate: string, failures = 0): FakeUpstream & { prefix: string; reads: string[] } => {
      let left = failures;
      const up = {
        prefix,
        reads: [] as string[],
        capabilities: { resources: {} },
        handle: async (method: string, params?: Record<string, unknown>) => {
          if (method === 'resources/list') return { resources: [] };
          if (method === 'resources/templates/list') {
            if (left > 0) {
              left -= 1;
              throw new Error('not now');
            }
            return { resourceTemplates: [{ uriTemplate, name: prefix }] };
          }
          up.reads.push(String(params?.['uri']));
          return { contents: [{ uri: String(params?.['uri']), text: prefix }] };
        },
      };
      return up;
    };
    const textOf = (answer: unknown) => (answer as { result?: { contents?: { text?: string }[] } }).result?.contents?.[0]?.text;
    // A broad template of the upstream first by prefix does not take what a narrower one of another upstream serves.
    {
      const { engine } = build({ ua: templated('a', 'mem://{+path}'), ub: templated('b', 'mem://b/{key}') });
      const { record } = await open(engine);
      expect(textOf(await engine.request(record, req('resources/read', { uri: 'mem://b/1' }), NO_STREAM, 'trace'))).toBe('b');
      expect(textOf(await engine.request(record, req('resources/read', { uri: 'mem://c/1' }), NO_STREAM, 'trace'))).toBe('a');
    }
    // The same template from both: a, first by prefix, serves it once it has listed it, also when b's listing came first.
    {
      const { engine } = build({ ua: templated('a', 'file:///{path}', 1), ub: templated('b', 'file:///{path}') });
      const { record } = await open(engine);
      // a's listing failed during the first walk: b serves meanwhile.
      expect(textOf(await engine.request(record, req('resources/read', { uri: 'file:///x' }), NO_STREAM, 'trace'))).toBe('b');
      await engine.request(record, req('resources/templates/list'), NO_STREAM, 'trace');
      expect(textOf(await engine.request(record, req('resources/read', { uri: 'file:///y' }), NO_STREAM, 'trace'))).toBe('a');
    }
  });

  it('forwards completion/complete to an upstream that answers it without declaring completions (2024-11-05 servers)', async () => {
    const up: FakeUpstream & { prefix: string } = {
      prefix: 'p',
      capabilities: { prompts: {} },
      handle: async (method) => {
        if (method === 'prompts/list') return { prompts: [{ name: 'greet', arguments: [{ name: 'who' }] }] };
        if (method === 'completion/complete') return { completion: { values: ['bob'] } };
        return {};
      },
    };
    const { engine } = build({ u1: up });
    const { record } = await open(engine);
    const answer = await engine.request(record, req('completion/complete', { ref: { type: 'ref/prompt', name: 'p__greet' }, argument: { name: 'who', value: 'b' } }), NO_STREAM, 'trace');
    expect(answer).toMatchObject({ result: { completion: { values: ['bob'] } } });
  });

  it('reads URIs of the first pages of a listing longer than the route bound (12,000 URIs), also after a second', async () => {
    const total = 12_000;
    const per = 1_000;
    const up: FakeUpstream & { prefix: string } = {
      prefix: 'r',
      capabilities: { resources: {} },
      handle: async (method, params) => {
        if (method === 'resources/list') {
          const page = params?.['cursor'] === undefined ? 0 : Number(params['cursor']);
          const resources = Array.from({ length: per }, (_, i) => ({ uri: `mem://r/${page * per + i}`, name: 'x' }));
          return { resources, ...((page + 1) * per < total ? { nextCursor: String(page + 1) } : {}) };
        }
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        return { contents: [{ uri: params?.['uri'], text: 'ok' }] };
      },
    };
    const { engine } = build({ u1: up });
    const { record } = await open(engine);
    const read = (uri: string) => engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace');
    expect(await read('mem://r/5')).toMatchObject({ result: { contents: [{ text: 'ok' }] } });
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await read('mem://r/5')).toMatchObject({ result: { contents: [{ text: 'ok' }] } });
    expect(await read('mem://r/11500')).toMatchObject({ result: { contents: [{ text: 'ok' }] } });
  });

  it('ends the listing of an upstream removed from the tenant on a later page, answering the others', async () => {
    const paged = (prefix: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { tools: {} },
      handle: async (method, params) => {
        if (method !== 'tools/list') return {};
        return params?.['cursor'] === undefined ? { tools: [{ name: 'one', inputSchema: { type: 'object' } }], nextCursor: 'c2' } : { tools: [{ name: 'two', inputSchema: { type: 'object' } }] };
      },
    });
    const { engine, registry, configs } = build({ a: paged('a'), b: paged('b') });
    const { record } = await open(engine);
    const next = resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'))['nextCursor'];
    registry.replace([configs[0] as UpstreamConfig], () => undefined);
    // Not "ask again with the same cursor" for good: the removed upstream has nothing more to list.
    expect(await engine.request(record, req('tools/list', { cursor: next }), NO_STREAM, 'trace')).toMatchObject({ result: { tools: [{ name: 'a__two' }] } });
  });

  it('serves prompts/list from a prompt upstream configured after initialize, joining it first', async () => {
    const tools: FakeUpstream & { prefix: string } = { prefix: 'a', capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) };
    const prompts: FakeUpstream & { prefix: string } = { prefix: 'p', capabilities: { prompts: {} }, handle: async (method) => (method === 'prompts/list' ? { prompts: [{ name: 'greet' }] } : {}) };
    const { engine, registry, configs } = build({ a: tools, p: prompts });
    registry.replace([configs[0] as UpstreamConfig], () => undefined);
    const { record } = await open(engine);
    registry.replace(configs, () => undefined);
    expect(await engine.request(record, req('prompts/list'), NO_STREAM, 'trace')).toMatchObject({ result: { prompts: [{ name: 'p__greet' }] } });
  });

  it('relays a request of the second attempt (the upstream forgot its session) asked before the transport hands the call back', async () => {
    let attempts = 0;
    const up: FakeUpstream & { prefix: string } = {
      prefix: 'u',
      capabilities: { tools: {} },
      handle: (method, _params, options?: UpstreamRequestOptions) => {
        if (method !== 'tools/call') return Promise.resolve({});
        attempts += 1;
        if (attempts === 1) return Promise.reject(new UpstreamUnavailableError('session_expired', 'gone'));
        const asked = options?.onServerRequest?.({ jsonrpc: '2.0', id: 7, method: 'roots/list' }, new AbortController().signal) ?? Promise.reject(new Error('no relay'));
        return asked.then(
          (roots) => ({ content: [{ type: 'text', text: JSON.stringify(roots) }] }),
          (error: Error) => ({ content: [{ type: 'text', text: `relay failed: ${error.message}` }] }),
        );
      },
    };
    const { engine } = build({ u1: up });
    const { record } = await open(engine, '2025-06-18', { roots: {} });
    const sink: MessageSink = {
      canStream: true,
      send: (message) => {
        if ('method' in message && message.method === 'roots/list' && 'id' in message) setTimeout(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { roots: [] } }), 5);
        return true;
      },
    };
    const answer = await engine.request(record, req('tools/call', { name: 'u__x', arguments: {} }), sink, 'trace');
    expect(attempts).toBe(2);
    expect(answer).toMatchObject({ result: { content: [{ text: '{"roots":[]}' }] } });
  });
  it('completes a resource template whose text is no URI the read checks take (a query on a file: template)', async () => {
    const up: FakeUpstream & { prefix: string } = {
      prefix: 'logs',
      capabilities: { resources: {}, completions: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [] };
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: 'file:///logs{?level}', name: 'logs' }] };
        if (method === 'completion/complete') return { completion: { values: ['debug', 'info'] } };
        return { contents: [] };
      },
    };
    const { engine, connector } = build({ u1: up });
    const { record } = await open(engine);
    const answer = await engine.request(record, req('completion/complete', { ref: { type: 'ref/resource', uri: 'file:///logs{?level}' }, argument: { name: 'level', value: '' } }), NO_STREAM, 'trace');
    expect(answer).toMatchObject({ result: { completion: { values: ['debug', 'info'] } } });
    expect(connector.calls.filter((call) => call.method === 'completion/complete')).toHaveLength(1);
    // A read of such text is still refused: it is no URI in normal form.
    expect(await engine.request(record, req('resources/read', { uri: 'file:///logs{?level}' }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32602 } });
  });

  it('learns its resource routes again when what the principal may see changes: a URI two upstreams list is read where a new session reads it', async () => {
    // Both upstreams list the same URI; the policy hides a's copy once `hidden` (a's then comes first in no listing).
    let hidden = false;
    const deniedOnA = (upstream: string, uri: unknown) => hidden && upstream === 'a' && uri === 'notes://shared/readme';
    const lister = (prefix: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [{ uri: 'notes://shared/readme', name: 'readme' }] };
        if (method === 'resources/read') return { contents: [{ uri: 'notes://shared/readme', text: `from ${prefix}` }] };
        return { resourceTemplates: [] };
      },
    });
    const { engine } = build({ ua: lister('a'), ub: lister('b') }, {
      hooks: {
        filter: (_record, kind, upstream, items) => (kind === 'resource' ? items.filter((item) => !deniedOnA(upstream.name, item['uri'])) : items),
        admit: (info) => {
          if (info.target && deniedOnA(info.target.upstream.name, info.target.name)) throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'denied');
          return undefined;
        },
      },
    });
    const read = async (record: Awaited<ReturnType<typeof open>>['record']) => resultOf(await engine.request(record, req('resources/read', { uri: 'notes://shared/readme' }), NO_STREAM, 'trace'));
    const { record } = await open(engine);
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(await read(record)).toEqual({ contents: [{ uri: 'notes://shared/readme', text: 'from a' }] });
    hidden = true;
    engine.listsChangedFor('t1');
    // Still listed (b's copy): the session reads it from b, as a session opened now does, not from a (denied).
    expect(resultOf(await engine.request(record, req('resources/list'), NO_STREAM, 'trace'))['resources']).toEqual([{ uri: 'notes://shared/readme', name: 'readme' }]);
    expect(await read(record)).toEqual({ contents: [{ uri: 'notes://shared/readme', text: 'from b' }] });
    expect(await read((await open(engine)).record)).toEqual({ contents: [{ uri: 'notes://shared/readme', text: 'from b' }] });
  });
});

describe('SessionEngine: upstreams leaving a tenant or moving (retireDeparted)', () => {
  const tool = (prefix: string): FakeUpstream & { prefix: string } => ({
    prefix,
    capabilities: { tools: {}, logging: {} },
    handle: async (method) => (method === 'tools/list' ? { tools: [{ name: 'read', inputSchema: { type: 'object' } }] } : { content: [] }),
  });

  it('lets go at once of the upstream sessions of an upstream removed from the tenant, and only those', async () => {
    const { engine, connector, registry, configs } = build({ u1: tool('files'), u2: tool('math'), u3: tool('local') });
    // u3 runs over stdio: its session is this replica's own, and is closed (Streamable HTTP ones are shared, and only
    // dropped here: another replica may still have the upstream).
    const local = configs.map((config) => (config.id === 'u3' ? { ...config, transport: 'stdio' as const, url: null, command: 'server' } : config));
    registry.replace(local, () => undefined);
    const { record } = await open(engine);
    for (const name of ['files__read', 'math__read', 'local__read']) await engine.request(record, req('tools/call', { name, arguments: {} }), NO_STREAM, 'trace');
    // Disabled by an admin: the registry loses them, and the data plane's refresher retires what no longer fits.
    registry.replace(local.filter((config) => config.id === 'u2'), () => undefined);
    engine.retireDeparted('t1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'dispose' }, { upstreamId: 'u3', how: 'close' }]);
    // Calls to it are refused as no longer configured; the other upstream serves on, on its session.
    expect(await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ error: {} });
    await engine.request(record, req('tools/call', { name: 'math__read', arguments: {} }), NO_STREAM, 'trace');
    expect(connector.opened.filter((o) => o.upstreamId === 'u2')).toHaveLength(1);
  });

  it('retires the session of an upstream that now connects elsewhere, and the next call opens one under the new configuration', async () => {
    const { engine, connector, registry, configs } = build({ u1: tool('files') });
    const { record } = await open(engine);
    await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    const [first] = configs as [UpstreamConfig];
    // A rename keeps the session (the same connection)...
    registry.replace([{ ...first, name: 'renamed', version: 2 }], () => undefined);
    engine.retireDeparted('t1');
    expect(connector.ended).toEqual([]);
    // ...new credentials do not: the old session goes now, not at the agent's next use of it, and is ended at the
    // upstream (close: DELETE), as no replica has a use for it any more.
    registry.replace([{ ...first, headers: { authorization: 'Bearer rotated' }, sealedDigest: 'sealed-again', version: 3 }], () => undefined);
    engine.retireDeparted('t1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'close' }]);
    await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    // A new upstream session, initialized under the new credentials: not the old one resumed with them.
    expect(connector.opened.map((o) => [o.upstreamId, o.how])).toEqual([
      ['u1', 'connect'],
      ['u1', 'connect'],
    ]);
    const calls = connector.calls.filter((call) => call.method === 'tools/call').map((call) => call.sessionId);
    expect(new Set(calls).size).toBe(2);
  });

  it('does not end upstream a session whose endpoint an edit left as it was (the URL spelled otherwise), and calls go on on it (found by re-review)', async () => {
    for (const url of ['http://Internal-u1.example/mcp', 'http://internal-u1.example:80/mcp', 'http://internal-u1.example/mcp#main']) {
      const { engine, connector, registry, configs } = build({ u1: tool('files') });
      const { record } = await open(engine);
      await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
      const [first] = configs as [UpstreamConfig];
      registry.replace([{ ...first, url, version: 2 }], () => undefined);
      engine.retireDeparted('t1');
      await new Promise((resolve) => setImmediate(resolve));
      expect(connector.ended, url).toEqual([{ upstreamId: 'u1', how: 'dispose' }]);
      await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
      const calls = connector.calls.filter((call) => call.method === 'tools/call').map((call) => call.sessionId);
      expect(connector.closedSessions, url).not.toContain(calls.at(-1));
    }
  });

  it('does not end the new session of a repointed upstream when its URL is only re-spelled while that session opens (found by re-review)', async () => {
    const { engine, connector, registry, configs } = build({ u1: tool('files') });
    const { record } = await open(engine);
    const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    await call();
    const [first] = configs as [UpstreamConfig];
    // Repointed: the next call opens a session at the new URL, slowly.
    const moved: UpstreamConfig = { ...first, url: 'http://other-u1.example/mcp', version: 2 };
    registry.replace([moved], () => undefined);
    engine.retireDeparted('t1');
    connector.openDelayMs.set('u1', 50);
    const inFlight = call();
    await new Promise((resolve) => setTimeout(resolve, 10));
    // While it opens, only the new URL's spelling changes (the host's case): the same endpoint.
    registry.replace([{ ...moved, url: 'http://Other-u1.example/mcp', version: 3 }], () => undefined);
    engine.retireDeparted('t1');
    await inFlight.catch(() => undefined);
    connector.openDelayMs.delete('u1');
    await call();
    const calls = connector.calls.filter((c) => c.method === 'tools/call').map((c) => c.sessionId);
    expect(connector.closedSessions).not.toContain(calls.at(-1));
  });

  it('touches only the sessions of the tenant named', async () => {
    const { engine, connector, registry } = build({ u1: tool('files') });
    const { record } = await open(engine);
    await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    // u1 leaves t1 and another tenant gains an upstream: t2's refresh does not end t1's sessions, t1's does.
    registry.replace([fakeConfig('u9', 'other', 't2')], () => undefined);
    engine.retireDeparted('t2');
    await new Promise((resolve) => setImmediate(resolve));
    expect(connector.ended).toEqual([]);
    engine.retireDeparted('t1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'dispose' }]);
  });
});

describe('SessionEngine: results for an agent on an older protocol version than the upstream', () => {
  const link = { type: 'resource_link', uri: 'file:///README.md', name: 'README', mimeType: 'text/markdown' };
  const audio = { type: 'audio', data: 'AAAA', mimeType: 'audio/wav' };
  const upstream: FakeUpstream & { prefix: string } = {
    prefix: 'media',
    capabilities: { tools: {}, prompts: {} },
    handle: async (method) => {
      if (method === 'tools/list') return { tools: [{ name: 'fetch', inputSchema: { type: 'object' } }] };
      if (method === 'prompts/get') return { messages: [{ role: 'user', content: link }, { role: 'user', content: { type: 'text', text: 'hi' } }] };
      return { content: [{ type: 'text', text: 'here' }, link, audio], structuredContent: { ok: true } };
    },
  };

  it('gets resource links and audio as text blocks its version defines, in calls and prompts', async () => {
    const { engine } = build({ u1: upstream });
    const { record } = await open(engine, '2024-11-05');
    const call = resultOf(await engine.request(record, req('tools/call', { name: 'media__fetch', arguments: {} }), NO_STREAM, 'trace'));
    expect(call['content']).toEqual([
      { type: 'text', text: 'here' },
      { type: 'text', text: 'Resource link: README <file:///README.md> (text/markdown)' },
      { type: 'text', text: "Audio content (audio/wav) was omitted because this client's MCP protocol version (2024-11-05) does not support audio content." },
    ]);
    const prompt = resultOf(await engine.request(record, req('prompts/get', { name: 'media__p' }), NO_STREAM, 'trace'));
    expect(prompt['messages']).toEqual([{ role: 'user', content: { type: 'text', text: 'Resource link: README <file:///README.md> (text/markdown)' } }, { role: 'user', content: { type: 'text', text: 'hi' } }]);
  });

  it('keeps audio for a 2025-03-26 agent, and passes everything on as it came to a 2025-06-18 one', async () => {
    const { engine } = build({ u1: upstream });
    const { record: march } = await open(engine, '2025-03-26');
    const forMarch = resultOf(await engine.request(march, req('tools/call', { name: 'media__fetch', arguments: {} }), NO_STREAM, 'trace'));
    expect((forMarch['content'] as unknown[]).at(-1)).toEqual(audio);
    expect((forMarch['content'] as { type: string }[]).map((block) => block.type)).toEqual(['text', 'text', 'audio']);
    const { record: june } = await open(engine, '2025-06-18');
    const forJune = resultOf(await engine.request(june, req('tools/call', { name: 'media__fetch', arguments: {} }), NO_STREAM, 'trace'));
    expect(forJune['content']).toEqual([{ type: 'text', text: 'here' }, link, audio]);
  });
});

describe('SessionEngine: progress from upstreams', () => {
  it("passes on a call's progress only under the token the agent gave it, and none an upstream sends outside a call", async () => {
    let emitted: ((token: unknown, progress: number) => void) | undefined;
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'job',
      capabilities: { tools: {}, logging: {} },
      handle: async (method, params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        const mine = (params?.['_meta'] as { progressToken?: unknown } | undefined)?.progressToken;
        emitted = (progressToken, progress) => options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress } });
        emitted(mine, 1);
        emitted('someone-else', 2); // another request's token: not this call's progress
        emitted(mine, 3);
        return { content: [] };
      },
    };
    const { engine, connector } = build({ u1: upstream });
    const { record } = await open(engine);
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(standalone));
    const seen: JsonRpcMessage[] = [];
    await engine.request(record, req('tools/call', { name: 'job__run', arguments: {}, _meta: { progressToken: 'tok' } }), sinkOf(seen), 'trace');
    expect(seen.map((m) => ('params' in m ? m.params : undefined))).toEqual([{ progressToken: 'tok', progress: 1 }, { progressToken: 'tok', progress: 3 }]);
    // On the upstream session's own stream, progress names no call of the agent's: dropped, whatever its token.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'tok', progress: 4 } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'never-sent', progress: 1 } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'still relayed' } });
    expect(standalone.map((m) => ('method' in m ? m.method : 'answer'))).toEqual(['notifications/message']);
  });
});

describe('SessionEngine: a session ending while a request of it is under way', () => {
  const lister: FakeUpstream = { capabilities: { tools: {} }, handle: async () => ({ tools: [{ name: 'read', inputSchema: { type: 'object' } }], content: [] }) };
  const options = { listTimeoutMs: 500 };

  for (const where of ['here', 'on another replica'] as const) {
    it(`opens no upstream session for it once it ended ${where} (a stdio-like upstream would never be closed)`, async () => {
      const registry = new UpstreamRegistry('__');
      registry.replace([fakeConfig('u1', 'files')], () => undefined);
      const connector = new FakeConnector({ u1: lister });
      connector.unresumable.add('u1'); // each replica opens its own, as for stdio and legacy SSE
      const sessions = new MemorySessionStore();
      let release: () => void = () => undefined;
      const held = new Promise<void>((resolve) => (release = resolve));
      let admitted = 0;
      const a = makeEngine({ registry, connector, sessions, options: { ...options, replicaId: 'ra' } });
      // B's hooks (rate limits, the audit trail) are still deciding when the session ends.
      const b = makeEngine({ registry, connector, sessions, hooks: { admit: async () => void ((admitted += 1), await held) }, options: { ...options, replicaId: 'rb' } });
      const { sessionId } = await a.initialize(principal, initialize(), 'trace');
      const record = await recordOn(b, sessionId ?? '');
      const listing = b.request(record, req('tools/list'), NO_STREAM, 'trace');
      while (admitted === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      if (where === 'here') {
        await b.end(record, 'trace');
      } else {
        await a.end(record, 'trace');
        b.onBusMessage({ type: 'session-ended', sessionId: record.id });
      }
      const opened = connector.opened.length;
      const ended = connector.ended.length;
      release();
      expect(await listing).toMatchObject({ error: { code: -32004, message: 'Session not found' } });
      await b.sweepNow();
      expect(connector.opened.slice(opened)).toEqual([]);
      expect(connector.ended.slice(ended)).toEqual([]);
    });
  }

  it('ends an upstream session that was still opening when the session ended', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: lister });
    connector.unresumable.add('u1');
    const sessions = new MemorySessionStore();
    const a = makeEngine({ registry, connector, sessions, options: { ...options, replicaId: 'ra' } });
    const b = makeEngine({ registry, connector, sessions, options: { ...options, replicaId: 'rb' } });
    const { sessionId } = await a.initialize(principal, initialize(), 'trace');
    const record = await recordOn(b, sessionId ?? '');
    // B opens its own upstream session (a process starting) when the session is ended.
    connector.openDelayMs.set('u1', 50);
    const listing = b.request(record, req('tools/list'), NO_STREAM, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 10));
    await b.end(record, 'trace');
    await listing;
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Every upstream session opened on B for it (one, at the listing) was ended.
    const openedOnB = connector.opened.slice(1).length;
    expect(openedOnB).toBe(1);
    expect(connector.ended.filter((end) => end.how === 'close').length).toBeGreaterThanOrEqual(openedOnB);
  });

  it('is still served everywhere, and can be ended by a retry, when its record could not be deleted', async () => {
    class FailingDelete extends MemorySessionStore {
      failures = 1;
      override async delete(id: string): Promise<SessionRecord | undefined> {
        if (this.failures > 0) {
          this.failures -= 1;
          throw new Error('ECONNRESET');
        }
        return super.delete(id);
      }
    }
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: lister });
    const sessions = new FailingDelete();
    const a = makeEngine({ registry, connector, sessions, options: { ...options, replicaId: 'ra' } });
    const { record } = await openSession(a);
    await expect(a.end(record, 'trace')).rejects.toThrow('the session record could not be deleted');
    // Not ended: the replica serves it still, and the agent's retry ends it.
    const again = await a.session(record.id, principal);
    expect(again).toBeDefined();
    await a.end(again ?? record, 'trace');
    expect(sessions.records.has(record.id)).toBe(false);
    expect(await a.session(record.id, principal)).toBeUndefined();
  });
});

describe('SessionEngine: what an upstream declared, per upstream', () => {
  it('lists tools of an upstream whose tasks it does not run as plain tools, or not at all when they run only as tasks, and keeps taskSupport where it does', async () => {
    const taskTools = (prefix: string, transport: 'stdio' | 'streamable_http'): FakeUpstream & { prefix: string; transport: typeof transport } => ({
      prefix,
      transport,
      capabilities: { tools: {}, tasks: { requests: { tools: { call: {} } } } },
      handle: async () => ({
        tools: [
          { name: 'slow', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } },
          { name: 'must', inputSchema: { type: 'object' }, execution: { taskSupport: 'required', other: 1 } },
          { name: 'quick', inputSchema: { type: 'object' } },
        ],
      }),
    });
    const upstreams = { u1: taskTools('local', 'stdio'), u2: taskTools('web', 'streamable_http') };
    const { engine, registry, configs } = build(upstreams, { tasks: true });
    // u1 runs over stdio: the gateway never sends it a task augmentation (ADR 0008).
    registry.replace(configs.map((config) => (config.id === 'u1' ? { ...config, transport: 'stdio' as const, url: null, command: 'server' } : config)), () => undefined);
    const { record } = await open(engine, '2025-11-25');
    const tools = resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'))['tools'] as { name: string; execution?: Record<string, unknown> }[];
    const executionOf = (name: string) => tools.find((tool) => tool.name === name)?.execution;
    expect(executionOf('local__slow')).toBeUndefined();
    expect(executionOf('local__quick')).toBeUndefined();
    expect(executionOf('web__slow')).toEqual({ taskSupport: 'optional' });
    expect(executionOf('web__must')).toEqual({ taskSupport: 'required', other: 1 });
    // The upstream refuses every plain call of `must` (-32601): where no task can be sent, it is not listed.
    expect(tools.map((tool) => tool.name)).toEqual(['local__slow', 'local__quick', 'web__slow', 'web__must', 'web__quick']);
    // An agent whose version has no tasks is listed the plain tools of both.
    const older = await open(engine, '2025-06-18');
    const olderTools = resultOf(await engine.request(older.record, req('tools/list'), NO_STREAM, 'trace'))['tools'] as { name: string; execution?: unknown }[];
    expect(olderTools).toEqual([
      { name: 'local__slow', inputSchema: { type: 'object' } },
      { name: 'local__quick', inputSchema: { type: 'object' } },
      { name: 'web__slow', inputSchema: { type: 'object' } },
      { name: 'web__quick', inputSchema: { type: 'object' } },
    ]);
  });

  it('refuses a subscription to a resource whose server does not support subscriptions, though another upstream does', async () => {
    const resources = (prefix: string, subscribe: boolean, uri: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { resources: subscribe ? { subscribe: true } : {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [{ uri, name: prefix }] };
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        return {};
      },
    });
    const { engine, connector } = build({ a: resources('a', true, 'mem://a'), b: resources('b', false, 'mem://b') });
    const { record, response } = await open(engine);
    expect(resultOf(response)['capabilities']).toMatchObject({ resources: { subscribe: true } });
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://b' }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32601 } });
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(connector.calls.filter((call) => call.method === 'resources/subscribe').map((call) => call.upstreamId)).toEqual(['a']);
  });

  it('answers logging/setLevel with the refusal when no upstream took the level', async () => {
    const logs = (refuse: boolean): FakeUpstream & { prefix: string } => ({
      prefix: refuse ? 'no' : 'yes',
      capabilities: { logging: {} },
      handle: async (method) => {
        if (method === 'logging/setLevel' && refuse) throw new UpstreamRpcError(-32603, 'cannot set that');
        return {};
      },
    });
    const { engine: refusing } = build({ u1: logs(true) });
    const { record: refused } = await open(refusing);
    expect(await refusing.request(refused, req('logging/setLevel', { level: 'error' }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32603, message: 'cannot set that' } });
    const { engine: mixed } = build({ u1: logs(true), u2: logs(false) });
    const { record } = await open(mixed);
    expect(await mixed.request(record, req('logging/setLevel', { level: 'error' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
  });

  it('warns of an item name that breaks the naming rules once per upstream and name, not on every listing', async () => {
    const lines: string[] = [];
    const { engine } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [{ name: 'bad name!', inputSchema: { type: 'object' } }, { name: 'ok', inputSchema: { type: 'object' } }] }) } }, {
      logger: createLogger({ service: 'spec', level: 'warn', destination: { write: (line: string) => void lines.push(line) } }),
    });
    for (let i = 0; i < 3; i++) {
      const { record } = await open(engine);
      expect(resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'))['tools']).toEqual([{ name: 'files__ok', inputSchema: { type: 'object' } }]);
    }
    const warned = lines.filter((line) => line.includes('breaks the naming rules'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain('bad name!');
  });

  it('lists a name, URI or template an upstream repeats in a page once (its first item), and warns of it once', async () => {
    const lines: string[] = [];
    const tool = (name: string, description: string) => ({ name, description, inputSchema: { type: 'object' } });
    const dupe: FakeUpstream & { prefix: string } = {
      prefix: 'dupe',
      capabilities: { tools: {}, prompts: {}, resources: {} },
      handle: async (method) => {
        if (method === 'tools/list') return { tools: [tool('same', 'first'), tool('other', 'x'), tool('same', 'second'), tool('same', 'third')] };
        if (method === 'prompts/list') return { prompts: [{ name: 'p', description: 'first' }, { name: 'p', description: 'second' }] };
        if (method === 'resources/list') return { resources: [{ uri: 'mem://a', name: 'first' }, { uri: 'mem://a', name: 'second' }] };
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: 'mem://{k}', name: 'first' }, { uriTemplate: 'mem://{k}', name: 'second' }] };
        return {};
      },
    };
    const good: FakeUpstream & { prefix: string } = { prefix: 'good', capabilities: { tools: {} }, handle: async () => ({ tools: [tool('same', 'good')] }) };
    const { engine } = build({ u1: dupe, u2: good }, { logger: createLogger({ service: 'spec', level: 'warn', destination: { write: (line: string) => void lines.push(line) } }) });
    for (let i = 0; i < 2; i++) {
      const { record } = await open(engine);
      const list = async (method: string, field: string) => resultOf(await engine.request(record, req(method), NO_STREAM, 'trace'))[field];
      expect(await list('tools/list', 'tools')).toEqual([
        { name: 'dupe__same', description: 'first', inputSchema: { type: 'object' } },
        { name: 'dupe__other', description: 'x', inputSchema: { type: 'object' } },
        { name: 'good__same', description: 'good', inputSchema: { type: 'object' } },
      ]);
      expect(await list('prompts/list', 'prompts')).toEqual([{ name: 'dupe__p', description: 'first' }]);
      expect(await list('resources/list', 'resources')).toEqual([{ uri: 'mem://a', name: 'first' }]);
      expect(await list('resources/templates/list', 'resourceTemplates')).toEqual([{ uriTemplate: 'mem://{k}', name: 'first' }]);
    }
    const warned = lines.filter((line) => line.includes('more than once')).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(warned.map(({ upstream, kind, name }) => ({ upstream, kind, name }))).toEqual([
      { upstream: 'dupe', kind: 'tools', name: 'same' },
      { upstream: 'dupe', kind: 'prompts', name: 'p' },
      { upstream: 'dupe', kind: 'resources', name: 'mem://a' },
      { upstream: 'dupe', kind: 'resourceTemplates', name: 'mem://{k}' },
    ]);
  });

  it('drops an upstream whose listing result has no list array out of the answer, logged as a failed page is', async () => {
    const lines: string[] = [];
    const answering = (prefix: string, result: Record<string, unknown>): FakeUpstream & { prefix: string } => ({ prefix, capabilities: { tools: {} }, handle: async () => result });
    const { engine } = build(
      { u1: answering('nulls', { tools: null }), u2: answering('text', { tools: 'none' }), u3: answering('none', {}), u4: answering('ok', { tools: [{ name: 'a', inputSchema: { type: 'object' } }] }) },
      { logger: createLogger({ service: 'spec', level: 'warn', destination: { write: (line: string) => void lines.push(line) } }) },
    );
    const { record } = await open(engine);
    expect(resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'))['tools']).toEqual([{ name: 'ok__a', inputSchema: { type: 'object' } }]);
    const dropped = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line['msg'] === 'upstream dropped out of the request');
    expect(dropped.map(({ upstream, operation, reason, detail }) => ({ upstream, operation, reason, detail }))).toEqual(
      ['none', 'nulls', 'text'].map((upstream) => ({ upstream, operation: 'tools/list', reason: 'error', detail: 'tools/list result has no tools array' })),
    );
  });

  it('leaves out listed entries that are not objects, warning once per upstream and list, not per entry or per listing', async () => {
    const lines: string[] = [];
    const { engine } = build(
      { u1: { prefix: 'mixed', capabilities: { tools: {}, prompts: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [1, 'x', null, [], { name: 'a', inputSchema: { type: 'object' } }] } : { prompts: [false, { name: 'p' }] }) } },
      { logger: createLogger({ service: 'spec', level: 'warn', destination: { write: (line: string) => void lines.push(line) } }) },
    );
    for (let i = 0; i < 3; i++) {
      const { record } = await open(engine);
      expect(resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'))['tools']).toEqual([{ name: 'mixed__a', inputSchema: { type: 'object' } }]);
      expect(resultOf(await engine.request(record, req('prompts/list'), NO_STREAM, 'trace'))['prompts']).toEqual([{ name: 'mixed__p' }]);
    }
    const warned = lines.filter((line) => line.includes('not objects')).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(warned.map(({ upstream, kind }) => ({ upstream, kind }))).toEqual([
      { upstream: 'mixed', kind: 'tools' },
      { upstream: 'mixed', kind: 'prompts' },
    ]);
  });
});

describe('SessionEngine: progress of a task', () => {
  it("passes on a task's progress on the upstream session's stream for the task's lifetime, under its token only", async () => {
    const { engine, connector } = build({ u1: taskRunner }, { tasks: true });
    const { record } = await open(engine, '2025-11-25');
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    const created = await engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 }, _meta: { progressToken: 'ptok' } }), NO_STREAM, 'trace');
    const agentTaskId = (resultOf(created)['task'] as { taskId: string }).taskId;
    // MCP 2025-11-25: a task-augmented request's token stays valid for the task's lifetime.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'ptok', progress: 50, total: 100, _meta: { [RELATED_TASK]: { taskId: 't-1' } } } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'other', progress: 1 } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const progress = () => toAgent.filter((m) => 'method' in m && m.method === 'notifications/progress').map((m) => ('params' in m ? m.params : undefined));
    expect(progress()).toEqual([{ progressToken: 'ptok', progress: 50, total: 100, _meta: { [RELATED_TASK]: { taskId: agentTaskId } } }]);
    // The task is seen to end: its token is done with.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'completed', createdAt: 'x', lastUpdatedAt: 'x', ttl: 60_000 } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'ptok', progress: 99 } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(progress()).toHaveLength(1);
  });
});

describe('SessionEngine: progress of a task, after its call answered', () => {
  it("sends progress read on the call's own stream after the answer was written to the session's stream", async () => {
    let late: ((progress: number) => void) | undefined;
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'up1',
      capabilities: { tools: {}, tasks: { requests: { tools: { call: {} } } } },
      handle: async (_method, params, options) => {
        const progressToken = (params?.['_meta'] as { progressToken?: unknown } | undefined)?.progressToken;
        late = (progress) => options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress } });
        return TASK_ANSWER;
      },
    };
    const { engine } = build({ u1: upstream }, { tasks: true });
    const { record } = await open(engine, '2025-11-25');
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(standalone));
    // The POST's answer is written once the call returns: from then on its sink takes nothing.
    let answered = false;
    const post: MessageSink = { get canStream() { return !answered; }, send: () => !answered };
    await engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 }, _meta: { progressToken: 'ptok' } }), post, 'trace');
    answered = true;
    late?.(10);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(standalone.map((m) => ('params' in m ? m.params : undefined))).toEqual([{ progressToken: 'ptok', progress: 10 }]);
  });

  it("keeps a task's progress past the lease of its concurrency slots, and keeps no token longer than 512 characters", async () => {
    const upstream: FakeUpstream = { capabilities: { tools: {}, tasks: { requests: { tools: { call: {} } } } }, handle: async () => TASK_ANSWER };
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'up1'), callTimeoutMs: 100 }], () => undefined);
    const connector = new FakeConnector({ u1: upstream });
    // A concurrency limit holds a slot per call (released with the call, or, for a task, at the end of its lease).
    const engine = makeEngine({
      registry, connector, tasks: new MemoryTaskRouteStore(),
      hooks: { admit: (info) => (info.method === 'tools/call' ? { release: () => undefined } : undefined) },
      options: { listTimeoutMs: 200 },
    });
    const { record } = await open(engine, '2025-11-25');
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(standalone));
    const long = 'x'.repeat(513);
    for (const progressToken of ['ptok', long]) {
      await engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 }, _meta: { progressToken } }), NO_STREAM, 'trace');
    }
    await new Promise((resolve) => setTimeout(resolve, 250)); // past the slots' lease (the call timeout)
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'ptok', progress: 1 } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: long, progress: 1 } });
    expect(standalone.map((m) => ('params' in m ? m.params?.['progressToken'] : undefined))).toEqual(['ptok']);
  });
});

describe('SessionEngine: prompt names', () => {
  it('lists and gets a prompt whose name has characters a tool name may not (the specification sets no rule for prompts)', async () => {
    const { engine, connector } = build({
      u1: {
        prefix: 'docs',
        capabilities: { tools: {}, prompts: {} },
        handle: async (method) => {
          if (method === 'prompts/list') return { prompts: [{ name: 'code review' }, { name: 'bad\nname' }, { name: 'résumé: draft' }, { name: 'admin\u202egnp.exe' }, { name: 'می\u200cخواهم' }] };
          if (method === 'tools/list') return { tools: [{ name: 'code review', inputSchema: { type: 'object' } }] };
          return { messages: [] };
        },
      },
    });
    const { record } = await open(engine);
    const prompts = resultOf(await engine.request(record, req('prompts/list'), NO_STREAM, 'trace'))['prompts'] as { name: string }[];
    // A zero-width non-joiner is part of a Persian word; a bidi override is refused.
    expect(prompts.map((prompt) => prompt.name)).toEqual(['docs__code review', 'docs__résumé: draft', 'docs__می\u200cخواهم']);
    // Tools keep the specification's rules.
    expect(resultOf(await engine.request(record, req('tools/list'), NO_STREAM, 'trace'))['tools']).toEqual([]);
    expect(await engine.request(record, req('prompts/get', { name: 'docs__code review' }), NO_STREAM, 'trace')).toMatchObject({ result: { messages: [] } });
    expect(connector.calls.filter((call) => call.method === 'prompts/get').map((call) => (call.params as { name: string }).name)).toEqual(['code review']);
    expect(await engine.request(record, req('prompts/get', { name: `docs__${'x'.repeat(600)}` }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32602 } });
  });
});

describe('SessionEngine: log messages below the level the agent set', () => {
  it('drops them, on the session stream and with a call, and passes those at or above it', async () => {
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'web',
      capabilities: { tools: {}, logging: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        if (method === 'logging/setLevel') return {};
        // An upstream that logs whatever the level (or a process shared with a session that asked for debug).
        for (const level of ['debug', 'warning', 'error']) options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/message', params: { level, data: `in call ${level}` } });
        return { content: [] };
      },
    };
    const { engine, connector } = build({ u1: upstream });
    const { record } = await open(engine);
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(standalone));
    // Before any setLevel: everything passes.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'debug', data: 'early debug' } });
    expect(await engine.request(record, req('logging/setLevel', { level: 'warning' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const current = (await engine.session(record.id, { kind: record.principalKind, id: record.principalId, tenantId: record.tenantId } as never)) ?? record;
    const inCall: JsonRpcMessage[] = [];
    await engine.request(current, req('tools/call', { name: 'web__run', arguments: {} }), sinkOf(inCall), 'trace');
    for (const level of ['info', 'warning', 'emergency', 'verbose']) connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level, data: level } });
    const levels = (messages: JsonRpcMessage[]) => messages.map((m) => ('params' in m ? (m.params as { level?: string }).level : undefined));
    expect(levels(inCall)).toEqual(['warning', 'error']);
    // A level MCP does not name is passed on, not judged.
    expect(levels(standalone)).toEqual(['debug', 'warning', 'emergency', 'verbose']);
  });
});

describe('SessionEngine: log messages quoting an upstream\'s credentials', () => {
  it('masks them, on the session stream and with a call', async () => {
    const token = 'upstream-token-0123456789';
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'web',
      capabilities: { tools: {}, logging: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: { error: `refused Bearer ${token}` } } });
        return { content: [] };
      },
    };
    const { engine, connector, registry, configs } = build({ u1: upstream });
    registry.replace(configs.map((config) => ({ ...config, headers: { authorization: `Bearer ${token}` } })), () => undefined);
    const { record } = await open(engine);
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(standalone));
    const inCall: JsonRpcMessage[] = [];
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {} }), sinkOf(inCall), 'trace');
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'warning', data: `token ${token} expires soon` } });
    expect(inCall.map((m) => ('params' in m ? m.params : undefined))).toEqual([{ level: 'error', data: { error: 'refused [redacted]' } }]);
    expect(standalone.map((m) => ('params' in m ? m.params : undefined))).toEqual([{ level: 'warning', data: 'token [redacted] expires soon' }]);
  });

  it('masks them on a call whose upstream session was dropped meanwhile (forgotten by the upstream)', async () => {
    const token = 'upstream-token-0123456789';
    let log: ((notification: JsonRpcNotification) => void) | undefined;
    let finish: (() => void) | undefined;
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'web',
      capabilities: { tools: {}, logging: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        log = options?.onNotification;
        await new Promise<void>((resolve) => (finish = resolve));
        return { content: [] };
      },
    };
    const { engine, connector, registry, configs } = build({ u1: upstream });
    registry.replace(configs.map((config) => ({ ...config, headers: { authorization: `Bearer ${token}` } })), () => undefined);
    const { record } = await open(engine);
    const inCall: JsonRpcMessage[] = [];
    const pending = engine.request(record, req('tools/call', { name: 'web__run', arguments: {} }), sinkOf(inCall), 'trace');
    while (log === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
    log({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: `before ${token}` } });
    // Another call met the upstream's 404: the session is dropped here while this call still streams.
    connector.breakSession('u1');
    log({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: `after ${token}` } });
    finish?.();
    await pending;
    expect(inCall.map((m) => ('params' in m ? m.params : undefined))).toEqual([
      { level: 'error', data: 'before [redacted]' },
      { level: 'error', data: 'after [redacted]' },
    ]);
  });

  it("leaves what routes a message alone: a resource update about a URI holding a configured value reaches the subscribed agent", async () => {
    const uri = 'workspace://acme-analytics/report.csv';
    const { engine, connector, registry, configs } = build({
      u1: {
        prefix: 'ws',
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => {
          if (method === 'resources/list') return { resources: [{ uri, name: 'report' }] };
          if (method === 'resources/templates/list') return { resourceTemplates: [] };
          return {};
        },
      },
    });
    // An ordinary configured value (env of the server: its workspace), masked as every env value is.
    registry.replace(configs.map((c) => ({ ...c, env: { WORKSPACE: 'acme-analytics' } })), () => undefined);
    const { record } = await open(engine);
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    // The agent saw the URI in the list (results are not masked) and subscribed to it.
    expect(await engine.request(record, req('resources/list'), NO_STREAM, 'trace')).toMatchObject({ result: { resources: [{ uri }] } });
    expect(await engine.request(record, req('resources/subscribe', { uri }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri } });
    await new Promise((r) => setTimeout(r, 20));
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/resources/updated')).toMatchObject([{ params: { uri } }]);
  });


  it("leaves what routes a message alone: a task's elicitation whose upstream task id holds a configured value is relayed", async () => {
    const runner: FakeUpstream & { prefix: string } = {
      prefix: 'up1',
      capabilities: { tools: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } },
      handle: async (method) => (method === 'tools/call' ? { task: { taskId: 'acme-analytics:task:1', status: 'working', createdAt: 'x', lastUpdatedAt: 'x', ttl: 60_000 } } : {}),
    };
    const { engine, connector, registry, configs } = build({ u1: runner }, { tasks: true });
    registry.replace(configs.map((c) => ({ ...c, env: { WORKSPACE: 'acme-analytics' } })), () => undefined);
    const { record } = await open(engine, '2025-11-25', { elicitation: {} });
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    const created = await engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } }), NO_STREAM, 'trace');
    expect(resultOf(created)['task']).toBeDefined();
    const answered = connector.ask('u1', { jsonrpc: '2.0', id: 99, method: 'elicitation/create', params: { message: 'ok?', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId: 'acme-analytics:task:1' } } } }).then(
      () => 'relayed',
      (e: Error) => `refused: ${e.message}`,
    );
    await new Promise((r) => setTimeout(r, 50));
    const relayed = toAgent.find((m) => 'method' in m && m.method === 'elicitation/create') as JsonRpcRequest | undefined;
    if (relayed) engine.answer(record, { jsonrpc: '2.0', id: relayed.id, result: { action: 'decline' } });
    expect(await answered).toBe('relayed');
  });


  it('passes a deep part of a sampling request that holds no secret to the agent whole', async () => {
    const { engine, connector, registry, configs } = build({ u1: { prefix: 'web', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    registry.replace(configs.map((c) => ({ ...c, headers: { authorization: 'Bearer upstream-token-0123456789' } })), () => undefined);
    const { record } = await open(engine, '2025-06-18', { sampling: {} });
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        toAgent.push(message);
        if ('id' in message && 'method' in message) queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'm' } }));
        return true;
      },
    });
    let deep: unknown = 'leaf';
    for (let i = 0; i < 40; i++) deep = { n: deep };
    await connector.ask('u1', { jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }], maxTokens: 5, metadata: { deep } } });
    const relayed = toAgent.find((m) => 'method' in m && m.method === 'sampling/createMessage') as JsonRpcRequest;
    expect(JSON.stringify(relayed.params?.['metadata'])).toBe(JSON.stringify({ deep }));
  });

  it('masks them in every other message relayed to the agent: progress, an elicitation, a sampling prompt', async () => {
    const token = 'upstream-token-0123456789';
    const asked: JsonRpcResponse[] = [];
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'web',
      capabilities: { tools: {} },
      handle: async (method, params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        const progressToken = (params?.['_meta'] as { progressToken?: unknown } | undefined)?.progressToken;
        options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress: 1, message: `retrying with Bearer ${token}` } });
        const answer = await options?.onServerRequest?.({ jsonrpc: '2.0', id: 'e1', method: 'elicitation/create', params: { message: `Paste the key ${token} here?`, requestedSchema: { type: 'object', properties: {} } } }, new AbortController().signal);
        return { content: [{ type: 'text', text: JSON.stringify(answer ?? null) }] };
      },
    };
    const { engine, connector, registry, configs } = build({ u1: upstream });
    registry.replace(configs.map((config) => ({ ...config, headers: { authorization: `Bearer ${token}` } })), () => undefined);
    const { record } = await open(engine, '2025-06-18', { elicitation: {}, sampling: {} });
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        standalone.push(message);
        // The agent answers what it is asked on its stream.
        if ('id' in message && 'method' in message) queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'm' } }));
        return true;
      },
    });
    const inCall: JsonRpcMessage[] = [];
    const call = req('tools/call', { name: 'web__run', arguments: {}, _meta: { progressToken: 'p-1' } });
    await engine.request(record, call, {
      canStream: true,
      send: (message) => {
        inCall.push(message);
        if ('id' in message && 'method' in message) queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { action: 'decline' } }));
        return true;
      },
    }, 'trace');
    // Session-level: a sampling request tied to no call.
    asked.push({ jsonrpc: '2.0', id: 's1', result: await connector.ask('u1', { jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: `key ${token}` } }], maxTokens: 5 } }) });
    const all = JSON.stringify([...inCall, ...standalone]);
    expect(all).not.toContain(token);
    expect(inCall.find((m) => 'method' in m && m.method === 'notifications/progress')).toMatchObject({ params: { progressToken: 'p-1', message: 'retrying with [redacted]' } });
    expect(inCall.find((m) => 'method' in m && m.method === 'elicitation/create')).toMatchObject({ params: { message: 'Paste the key [redacted] here?' } });
    expect(standalone).toMatchObject([{ method: 'sampling/createMessage', params: { messages: [{ content: { text: 'key [redacted]' } }] } }]);
    expect(asked[0]).toMatchObject({ result: { model: 'm' } });
  });

  it('masks them in an elicitation\'s form and URL and in a sampling request\'s tools, leaving the fields\' names', async () => {
    const token = 'upstream-token-0123456789';
    const requests = [
      { method: 'elicitation/create', params: { message: 'Confirm', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean', title: 'OK', description: `Authorise with Bearer ${token}?` } } } } },
      { method: 'elicitation/create', params: { mode: 'url', elicitationId: 'el-1', url: `https://upstream.example/connect?api_key=${token}`, message: 'Connect your account' } },
      { method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }], maxTokens: 5, tools: [{ name: 'fetch', description: `Calls the API with Bearer ${token}`, inputSchema: { type: 'object' } }] } },
    ];
    const upstream: FakeUpstream & { prefix: string } = {
      prefix: 'web',
      capabilities: { tools: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        for (const [index, asked] of requests.entries()) await options?.onServerRequest?.({ jsonrpc: '2.0', id: `r${index}`, ...asked }, new AbortController().signal);
        return { content: [] };
      },
    };
    const { engine, registry, configs } = build({ u1: upstream });
    registry.replace(configs.map((config) => ({ ...config, headers: { authorization: `Bearer ${token}` } })), () => undefined);
    const { record } = await open(engine, '2025-11-25', { elicitation: { form: {}, url: {} }, sampling: { tools: {} } });
    const inCall: JsonRpcMessage[] = [];
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {} }), {
      canStream: true,
      send: (message) => {
        inCall.push(message);
        if ('id' in message && 'method' in message) {
          const result = message.method === 'elicitation/create' ? { action: 'decline' } : { role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'm' };
          queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result }));
        }
        return true;
      },
    }, 'trace');
    const relayed = inCall.filter((m) => 'method' in m && m.method !== 'notifications/progress');
    expect(relayed).toHaveLength(3);
    expect(JSON.stringify(relayed)).not.toContain(token);
    expect(relayed[0]).toMatchObject({ params: { requestedSchema: { properties: { ok: { type: 'boolean', title: 'OK', description: 'Authorise with [redacted]?' } } } } });
    expect(relayed[1]).toMatchObject({ params: { mode: 'url', elicitationId: 'el-1', message: 'Connect your account' } });
    expect(relayed[2]).toMatchObject({ params: { tools: [{ name: 'fetch', description: 'Calls the API with [redacted]' }] } });
  });
});

// Found by re-review: the replica's route budget took a session's routes within a second of its last walk, and a read
// of a URI its upstream lists was refused (or sent to another upstream's template) without a walk.
describe('SessionEngine: routes the replica budget took for other sessions', () => {
  it('a URI the upstream lists is still read after other sessions took its route (within a second of the walk)', async () => {
    const up = bigLister('ok');
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('r', 'r')], () => undefined);
    const engine = makeEngine({ registry, connector: new FakeConnector({ r: up }), sessions: new MemorySessionStore(), options: { listTimeoutMs: 200 } });
    const first = await openSession(engine);
    // A read of a URI not yet routed walks the listings (a complete walk).
    const before = await engine.request(first.record, req('resources/read', { uri: bigUri(5) }), NO_STREAM, 'trace');
    expect('result' in before).toBe(true);
    // The rest happens within the second after that walk (the time frozen so that a slow machine shows the same).
    const frozen = performance.now();
    const clock = vi.spyOn(performance, 'now').mockReturnValue(frozen);
    try {
      await listFromOtherSessions(engine);
      const read: JsonRpcResponse = await engine.request(first.record, req('resources/read', { uri: bigUri(6) }), NO_STREAM, 'trace');
      expect('error' in read ? read.error.code : 'read').toBe('read');
    } finally {
      clock.mockRestore();
    }
  }, 60_000);

  it('a URI one upstream lists is read from it, not from another upstream whose template matches it, after other sessions took its route', async () => {
    const lister = bigLister('from r, which lists it');
    const templated: FakeUpstream & { prefix: string } = {
      prefix: 't',
      capabilities: { resources: {} },
      handle: async (method, params) => {
        if (method === 'resources/list') return { resources: [] };
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: 'mem://big/{id}/{rest}', name: 'any' }] };
        if (method === 'resources/read') return { contents: [{ uri: params?.['uri'], text: 'from t, a template' }] };
        return {};
      },
    };
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('r', 'r'), fakeConfig('t', 't')], () => undefined);
    const engine = makeEngine({ registry, connector: new FakeConnector({ r: lister, t: templated }), sessions: new MemorySessionStore(), options: { listTimeoutMs: 200 } });
    const first = await openSession(engine);
    const before = await engine.request(first.record, req('resources/read', { uri: bigUri(5) }), NO_STREAM, 'trace');
    expect(before).toMatchObject({ result: { contents: [{ text: 'from r, which lists it' }] } });
    const frozen = performance.now();
    const clock = vi.spyOn(performance, 'now').mockReturnValue(frozen);
    try {
      await listFromOtherSessions(engine);
      // The agent lists the templates again (its template routes learned afresh, as the newest).
      await engine.request(first.record, req('resources/templates/list'), NO_STREAM, 'trace');
      const read = await engine.request(first.record, req('resources/read', { uri: bigUri(6) }), NO_STREAM, 'trace');
      const contents = 'result' in read ? (read.result['contents'] as { text: string }[]) : [];
      expect(contents[0]?.text).toBe('from r, which lists it');
    } finally {
      clock.mockRestore();
    }
  }, 60_000);
});

// Found by re-review: a session whose only route was an empty URI stayed among the budget's holders after it ended.
describe('SessionEngine: the route budget after sessions end', () => {
  it('keep no route table among the replica budget\'s holders (an upstream listing a resource with an empty URI)', async () => {
    const up: FakeUpstream & { prefix: string } = {
      prefix: 'r',
      capabilities: { resources: {} },
      handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: '', name: 'empty' }] } : { resourceTemplates: [] }),
    };
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('r', 'r')], () => undefined);
    const engine = makeEngine({ registry, connector: new FakeConnector({ r: up }), sessions: new MemorySessionStore(), options: { listTimeoutMs: 200 } });
    for (let i = 0; i < 20; i += 1) {
      const { record } = await openSession(engine);
      await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
      await engine.end(record, 'trace');
    }
    const budget = (engine as unknown as { routeBudget: { keyChars: number; holders: number } }).routeBudget;
    expect([budget.keyChars, budget.holders]).toEqual([0, 0]);
  });
});

describe('SessionEngine: what an upstream may have relayed to the agent', () => {
  const log = (data: string): JsonRpcNotification => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data } });

  it('is bounded per upstream (1,000 at once, 200 a second after), warned of once; another upstream keeps its own', async () => {
    const lines: string[] = [];
    const logger = createLogger({ service: 'spec', level: 'warn', destination: { write: (line: string) => void lines.push(line) } });
    const listing = (prefix: string): FakeUpstream & { prefix: string } => ({ prefix, capabilities: { tools: {}, logging: {} }, handle: async () => ({ tools: [] }) });
    const { engine, connector } = build({ u1: listing('a'), u2: listing('b') }, { logger });
    const { record } = await open(engine);
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(standalone));
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0 && (connector.notificationHandlers.get('u2') ?? []).length > 0).toBe(true);
    const from = (prefix: string) => standalone.filter((m) => 'params' in m && String((m.params as { data?: unknown }).data).startsWith(prefix)).length;

    const began = performance.now();
    for (let i = 0; i < 5_000; i += 1) connector.emit('u1', log(`one ${i}`));
    // The burst, and what the bucket refilled while the loop ran (at 200 a second).
    const looped = performance.now() - began;
    expect(from('one')).toBeGreaterThanOrEqual(1_000);
    expect(from('one')).toBeLessThanOrEqual(1_000 + Math.ceil(looped / 5) + 1);
    for (let i = 0; i < 10; i += 1) connector.emit('u2', log(`two ${i}`));
    expect(from('two')).toBe(10);
    const warnings = lines.filter((line) => line.includes('dropped'));
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0] as string)).toMatchObject({ upstreamId: 'u1', dropped: 1 });

    // A tenth of a second on (or more: timers are late under load): 200 a second of it, no more. The bucket has been
    // refilling since the first loop's last message, not since the checks above (slow under the full suite's load).
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (let i = 0; i < 500; i += 1) connector.emit('u1', log(`later ${i}`));
    const waited = performance.now() - (began + looped);
    expect(from('later')).toBeGreaterThanOrEqual(15);
    expect(from('later')).toBeLessThanOrEqual(Math.ceil(waited / 5) + 1);
    expect(lines.filter((line) => line.includes('dropped'))).toHaveLength(1);
  });

  it("takes nothing of the bound for what is dropped anyway: log messages under the agent's level, another request's progress", async () => {
    const chatty: FakeUpstream & { prefix: string } = {
      prefix: 'job',
      capabilities: { tools: {}, logging: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        if (method !== 'tools/call') return {};
        for (let i = 0; i < 3_000; i += 1) {
          options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'debug', data: `noise ${i}` } });
          options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'not-this-call', progress: i } });
        }
        for (let i = 0; i < 5; i += 1) options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: `said ${i}` } });
        return { content: [] };
      },
    };
    const { engine } = build({ u1: chatty });
    const { record } = await open(engine);
    expect(await engine.request(record, req('logging/setLevel', { level: 'warning' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const current = (await engine.session(record.id, { kind: record.principalKind, id: record.principalId, tenantId: record.tenantId } as never)) ?? record;
    const seen: JsonRpcMessage[] = [];
    await engine.request(current, req('tools/call', { name: 'job__run', arguments: {}, _meta: { progressToken: 'tok' } }), sinkOf(seen), 'trace');
    expect(seen.map((m) => ('params' in m ? (m.params as { data?: unknown }).data : undefined))).toEqual(['said 0', 'said 1', 'said 2', 'said 3', 'said 4']);
  });

  it('is bounded for a call too: progress streamed faster than that is dropped, the answer is not', async () => {
    const chatty: FakeUpstream & { prefix: string } = {
      prefix: 'job',
      capabilities: { tools: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
        for (let i = 1; i <= 3_000; i += 1) options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'tok', progress: i } });
        return { content: [{ type: 'text', text: 'done' }] };
      },
    };
    const { engine } = build({ u1: chatty });
    const { record } = await open(engine);
    const seen: JsonRpcMessage[] = [];
    const began = performance.now();
    const answer = await engine.request(record, req('tools/call', { name: 'job__run', arguments: {}, _meta: { progressToken: 'tok' } }), sinkOf(seen), 'trace');
    const took = performance.now() - began;
    expect(resultOf(answer)).toMatchObject({ content: [{ text: 'done' }] });
    // The burst, and what refilled meanwhile (200 a second).
    expect(seen.length).toBeGreaterThanOrEqual(1_000);
    expect(seen.length).toBeLessThanOrEqual(1_000 + Math.ceil(took / 5) + 1);
    // In order, none twice (those past the burst came as the bucket refilled).
    const progress = seen.map((m) => ('params' in m ? (m.params as { progress?: number }).progress : undefined) as number);
    expect(progress.slice(0, 1_000)).toEqual(Array.from({ length: 1_000 }, (_, i) => i + 1));
    expect(progress.every((value, i) => i === 0 || value > (progress[i - 1] as number))).toBe(true);
  });
});

/**
 * An upstream listing the resources `uris` and the templates `templates`, whose reads answer with the URI read and who
 * served it.
 */
const listing = (who: string, uris: readonly string[], templates: readonly string[] = []): FakeUpstream => ({
  capabilities: { resources: { listChanged: true } },
  handle: async (method, params) =>
    method === 'resources/list'
      ? { resources: uris.map((uri) => ({ uri, name: uri })) }
      : method === 'resources/read'
        ? { contents: [{ uri: params?.['uri'], text: `served by ${who}` }] }
        : { resourceTemplates: templates.map((uriTemplate) => ({ uriTemplate, name: uriTemplate })) },
});

/** A session of an engine over `upstreams` (u1 with prefix a, u2 with b, …), and who served its reads. */
async function resourceSession(...upstreams: FakeUpstream[]) {
  const registry = new UpstreamRegistry('__');
  registry.replace(upstreams.map((_, index) => fakeConfig(`u${index + 1}`, String.fromCharCode(97 + index))), () => undefined);
  const connector = new FakeConnector(Object.fromEntries(upstreams.map((upstream, index) => [`u${index + 1}`, upstream])));
  const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore(), options: { listTimeoutMs: 300 } });
  const { record } = await openSession(engine);
  const read = (uri: string) => engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace');
  const readers = () => connector.calls.filter((call) => call.method === 'resources/read').map((call) => call.upstreamId);
  return { engine, connector, record, read, readers };
}

describe('resources an upstream lists with URIs outside the normal form', () => {
  // The read check refuses URIs an upstream could resolve to another resource than policy matched; a URI exactly as an
  // upstream listed it is that upstream's own name for the resource, and is read. Before, these were listed and could
  // never be read (found by review).
  for (const uri of ['postgres://app@db.internal:5432/shop/users/schema', 's3://bucket/dir//key', 'https://docs.example.com:443/guide']) {
    it(`reads the listed resource ${uri} from the upstream that listed it`, async () => {
      const { engine, record, read, readers } = await resourceSession(listing('a', [uri]));
      expect(await engine.request(record, req('resources/list'), NO_STREAM, 'trace')).toMatchObject({ result: { resources: [{ uri }] } });
      expect(await read(uri)).toMatchObject({ result: { contents: [{ uri, text: 'served by a' }] } });
      expect(readers()).toEqual(['u1']);
      // The same text unlisted (another user, say) is still refused.
      const other = uri.replace('app@', 'root@').replace('dir//key', 'dir//other').replace(':443/guide', ':443/admin');
      expect(await read(other)).toMatchObject({ error: { code: -32602 } });
    });
  }
});

describe('templates of two upstreams that overlap', () => {
  it('reads a URI from the upstream whose template can expand to it, not the one with more literal text (found by review)', async () => {
    // `{slug}` cannot expand to `guides/intro` (RFC 6570 encodes the `/`); `{+path}` can.
    const { read, readers } = await resourceSession(listing('a', [], ['docs://{slug}.md']), listing('b', [], ['docs://{+path}']));
    expect(await read('docs://guides/intro.md')).toMatchObject({ result: { contents: [{ text: 'served by b' }] } });
    expect(readers()).toEqual(['u2']);
  });

  it('still reads a nested path from a template written loosely when no template can expand to it', async () => {
    const { read, readers } = await resourceSession(listing('a', [], ['file:///{path}']), listing('b', [], ['mem://{key}']));
    expect(await read('file:///srv/a/b.txt')).toMatchObject({ result: { contents: [{ text: 'served by a' }] } });
    expect(readers()).toEqual(['u1']);
  });

  it('reads a query holding "/" from the template whose path it matches, not a two-segment one (found by re-review)', async () => {
    const { read, readers } = await resourceSession(listing('a', [], ['kb://search{?q}']), listing('b', [], ['kb://{space}/{page}']));
    expect(await read('kb://search?q=guides/intro')).toMatchObject({ result: { contents: [{ text: 'served by a' }] } });
    expect(readers()).toEqual(['u1']);
  });
});

describe('a listed resource URI outside the normal form whose route this replica has not learned (found by re-review)', () => {
  const uri = 'postgres://app@db.internal:5432/shop/users/schema';
  // Beside it, a loose template of another upstream that the text matches: never asked for a URI outside the normal form.
  const setup = () => resourceSession(listing('a', [uri]), listing('b', [], ['postgres://{+rest}']));

  it('is read when this replica has not served the listing (the agent listed on another replica)', async () => {
    const { read, readers } = await setup();
    expect(await read(uri)).toMatchObject({ result: { contents: [{ uri, text: 'served by a' }] } });
    expect(readers()).toEqual(['u1']);
  });

  it('is still read after the upstream says its resources changed (it still lists the URI)', async () => {
    const { engine, connector, record, read } = await setup();
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await read(uri)).toMatchObject({ result: { contents: [{ uri, text: 'served by a' }] } });
  });

  it('is refused, not sent to a template, when no upstream lists it', async () => {
    const { read, readers } = await setup();
    expect(await read('postgres://root@db.internal:5432/shop/users/schema')).toMatchObject({ error: { code: -32602 } });
    expect(readers()).toEqual([]);
  });
});

describe('reads of URIs no upstream lists while one upstream fails its listing (found by re-review)', () => {
  it('walk the other upstreams\' listings at most once a second, whether the URI is in normal form or not', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'a'), fakeConfig('u2', 'b')], () => undefined);
    const pages = 5;
    const connector = new FakeConnector({
      u1: {
        capabilities: { resources: {} },
        handle: async (method, params) => {
          if (method === 'resources/list') {
            const page = typeof params?.['cursor'] === 'string' ? Number(params['cursor']) : 0;
            return { resources: [{ uri: `notes://a/${page}`, name: `n${page}` }], ...(page + 1 < pages ? { nextCursor: String(page + 1) } : {}) };
          }
          return method === 'resources/read' ? { contents: [] } : { resourceTemplates: [] };
        },
      },
      // Its listing fails (its backend down): no walk is complete.
      u2: {
        capabilities: { resources: {} },
        handle: async (method) => {
          if (method === 'resources/list') throw new UpstreamRpcError(-32603, 'backend down');
          return { resourceTemplates: [] };
        },
      },
    });
    const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore(), options: { listTimeoutMs: 300 } });
    const { record } = await openSession(engine);
    const listed = () => connector.calls.filter((call) => call.method === 'resources/list' && call.upstreamId === 'u1').length;
    const before = listed();
    for (let i = 0; i < 20; i += 1) {
      const outside = await engine.request(record, req('resources/read', { uri: `file:///srv/public/../secret${i % 2}` }), NO_STREAM, 'trace');
      expect(outside).toMatchObject({ error: { code: -32602 } });
      const unknown = await engine.request(record, req('resources/read', { uri: `notes://nobody/${i}` }), NO_STREAM, 'trace');
      expect(unknown).toMatchObject({ error: { code: -32002 } });
    }
    // Forty reads well within a second: one walk (five pages), two at most; each read walking again asked for 200 pages.
    expect(listed() - before).toBeLessThanOrEqual(2 * pages);
  });
});
