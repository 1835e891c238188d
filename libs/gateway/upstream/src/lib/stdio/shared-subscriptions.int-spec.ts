/**
 * Subscriptions of sessions sharing one stdio process (SharedUpstreamState): a subscribe and an unsubscribe of one
 * session in flight together leave no phantom subscriber (the process unsubscribed, yet the session counted as
 * subscribed, so a later session's subscribe was answered here and never reached it); the last session holding a
 * subscription leaving a process that runs on unsubscribes it, also when it leaves (or is ended, its calls aborted first)
 * before the process answered its subscribe, however many sessions did so. Subscribes under way are counted per
 * request: one of two given up leaves the other's success counted. A question the process asks while it handles a
 * subscribe goes to the subscribe's own caller.
 */
import type { JsonRpcRequest } from '@portcullis/gateway/mcp';
import { fileURLToPath } from 'node:url';
import type { JsonRpcNotification, UpstreamConnector, UpstreamSession } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, upstreamConfig, waitFor } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const fixture = fileURLToPath(new URL('../../test-fixtures/stdio-fixture-server.mjs', import.meta.url));

/** The connectors and sessions a test opens, closed after each test of the describe block that calls it. */
function closedAfterEach(): { connectors: UpstreamConnector[]; sessions: UpstreamSession[] } {
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];
  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((s) => s.close()));
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });
  return { connectors, sessions };
}

describe('a shared stdio process: a subscribe and an unsubscribe of one session in flight together', () => {
  const { connectors, sessions } = closedAfterEach();

  it('leaves no phantom subscriber: a later session\'s subscribe reaches the process and it hears of updates', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: {} });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    const b = await c.connect(config, { ...identity, principal: 'tenant:agent_client:two' });
    sessions.push(a, b);
    const seenByB: JsonRpcNotification[] = [];
    b.onNotification((n) => void seenByB.push(n));
    const state = async () => ((await a.request('tools/call', { name: 'state', arguments: {} }))['structuredContent'] as { subscribed: string[]; calls: string[] });

    // Session A subscribes and, before the answer, unsubscribes (the agent changed its mind): both go to the process.
    await Promise.all([a.request('resources/subscribe', { uri: 'mem://x' }), a.request('resources/unsubscribe', { uri: 'mem://x' })]);
    expect((await state()).subscribed).toEqual([]);
    // Session B (another principal) subscribes to the same resource: the process must be subscribed for it.
    await b.request('resources/subscribe', { uri: 'mem://x' });
    const after = await state();
    // A's subscribe answered after its unsubscribe was sent: the process is told once more (a server that handles
    // requests concurrently may have run the unsubscribe first), and B's subscribe reaches it after that.
    expect(after.calls).toEqual(['subscribe mem://x', 'unsubscribe mem://x', 'unsubscribe mem://x', 'subscribe mem://x']);
    expect(after.subscribed).toEqual(['mem://x']);
    await a.request('tools/call', { name: 'touch', arguments: { uri: 'mem://x' } });
    await waitFor(() => seenByB.some((n) => n.method === 'notifications/resources/updated'), 1_000);
  });

  it('unsubscribes the process when the last session holding a subscription leaves it running (ADR 0008: "unsubscribed when the last leaves")', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: {} });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    sessions.push(a);
    const pidOf = async (s: UpstreamSession) => ((await s.request('tools/call', { name: 'pid', arguments: {} }))['structuredContent'] as { pid: number }).pid;
    const pid = await pidOf(a);
    await a.request('resources/subscribe', { uri: 'mem://secret-of-a' });
    await a.close();
    // Another principal's session comes to the process while it still runs.
    const d = await c.connect(config, { ...identity, principal: 'tenant:agent_client:two' });
    sessions.push(d);
    expect(await pidOf(d)).toBe(pid);
    const seenByD: JsonRpcNotification[] = [];
    d.onNotification((n) => void seenByD.push(n));
    const state = (await d.request('tools/call', { name: 'state', arguments: {} }))['structuredContent'] as { subscribed: string[]; calls: string[] };
    expect(state.calls).toContain('unsubscribe mem://secret-of-a');
    expect(state.subscribed).toEqual([]);
  });
});

describe('a shared stdio process, one session subscribing twice and giving up the first', () => {
  const { connectors, sessions } = closedAfterEach();

  it('still counts the session whose second subscribe succeeded: it hears of updates', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: { FIXTURE_SLOW_SUBSCRIBE_MS: '300' } });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    const b = await c.connect(config, { ...identity, principal: 'tenant:agent_client:two' });
    sessions.push(a, b);
    const seenByA: JsonRpcNotification[] = [];
    a.onNotification((n) => void seenByA.push(n));
    await b.request('tools/call', { name: 'state', arguments: {} }); // the process is up

    const first = new AbortController();
    const one = a.request('resources/subscribe', { uri: 'mem://x' }, { signal: first.signal });
    const two = a.request('resources/subscribe', { uri: 'mem://x' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    first.abort(new Error('the agent cancelled it'));
    await expect(one).rejects.toBeDefined();
    await expect(two).resolves.toEqual({});
    const state = (await b.request('tools/call', { name: 'state', arguments: {} }))['structuredContent'] as { subscribed: string[] };
    expect(state.subscribed).toEqual(['mem://x']);

    await b.request('tools/call', { name: 'touch', arguments: { uri: 'mem://x' } });
    await waitFor(() => seenByA.some((n) => n.method === 'notifications/resources/updated'), 1_000);
  });
});

describe('a shared stdio process, sessions leaving before their subscribes are answered', () => {
  const { connectors, sessions } = closedAfterEach();
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** A process whose subscribes are taken 300 ms after they arrive, whatever happens meanwhile; `w` watches it. */
  const setup = async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: { FIXTURE_SLOW_SUBSCRIBE_MS: '300' } });
    const connect = (name: string) => c.connect(config, { ...identity, principal: `tenant:agent_client:${name}` });
    const w = await connect('watcher');
    sessions.push(w);
    const state = async () => ((await w.request('tools/call', { name: 'state', arguments: {} }))['structuredContent'] as { subscribed: string[]; calls: string[] });
    await state(); // the process is up
    return { connect, state };
  };

  it('unsubscribes the process once it takes the subscribe, nobody else holding the URI (ADR 0008)', async () => {
    const { connect, state } = await setup();
    const a = await connect('one');
    a.request('resources/subscribe', { uri: 'mem://secret-of-a' }).catch(() => undefined);
    await sleep(50);
    await a.close();
    await waitFor(async () => (await state()).calls.includes('unsubscribe mem://secret-of-a'), 2_000);
    const after = await state();
    expect(after.calls).toEqual(['subscribe mem://secret-of-a', 'unsubscribe mem://secret-of-a']);
    expect(after.subscribed).toEqual([]);
  });

  it('does so for a session the engine ends, which aborts its calls before it closes the upstream session', async () => {
    const { connect, state } = await setup();
    const a = await connect('one');
    const inflight = new AbortController();
    const subscribing = a.request('resources/subscribe', { uri: 'mem://secret-of-a' }, { signal: inflight.signal });
    await sleep(50);
    inflight.abort(new DOMException('session ended', 'AbortError'));
    // The caller stops waiting at once; the process is not told to cancel (it would drop the answer, not the effect).
    await expect(subscribing).rejects.toThrow('session ended');
    await a.close();
    await waitFor(async () => (await state()).calls.includes('unsubscribe mem://secret-of-a'), 2_000);
    expect((await state()).subscribed).toEqual([]);
  });

  it('does so for each of two sessions that left with a subscribe of the same URI under way', async () => {
    const { connect, state } = await setup();
    const a = await connect('one');
    const b = await connect('two');
    a.request('resources/subscribe', { uri: 'mem://x' }).catch(() => undefined);
    await sleep(50);
    await a.close();
    await sleep(50);
    b.request('resources/subscribe', { uri: 'mem://x' }).catch(() => undefined);
    await sleep(50);
    await b.close();
    await waitFor(async () => (await state()).calls.filter((call) => call.startsWith('unsubscribe')).length === 2, 2_000);
    const after = await state();
    // Each subscribe taken is followed by an unsubscribe sent once it was answered, in whatever order the server ran them.
    expect(after.calls).toEqual(['subscribe mem://x', 'subscribe mem://x', 'unsubscribe mem://x', 'unsubscribe mem://x']);
    expect(after.subscribed).toEqual([]);
  });
});

describe('a process serving one session asks the client something while it handles the subscribe', () => {
  const { connectors, sessions } = closedAfterEach();

  // A stdio server that, on resources/subscribe, asks roots/list first and answers the subscribe once it has the roots.
  const server = `
const rl = require('node:readline').createInterface({ input: process.stdin });
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
let pending;
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.method === 'initialize') return send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { resources: { subscribe: true } }, serverInfo: { name: 'asks', version: '1' } } });
  if (m.method === 'resources/subscribe') { pending = m.id; return send({ jsonrpc: '2.0', id: 'roots-1', method: 'roots/list', params: {} }); }
  if (m.id === 'roots-1') return send({ jsonrpc: '2.0', id: pending, ...(m.error ? { error: { code: -32602, message: 'no roots' } } : { result: {} }) });
  if (m.id !== undefined && m.method) send({ jsonrpc: '2.0', id: m.id, result: {} });
});
`;

  it("asks the subscribe's own caller (its stream), as for any other call of the session", async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: ['-e', server], env: {} });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    sessions.push(a);
    const askedVia: string[] = [];
    // The session-level handler: in the engine, the agent's standalone (GET) stream.
    a.onServerRequest(async (request: JsonRpcRequest) => (askedVia.push(`session ${request.method}`), { roots: [] }));
    const result = await a.request('resources/subscribe', { uri: 'file:///p/a.ts' }, {
      onServerRequest: async (request: JsonRpcRequest) => (askedVia.push(`call ${request.method}`), { roots: [{ uri: 'file:///p' }] }),
    });
    expect(result).toEqual({});
    expect(askedVia).toEqual(['call roots/list']);
  });
});

describe('a shared stdio process whose departed session\'s subscribe is still in flight', () => {
  const { connectors, sessions } = closedAfterEach();

  it('gives the remaining session\'s own tool call its sampling request, and never asks the departed session', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: { FIXTURE_SLOW_SUBSCRIBE_MS: '4000' } });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    const b = await c.connect(config, { ...identity, principal: 'tenant:agent_client:two' });
    sessions.push(b);
    const askedA: JsonRpcRequest[] = [];
    a.onServerRequest(async (request) => {
      askedA.push(request);
      return { role: 'assistant', model: 'a', content: { type: 'text', text: 'answer of A' } };
    });
    // A subscribes (the process takes 4 s to answer) and leaves meanwhile: the subscribe outlives it.
    void a.request('resources/subscribe', { uri: 'mem://x' }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await a.close();
    // B, alone on the process now, calls a tool that asks its agent. Counted as an agent's call, the departed
    // subscribe made B's question ambiguous: refused (-32603).
    const result = await b.request('tools/call', { name: 'ask', arguments: { question: 'q' } }, {
      onServerRequest: async () => ({ role: 'assistant', model: 'b', content: { type: 'text', text: 'answer of B' } }),
    });
    expect(askedA).toEqual([]);
    expect(result['content']).toEqual([{ type: 'text', text: 'answer of B' }]);
  }, 20_000);
});

describe('a shared stdio process asking about a departed session\'s subscribe', () => {
  const { connectors, sessions } = closedAfterEach();
  // On resources/subscribe: 300 ms later, asks the client to sample a summary of the subscribed URI, then answers.
  const asksOnSubscribe = `
const rl = require('node:readline').createInterface({ input: process.stdin });
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const pending = new Map();
let n = 0;
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.method === 'initialize') return send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { resources: { subscribe: true } }, serverInfo: { name: 'asks', version: '1' } } });
  if (m.method === 'resources/subscribe') {
    const ask = 'ask-' + (++n);
    pending.set(ask, m.id);
    setTimeout(() => send({ jsonrpc: '2.0', id: ask, method: 'sampling/createMessage', params: { maxTokens: 10, messages: [{ role: 'user', content: { type: 'text', text: 'Summarise ' + m.params.uri } }] } }), 300);
    return;
  }
  if (m.id !== undefined && !m.method && pending.has(m.id)) { const id = pending.get(m.id); pending.delete(m.id); return send({ jsonrpc: '2.0', id, result: {} }); }
  if (m.id !== undefined && m.method) send({ jsonrpc: '2.0', id: m.id, result: {} });
});
`;

  it('does not ask the other principal left on the process: the question may be the departed one\'s', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: ['-e', asksOnSubscribe], env: {} });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    const b = await c.connect(config, { ...identity, principal: 'tenant:agent_client:two' });
    sessions.push(b);
    const askedB: JsonRpcRequest[] = [];
    b.onServerRequest(async (request) => {
      askedB.push(request);
      return { role: 'assistant', model: 'b', content: { type: 'text', text: 'answer of B' } };
    });
    a.onServerRequest(async () => ({ role: 'assistant', model: 'a', content: { type: 'text', text: 'answer of A' } }));
    // A subscribes to its own resource and leaves before the process asks about it. Left out of the count, its
    // subscribe made the question go to the one session left (an earlier form of the fix): B saw A's URI.
    void a.request('resources/subscribe', { uri: 'file:///home/one/secret-plan.md' }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await a.close();
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(askedB.map((request) => JSON.stringify(request.params))).toEqual([]);
  }, 20_000);
});

const asksRootsOnInitialized = `
const rl = require('node:readline').createInterface({ input: process.stdin });
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
let rootsAnswer = null;
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.method === 'initialize') return send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { logging: {}, tools: {} }, serverInfo: { name: 'roots', version: '1' } } });
  if (m.method === 'notifications/initialized') return send({ jsonrpc: '2.0', id: 'roots-' + process.pid, method: 'roots/list' });
  if (m.id !== undefined && !m.method) { rootsAnswer = m; return; }
  if (m.method === 'tools/call' && m.params.name === 'die') process.exit(1);
  if (m.method === 'tools/call' && m.params.name === 'roots') return send({ jsonrpc: '2.0', id: m.id, result: { content: [], structuredContent: { pid: process.pid, answer: rootsAnswer } } });
  if (m.id !== undefined && m.method) send({ jsonrpc: '2.0', id: m.id, result: {} });
});
`;

describe('one session on a stdio process that restarts while it holds a log level', () => {
  const { connectors, sessions } = closedAfterEach();

  // The restarted process is told the level again (its own logging/setLevel) right after notifications/initialized,
  // when a server like the reference filesystem one asks for the roots: with the process's own call in flight, an
  // earlier form of the attribution fix refused the question ("ambiguous").
  it('answers the roots/list the restarted process asks on notifications/initialized (the one session\'s)', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: ['-e', asksRootsOnInitialized], env: {} });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    sessions.push(a);
    const asked: JsonRpcRequest[] = [];
    a.onServerRequest(async (request) => {
      asked.push(request);
      return { roots: [{ uri: 'file:///home/one', name: 'one' }] };
    });
    const roots = async () => (await a.request('tools/call', { name: 'roots', arguments: {} }))['structuredContent'] as { pid: number; answer: Record<string, unknown> | null };
    await a.request('logging/setLevel', { level: 'debug' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const first = await roots();
    await a.request('tools/call', { name: 'die', arguments: {} }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The next call waits for the restart (and its replay of the level), then reads what the new process was answered.
    await roots();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await roots();
    expect(second.pid).not.toBe(first.pid);
    expect(second.answer?.['error']).toBeUndefined();
    expect(second.answer?.['result']).toEqual({ roots: [{ uri: 'file:///home/one', name: 'one' }] });
  }, 20_000);
});
