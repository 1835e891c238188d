/**
 * Subscriptions of sessions sharing one stdio process (SharedUpstreamState): a subscribe and an unsubscribe of one
 * session in flight together leave no phantom subscriber (the process unsubscribed, yet the session counted as
 * subscribed, so a later session's subscribe was answered here and never reached it); the last session holding a
 * subscription leaving a process that runs on unsubscribes it, also when it leaves before the process answered its
 * subscribe. Subscribes under way are counted per request: one of two given up leaves the other's success counted.
 */
import { fileURLToPath } from 'node:url';
import type { JsonRpcNotification, UpstreamConnector, UpstreamSession } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, upstreamConfig, waitFor } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const fixture = fileURLToPath(new URL('../../test-fixtures/stdio-fixture-server.mjs', import.meta.url));

describe('a shared stdio process: a subscribe and an unsubscribe of one session in flight together', () => {
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];
  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((s) => s.close()));
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });

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
    expect(after.calls).toEqual(['subscribe mem://x', 'unsubscribe mem://x', 'subscribe mem://x']);
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
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];
  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((s) => s.close()));
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });

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

describe('a shared stdio process, a session leaving before its subscribe is answered', () => {
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];
  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((s) => s.close()));
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });

  it('unsubscribes the process once it takes the subscribe, nobody else holding the URI (ADR 0008)', async () => {
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500 });
    connectors.push(c);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: { FIXTURE_SLOW_SUBSCRIBE_MS: '300' } });
    const a = await c.connect(config, { ...identity, principal: 'tenant:agent_client:one' });
    const b = await c.connect(config, { ...identity, principal: 'tenant:agent_client:two' });
    sessions.push(b);
    const state = async () => ((await b.request('tools/call', { name: 'state', arguments: {} }))['structuredContent'] as { subscribed: string[]; calls: string[] });
    await state(); // the process is up

    // The fixture takes a subscribe 300 ms after it arrives, whatever happens meanwhile (a cancellation included).
    const subscribing = a.request('resources/subscribe', { uri: 'mem://secret-of-a' });
    subscribing.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await a.close();
    await waitFor(async () => (await state()).calls.includes('unsubscribe mem://secret-of-a'), 2_000);
    const after = await state();
    expect(after.calls).toEqual(['subscribe mem://secret-of-a', 'unsubscribe mem://secret-of-a']);
    expect(after.subscribed).toEqual([]);
  });
});
