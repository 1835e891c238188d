import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  UpstreamRpcError,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type UpstreamConnector,
  type UpstreamSession,
} from '@portcullis/gateway/mcp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  identity,
  recordingLogger,
  textOf,
  upstreamConfig,
  waitFor,
} from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector, type UpstreamConnectorOptions } from '../upstream-connector';

const demoStdio = fileURLToPath(
  new URL('../../../../../../dist/apps/demo-upstreams/stdio.js', import.meta.url),
);
const fixture = fileURLToPath(new URL('../../test-fixtures/stdio-fixture-server.mjs', import.meta.url));

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('stdio upstreams', () => {
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];
  const connector = (options: Partial<UpstreamConnectorOptions> = {}) => {
    const created = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      stdioRestartBackoffMs: { initial: 20, max: 200 },
      stdioKillGraceMs: 500,
      ...options,
    });
    connectors.push(created);
    return created;
  };
  async function open(
    c: UpstreamConnector,
    config = fixtureConfig(),
    principal?: string,
  ): Promise<UpstreamSession & { pid?: number }> {
    const session = await c.connect(config, principal === undefined ? identity : { ...identity, principal });
    sessions.push(session);
    return session as UpstreamSession & { pid?: number };
  }
  /** Sessions of two principals (alice, bob) on one fixture process, and the notifications bob receives. */
  async function aliceAndBobOnOneProcess() {
    const c = connector({ maxStdioProcessesPerUpstream: 1 });
    const config = fixtureConfig();
    const alice = await open(c, config, 'tenant-test:agent_client:alice');
    const bob = await open(c, config, 'tenant-test:agent_client:bob');
    const heardByBob: JsonRpcNotification[] = [];
    bob.onNotification((n) => void heardByBob.push(n));
    return { alice, bob, heardByBob };
  }
  /** Two sessions sharing one fixture process, and the notifications each receives. */
  async function twoSessionsOnOneProcess(env: Record<string, string> = {}) {
    const c = connector({ maxStdioProcessesPerUpstream: 1 });
    const config = fixtureConfig(env);
    const a = await open(c, config);
    const b = await open(c, config);
    const seenByA: JsonRpcNotification[] = [];
    const seenByB: JsonRpcNotification[] = [];
    a.onNotification((n) => void seenByA.push(n));
    b.onNotification((n) => void seenByB.push(n));
    return { a, b, seenByA, seenByB };
  }
  const call = async (session: UpstreamSession, name: string, args: Record<string, unknown> = {}) =>
    session.request('tools/call', { name, arguments: args });
  const pidOf = async (session: UpstreamSession): Promise<number> =>
    ((await call(session, 'pid'))['structuredContent'] as { pid: number }).pid;

  function fixtureConfig(env: Record<string, string> = {}, overrides = {}) {
    return upstreamConfig('stdio', { command: process.execPath, args: [fixture], env, ...overrides });
  }

  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((s) => s.close()));
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });

  describe('the demo kitchen-sink server (built stdio.js)', () => {
    let shared: UpstreamConnector;
    let session: UpstreamSession;
    beforeAll(async () => {
      if (!existsSync(demoStdio))
        throw new Error('dist/apps/demo-upstreams/stdio.js is missing: run `npx nx build demo-upstreams`');
      shared = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000 });
      session = await shared.connect(
        upstreamConfig('stdio', { command: process.execPath, args: [demoStdio, 'kitchen-sink'] }),
        identity,
      );
    });
    afterAll(() => shared.shutdown());

    it('initialises, lists and calls tools', async () => {
      expect(session.info.serverInfo.name).toBe('portcullis-demo-kitchen-sink');
      expect(session.info.capabilities).toHaveProperty('tools');
      const { tools } = (await session.request('tools/list', {})) as { tools: { name: string }[] };
      expect(tools.map((t) => t.name)).toContain('slow_count');
      expect(textOf(await call(session, 'echo', { message: 'over stdio' }))).toBe('over stdio');
    });

    it('passes JSON-RPC errors through', async () => {
      await expect(session.request('no/such-method', {})).rejects.toBeInstanceOf(UpstreamRpcError);
    });

    it('delivers progress, and cancels mid-call', async () => {
      const progress: JsonRpcNotification[] = [];
      await session.request(
        'tools/call',
        { name: 'slow_count', arguments: { steps: 2, interval_ms: 5 }, _meta: { progressToken: 42 } },
        {
          onNotification: (n) => (n.method === 'notifications/progress' ? void progress.push(n) : undefined),
        },
      );
      expect(progress.map((n) => n.params?.['progressToken'])).toEqual([42, 42]);
      const controller = new AbortController();
      const slow = session.request(
        'tools/call',
        { name: 'slow_count', arguments: { steps: 100, interval_ms: 20 }, _meta: { progressToken: 'p' } },
        { signal: controller.signal, onNotification: () => controller.abort(new Error('stop')) },
      );
      await expect(slow).rejects.toThrow('stop');
      expect(textOf(await call(session, 'echo', { message: 'still fine' }))).toBe('still fine');
    });

    it('round-trips sampling and elicitation', async () => {
      const onServerRequest = async (request: JsonRpcRequest): Promise<Record<string, unknown>> =>
        request.method === 'sampling/createMessage'
          ? { role: 'assistant', content: { type: 'text', text: 'stdio summary' }, model: 'm' }
          : { action: 'decline' };
      const summary = await session.request(
        'tools/call',
        { name: 'summarize_with_llm', arguments: { text: 't' } },
        { onServerRequest },
      );
      expect(summary['structuredContent']).toEqual({ summary: 'stdio summary', model: 'm' });
      const declined = await session.request(
        'tools/call',
        { name: 'confirm_action', arguments: { action: 'x' } },
        { onServerRequest },
      );
      expect(declined['structuredContent']).toEqual({ action: 'x', outcome: 'declined' });
    });
  });

  it('gives the child exactly the configured environment, never the gateway’s', async () => {
    process.env['PORTCULLIS_TEST_CANARY'] = 'gateway-secret';
    try {
      const session = await open(connector(), fixtureConfig({ FIXTURE_MARKER: 'configured' }));
      const { env } = (await call(session, 'env'))['structuredContent'] as { env: Record<string, string> };
      expect(env['FIXTURE_MARKER']).toBe('configured');
      expect(env['PORTCULLIS_TEST_CANARY']).toBeUndefined();
      expect(env['PATH']).toBeUndefined();
    } finally {
      delete process.env['PORTCULLIS_TEST_CANARY'];
    }
  });

  it('runs stdio servers as the configured user, who cannot read the gateway\u2019s environment (its secrets)', async () => {
    const nobody = { uid: 65534, gid: 65534 };
    if (process.getuid?.() !== 0) {
      // Only root can start a process as another user: a gateway that cannot is refused the connect, not run as itself.
      await expect(open(connector({ stdioRunAs: nobody }))).rejects.toMatchObject({ reason: 'connect_failed' });
      return;
    }
    const peek = async (session: UpstreamSession) => (await call(session, 'peek'))['structuredContent'] as { uid: number; readable: boolean };
    // As the gateway's own user, a server reads /proc/<gateway>/environ: the keyring, the database URL.
    expect(await peek(await open(connector()))).toEqual({ uid: 0, readable: true });
    expect(await peek(await open(connector({ stdioRunAs: nobody })))).toEqual({ uid: 65534, readable: false });
  });

  it('gives each stdio server a user id of its own from the range: none reads another\'s environment; ids go back on exit', async () => {
    const range = { first: 200_100, last: 200_101 };
    const logger = recordingLogger();
    if (process.getuid?.() !== 0) {
      await expect(open(connector({ stdioUidRange: range, logger }))).rejects.toMatchObject({ reason: 'connect_failed' });
      return;
    }
    // Stopped after 1.5 s without traffic: the ids then go back.
    const c = connector({ stdioUidRange: range, logger, stdioIdleMs: 1_500 });
    const one = await open(c, fixtureConfig({ SECRET: 'one' }));
    const two = await open(c, fixtureConfig({ SECRET: 'two' }));
    const [pidOne, pidTwo] = [await pidOf(one), await pidOf(two)];
    const peek = async (session: UpstreamSession, pid: number) => (await call(session, 'peek', { pid }))['structuredContent'] as { uid: number; readable: boolean };
    const seenByOne = await peek(one, pidTwo);
    const seenByTwo = await peek(two, pidOne);
    expect(seenByOne.readable).toBe(false);
    expect(seenByTwo.readable).toBe(false);
    expect(new Set([seenByOne.uid, seenByTwo.uid])).toEqual(new Set([range.first, range.last]));
    // Each has a home of its own, only its user may enter, that goes when it exits.
    const envOf = async (session: UpstreamSession) => ((await call(session, 'env'))['structuredContent'] as { env: Record<string, string> }).env;
    const homeOne = (await envOf(one))['HOME'] as string;
    expect(homeOne.startsWith(path.join(tmpdir(), `pcs-stdio-${range.first}-${range.last}`, 'home-'))).toBe(true);
    expect((await envOf(one))['TMPDIR']).toBe(homeOne);
    expect(statSync(homeOne)).toMatchObject({ uid: seenByOne.uid, gid: seenByOne.uid });
    expect(statSync(homeOne).mode & 0o777).toBe(0o700);
    const homeTwo = (await envOf(two))['HOME'] as string;
    expect(homeTwo).not.toBe(homeOne);
    // Every id in use: a third server does not start (rather than share one), and the log says why. Not its upstream's
    // failure: however often it is tried, its circuit stays closed (five failures would open it).
    const thirdConfig = fixtureConfig();
    for (let attempt = 0; attempt < 6; attempt += 1) {
      await expect(open(c, thirdConfig)).rejects.toMatchObject({ reason: 'connect_failed' });
    }
    expect(logger.entries.some((entry) => entry.message.includes('no free user id for a stdio server'))).toBe(true);
    // Once both were stopped for idleness their ids are free again.
    await waitFor(() => !isAlive(pidOne) && !isAlive(pidTwo), 10_000);
    await waitFor(() => !existsSync(homeOne) && !existsSync(homeTwo), 10_000);
    // An id is free a moment after its home is gone (its clearing settles first): under load, that moment can be seen.
    const third = await waitFor(() => open(c, thirdConfig).catch(() => undefined), 10_000);
    expect([range.first, range.last]).toContain((await peek(third, process.pid)).uid);
    await c.shutdown();
    await waitFor(() => readdirSync(path.join(tmpdir(), `pcs-stdio-${range.first}-${range.last}`)).length === 0, 5_000);
    rmSync(path.join(tmpdir(), `pcs-stdio-${range.first}-${range.last}`), { recursive: true, force: true });
  }, 40_000);

  // Only root starts processes as other users: skipped, not passed, otherwise.
  it.runIf(process.getuid?.() === 0)('keeps the last ids of the range from a tenant holding its share: another tenant\'s server still starts', async () => {
    const range = { first: 200_130, last: 200_133 };
    const logger = recordingLogger();
    const c = connector({ stdioUidRange: range, logger });
    const ofTenant = (tenantId: string) => fixtureConfig({}, { tenantId });
    // Tenant a's servers take three of the four ids; the last is kept back from it.
    for (let started = 0; started < 3; started += 1) await open(c, ofTenant('tenant-a'));
    await expect(open(c, ofTenant('tenant-a'))).rejects.toMatchObject({ reason: 'connect_failed' });
    expect(logger.entries.some((entry) => entry.message.includes('holds its share') && entry.fields['tenantHolds'] === 3)).toBe(true);
    // Tenant b's server gets it.
    const other = await open(c, ofTenant('tenant-b'));
    expect(((await call(other, 'peek', { pid: process.pid }))['structuredContent'] as { uid: number }).uid).toBeGreaterThanOrEqual(range.first);
    await c.shutdown();
    rmSync(path.join(tmpdir(), `pcs-stdio-${range.first}-${range.last}`), { recursive: true, force: true });
  }, 40_000);

  // Only root starts processes as other users (the test above covers the refusal): skipped, not passed, otherwise.
  it.runIf(process.getuid?.() === 0)('clears what a server left when its id goes back: its daemonised processes and its files in the shared temporary directories, closed ones too', async () => {
    const range = { first: 200_110, last: 200_110 };
    const c = connector({ stdioUidRange: range, stdioIdleMs: 500 });
    // One gateway's range is its own: another set of ids over it in this process is refused.
    expect(() => connector({ stdioUidRange: { first: 200_109, last: 200_110 } })).toThrow(/overlap/);
    const session = await open(c, fixtureConfig());
    const pid = await pidOf(session);
    const left = (await call(session, 'daemonize'))['structuredContent'] as { pid: number; files: string[]; home: string };
    expect(isAlive(left.pid)).toBe(true);
    for (const file of left.files) expect(statSync(file).uid).toBe(range.first);
    // Stopped for idleness: the server's process group is signalled, which the daemon has left; clearing the id kills it.
    await waitFor(() => !isAlive(pid), 5_000);
    await waitFor(() => !isAlive(left.pid), 5_000);
    await waitFor(() => left.files.every((file) => !existsSync(file)), 5_000);
    // Its home, closed (0500) with a file in it, is gone too, and its id is not retired: the next server gets it.
    await waitFor(() => !existsSync(left.home), 5_000);
    const next = await open(c, fixtureConfig());
    expect(((await call(next, 'peek', { pid: process.pid }))['structuredContent'] as { uid: number }).uid).toBe(range.first);
    await c.shutdown();
    const homes = path.join(tmpdir(), `pcs-stdio-${range.first}-${range.last}`);
    await waitFor(() => readdirSync(homes).length === 0, 5_000);
    rmSync(homes, { recursive: true, force: true });
  }, 15_000);

  it('keeps its processes through an edit that does not change how they start, and replaces them after one that does', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 1 });
    const v1 = fixtureConfig({ FIXTURE_MARKER: 'one' });
    const kept = await open(c, v1);
    const first = await pidOf(kept);
    // A new name and call timeout (version 2): the next session shares the same process (before, a second process
    // started beside the one the kept sessions still used, past the bound).
    expect(await pidOf(await open(c, { ...v1, name: 'renamed', callTimeoutMs: 150, version: 2 }))).toBe(first);
    // The process serves the new settings from now on, for the session opened before the edit too.
    await expect(kept.request('tools/call', { name: 'sleep', arguments: { ms: 1_000 } })).rejects.toMatchObject({ reason: 'timeout' });
    // Another environment (version 3): a new process.
    expect(await pidOf(await open(c, { ...v1, env: { FIXTURE_MARKER: 'two' }, version: 3 }))).not.toBe(first);
  });

  it('multiplexes sessions over one process, keeping ids and progress tokens apart', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 1 });
    const config = fixtureConfig();
    const a = await open(c, config);
    const b = await open(c, config);
    expect(await pidOf(a)).toBe(await pidOf(b));
    const progressA: unknown[] = [];
    const progressB: unknown[] = [];
    const params = { name: 'progress', arguments: { steps: 3 }, _meta: { progressToken: 'same-token' } };
    await Promise.all([
      a.request('tools/call', params, {
        onNotification: (n) => void progressA.push(n.params?.['progressToken']),
      }),
      b.request('tools/call', params, {
        onNotification: (n) => void progressB.push(n.params?.['progressToken']),
      }),
    ]);
    expect(progressA).toEqual(['same-token', 'same-token', 'same-token']);
    expect(progressB).toEqual(['same-token', 'same-token', 'same-token']);
    // closing one session leaves the other working
    await a.close();
    expect(textOf(await call(b, 'pid'))).toMatch(/^\d+$/);
  });

  it('answers a shared process\'s roots/list after a session\'s roots change from that session, never from another\'s call in flight', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 1 });
    const config = fixtureConfig();
    const a = await open(c, config);
    const b = await open(c, config);
    expect(await pidOf(a)).toBe(await pidOf(b));
    const askedA: string[] = [];
    // A has a call in flight that would answer server requests; B's roots change and the server asks for "the" roots.
    const held = a.request('tools/call', { name: 'sleep', arguments: { ms: 400 } }, {
      onServerRequest: async (request) => {
        askedA.push(request.method);
        return { roots: [{ uri: 'file:///home/alice/secret-project', name: 'alice' }] };
      },
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await b.notify('notifications/roots/list_changed');
    await held;
    const answered = (await call(b, 'roots'))['structuredContent'] as { roots: unknown };
    expect(askedA).toEqual([]);
    expect(answered.roots).toEqual({ error: -32603 });
    // With no call in flight, the roots/list after B's change is B's to answer (through its session-level handler), not A's.
    a.onServerRequest(async () => ({ roots: [{ uri: 'file:///home/alice/secret-project', name: 'alice' }] }));
    b.onServerRequest(async () => ({ roots: [{ uri: 'file:///srv/bob', name: 'bob' }] }));
    await b.notify('notifications/roots/list_changed');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(((await call(b, 'roots'))['structuredContent'] as { roots: unknown }).roots).toEqual({ roots: [{ uri: 'file:///srv/bob', name: 'bob' }] });
    // A process with one session still gets that session's answer.
    await a.close();
    const askedB: string[] = [];
    const alone = b.request('tools/call', { name: 'sleep', arguments: { ms: 200 } }, {
      onServerRequest: async (request) => {
        askedB.push(request.method);
        return { roots: [{ uri: 'file:///srv/b', name: 'b' }] };
      },
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await b.notify('notifications/roots/list_changed');
    await alone;
    expect(askedB).toEqual(['roots/list']);
    expect(((await call(b, 'roots'))['structuredContent'] as { roots: unknown }).roots).toEqual({ roots: [{ uri: 'file:///srv/b', name: 'b' }] });
  });

  it('drops progress that matches no call in flight instead of showing it to every session of the process', async () => {
    const { a, seenByA, seenByB } = await twoSessionsOnOneProcess();
    await a.request('tools/call', { name: 'late', arguments: {}, _meta: { progressToken: 'a-token' } });
    // The process reports progress 50 ms after answering; a later call shows it has been read by then.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(textOf(await call(a, 'pid'))).toMatch(/^\d+$/);
    expect(JSON.stringify(seenByB)).not.toContain('secret detail');
    expect(JSON.stringify(seenByA)).not.toContain('secret detail');
  });

  // Found by review: the token a call stood for was forgotten with its answer, so every progress of a task (whose token
  // stays valid for its lifetime, MCP 2025-11-25) was dropped.
  it("passes on a task's progress after its call was answered with the task: to the session that created it, under its own token, and to no other", async () => {
    const { a, seenByA, seenByB } = await twoSessionsOnOneProcess();
    const created = await a.request('tools/call', { name: 'tasked', arguments: {}, task: { ttl: 60_000 }, _meta: { progressToken: 'a-token' } });
    expect(created['task']).toMatchObject({ taskId: 'task-1' });
    await waitFor(() => seenByA.filter((n) => n.method === 'notifications/progress').length === 3, 3_000);
    expect(seenByA.filter((n) => n.method === 'notifications/progress').map((n) => [n.params?.['progressToken'], n.params?.['progress']])).toEqual([
      ['a-token', 1],
      ['a-token', 2],
      ['a-token', 3],
    ]);
    expect(seenByB.filter((n) => n.method === 'notifications/progress')).toEqual([]);
  });

  // Found by review (a call under way) and re-review (a task, a call its agent had cancelled): only the sessions on the
  // process counted, then only calls in flight when the session left, not whose work was still running there.
  it.each<[string, (alice: UpstreamSession) => Promise<{ work?: Promise<unknown> }>]>([
    ['a call still under way', async (alice: UpstreamSession) => {
      const work = alice.request('tools/call', { name: 'worklog', arguments: { ms: 300, query: 'alice-private-query' } }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { work };
    }],
    ['a task it created', async (alice: UpstreamSession) => {
      await alice.request('tools/call', { name: 'taskedlog', arguments: { ms: 300, query: 'alice-task-secret' }, task: { ttl: 60_000 } });
      return {};
    }],
    ['a call its agent cancelled, which the server works on', async (alice: UpstreamSession) => {
      const controller = new AbortController();
      const work = alice.request('tools/call', { name: 'worklog', arguments: { ms: 300, query: 'alice-cancelled-secret' } }, { signal: controller.signal }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
      controller.abort();
      await work;
      return {};
    }],
  ])("keeps from the principal left alone on a process the log messages of %s of another principal's session that left", async (_label, leaveWork) => {
    const { alice, bob, heardByBob } = await aliceAndBobOnOneProcess();
    const { work } = await leaveWork(alice);
    await alice.close();
    await work;
    // The work's log line came by now: a later call of Bob's shows the process was read past it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(textOf(await call(bob, 'pid'))).toMatch(/^\d+$/);
    expect(JSON.stringify(heardByBob)).not.toContain('alice-');
  });

  it("passes the log messages of a restarted process to the principal alone on it: the work others left ended with the old one", async () => {
    const { alice, bob, heardByBob } = await aliceAndBobOnOneProcess();
    const work = alice.request('tools/call', { name: 'worklog', arguments: { ms: 5_000, query: 'alice-long' } }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await alice.close();
    await work;
    await call(bob, 'crash').catch(() => undefined);
    await waitFor(() => call(bob, 'log', { level: 'info', data: 'bob-line' }).then(() => true, () => undefined), 5_000);
    await waitFor(() => heardByBob.some((n) => JSON.stringify(n).includes('bob-line')), 2_000);
  });

  it("passes a process's log messages about its own work to the principal alone on it", async () => {
    const alone = await open(connector({ maxStdioProcessesPerUpstream: 1 }), fixtureConfig(), 'tenant-test:agent_client:bob');
    const heard: JsonRpcNotification[] = [];
    alone.onNotification((n) => void heard.push(n));
    await alone.request('tools/call', { name: 'worklog', arguments: { ms: 10, query: 'bob-query' } });
    await waitFor(() => heard.some((n) => JSON.stringify(n).includes('bob-query')), 2_000);
  });

  it('keeps subscriptions and log levels apart for the sessions sharing one process', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 1 });
    const config = fixtureConfig();
    // Two sessions of one principal (an agent's two connections).
    const a = await open(c, config, 'tenant:agent_client:one');
    const b = await open(c, config, 'tenant:agent_client:one');
    expect(await pidOf(a)).toBe(await pidOf(b));
    const seenByA: JsonRpcNotification[] = [];
    const seenByB: JsonRpcNotification[] = [];
    a.onNotification((n) => void seenByA.push(n));
    b.onNotification((n) => void seenByB.push(n));
    const state = async () => (await call(a, 'state'))['structuredContent'] as { subscribed: string[]; logLevel: string | null; calls: string[] };
    const updates = (seen: JsonRpcNotification[]) => seen.filter((n) => n.method === 'notifications/resources/updated').map((n) => n.params?.['uri']);
    const logs = (seen: JsonRpcNotification[]) => seen.filter((n) => n.method === 'notifications/message').map((n) => n.params?.['data']);

    // Only the session that subscribed hears of the resource; the other's unsubscribe does not end the subscription.
    await a.request('resources/subscribe', { uri: 'mem://hr/salaries' });
    await call(a, 'touch', { uri: 'mem://hr/salaries' });
    await b.request('resources/subscribe', { uri: 'mem://hr/salaries' });
    await b.request('resources/unsubscribe', { uri: 'mem://hr/salaries' });
    await call(a, 'touch', { uri: 'mem://hr/salaries' });
    await waitFor(() => updates(seenByA).length === 2);
    expect(updates(seenByB)).toEqual([]);
    expect((await state()).subscribed).toEqual(['mem://hr/salaries']);

    // Each session's log level: the process logs at the most verbose asked for, each session gets what it asked for.
    await a.request('logging/setLevel', { level: 'error' });
    await b.request('logging/setLevel', { level: 'debug' });
    await call(a, 'log', { level: 'info', data: 'routine' });
    await call(a, 'log', { level: 'critical', data: 'alarm' });
    await waitFor(() => logs(seenByB).length === 2);
    expect(logs(seenByA)).toEqual(['alarm']);
    expect((await state()).logLevel).toBe('debug');

    // Another principal's session joins the process: a log message names no call and may carry a call's arguments,
    // so while two principals share it nobody gets one (read by the time the next call answers).
    const other = await open(c, config, 'tenant:agent_client:two');
    const seenByOther: JsonRpcNotification[] = [];
    other.onNotification((n) => void seenByOther.push(n));
    await call(a, 'log', { level: 'critical', data: 'not for the other principal' });
    expect((await state()).logLevel).toBe('debug');
    expect([...logs(seenByA), ...logs(seenByB), ...logs(seenByOther)]).toEqual(['alarm', 'routine', 'alarm']);
    // The same for any other notification tied to no call (it may be about one principal's work); list changes are
    // everyone's.
    const methods = (seen: JsonRpcNotification[]) => seen.map((n) => n.method).filter((m) => m !== 'notifications/message' && m !== 'notifications/resources/updated');
    await call(a, 'notify', { method: 'notifications/elicitation/complete', params: { elicitationId: 'of-principal-one' } });
    await call(a, 'notify', { method: 'notifications/tools/list_changed' });
    await waitFor(() => methods(seenByOther).length === 1);
    expect([methods(seenByA), methods(seenByB), methods(seenByOther)]).toEqual(new Array(3).fill(['notifications/tools/list_changed']));
    await other.close();
    // One principal again: its own sessions get it.
    await call(a, 'notify', { method: 'notifications/elicitation/complete', params: { elicitationId: 'of-principal-one' } });
    await waitFor(() => methods(seenByB).length === 2);
    expect(methods(seenByA)).toEqual(['notifications/tools/list_changed', 'notifications/elicitation/complete']);

    // B leaves: the process goes back to A's level. A leaves its subscription: unsubscribed upstream, once.
    await b.close();
    await waitFor(async () => ((await state()).logLevel === 'error' ? true : undefined));
    await a.request('resources/unsubscribe', { uri: 'mem://hr/salaries' });
    expect((await state()).calls).toEqual(['subscribe mem://hr/salaries', 'setLevel error', 'setLevel debug', 'setLevel error', 'unsubscribe mem://hr/salaries']);
  });

  it('tells a process restarted after a crash, before it serves calls, the subscriptions and log level its sessions hold', async () => {
    const { a, b, seenByA, seenByB } = await twoSessionsOnOneProcess();
    const state = async () => (await call(a, 'state'))['structuredContent'] as { subscribed: string[]; logLevel: string | null; calls: string[] };
    const updates = (seen: JsonRpcNotification[]) => seen.filter((n) => n.method === 'notifications/resources/updated').map((n) => n.params?.['uri']);
    await a.request('resources/subscribe', { uri: 'mem://a' });
    await b.request('resources/subscribe', { uri: 'mem://b' });
    await a.request('logging/setLevel', { level: 'error' });
    await b.request('logging/setLevel', { level: 'warning' });

    const pid = await pidOf(a);
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => {
      const next = await pidOf(a).catch(() => undefined);
      return next !== undefined && next !== pid;
    });
    // The new process was told them before anything else.
    const after = await state();
    expect(after.subscribed).toEqual(['mem://a', 'mem://b']);
    expect(after.logLevel).toBe('warning');
    expect(after.calls.slice(0, 3).sort()).toEqual(['setLevel warning', 'subscribe mem://a', 'subscribe mem://b']);
    // Each session hears of its own resource again, and only of it.
    await call(a, 'touch', { uri: 'mem://a' });
    await call(a, 'touch', { uri: 'mem://b' });
    await waitFor(() => updates(seenByA).length === 1 && updates(seenByB).length === 1);
    expect(updates(seenByA)).toEqual(['mem://a']);
    expect(updates(seenByB)).toEqual(['mem://b']);
  });

  it('leaves on a restarted process no subscription or level of a session that left while it was being told them', async () => {
    // Subscribes take the process 1 s: the replay after the crash lasts that long.
    const { a, b } = await twoSessionsOnOneProcess({ FIXTURE_SLOW_SUBSCRIBE_MS: '1000' });
    const state = async () => (await call(b, 'state'))['structuredContent'] as { subscribed: string[]; logLevel: string | null; calls: string[] };
    await a.request('resources/subscribe', { uri: 'mem://secret-of-a' });
    await a.request('logging/setLevel', { level: 'debug' });
    await b.request('logging/setLevel', { level: 'error' });

    const pid = await pidOf(b);
    process.kill(pid, 'SIGKILL');
    // A leaves while the new process is being told A's subscription (it is not ready: nothing is sent for A then).
    await new Promise((resolve) => setTimeout(resolve, 400));
    await a.close();
    await waitFor(async () => {
      const next = await pidOf(b).catch(() => undefined);
      return next !== undefined && next !== pid;
    });
    const after = await state();
    expect(after.subscribed).toEqual([]);
    expect(after.logLevel).toBe('error');
    expect(after.calls).toContain('unsubscribe mem://secret-of-a');
  });

  it('sends nothing for a session that closed while its call waited for a restart: no subscription stays, the process idles out', async () => {
    const c = connector({ stdioIdleMs: 300 });
    // Subscribes take the process 800 ms: the replay after the crash lasts that long.
    const config = fixtureConfig({ FIXTURE_SLOW_SUBSCRIBE_MS: '800' });
    const a = await open(c, config);
    const b = await open(c, config);
    await b.request('resources/subscribe', { uri: 'mem://b' });
    const pid = await pidOf(b);
    process.kill(pid, 'SIGKILL');
    // A's subscribe waits for the restarted process, which is being told B's subscription; A closes meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const pending = a.request('resources/subscribe', { uri: 'mem://a-only' });
    await a.close();
    await expect(pending).rejects.toMatchObject({ reason: 'closed' });
    const next = await waitFor(async () => {
      const now = await pidOf(b).catch(() => undefined);
      return now !== undefined && now !== pid ? now : undefined;
    });
    const after = (await call(b, 'state'))['structuredContent'] as { subscribed: string[]; calls: string[] };
    expect(after.subscribed).toEqual(['mem://b']);
    expect(after.calls).not.toContain('subscribe mem://a-only');
    // Nobody is subscribed to anything now: the process is stopped as idle.
    await b.request('resources/unsubscribe', { uri: 'mem://b' });
    await waitFor(() => !isAlive(next), 3_000);
  });

  it('starts the process again when it dies while being told its sessions\' subscriptions, with no call to start it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pcs-crash-'));
    const crashFile = path.join(dir, 'crash');
    const startsFile = path.join(dir, 'starts');
    const { a, b, seenByB } = await twoSessionsOnOneProcess({ FIXTURE_CRASH_SUBSCRIBE_FILE: crashFile, FIXTURE_STARTS_FILE: startsFile });
    await b.request('resources/subscribe', { uri: 'mem://watched' });
    const starts = () => (existsSync(startsFile) ? readFileSync(startsFile, 'utf8').trim().split('\n') : []);
    expect(starts()).toHaveLength(1);
    // The next process dies on the replayed subscribe (a second crash in a row); the one after it takes it.
    writeFileSync(crashFile, '');
    process.kill(Number(starts()[0]), 'SIGKILL');
    await waitFor(() => starts().length === 3 && !existsSync(crashFile), 5_000);
    // Only listening (no call since): the update of the resource reaches B from the third process.
    await waitFor(async () => {
      const state = (await call(a, 'state'))['structuredContent'] as { subscribed: string[] };
      return state.subscribed.includes('mem://watched');
    });
    await call(a, 'touch', { uri: 'mem://watched' });
    await waitFor(() => seenByB.some((n) => n.method === 'notifications/resources/updated'));
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts a process that dies while starting as a crash however long the start took, so the circuit opens', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pcs-crash-'));
    const crashFile = path.join(dir, 'crash');
    const startsFile = path.join(dir, 'starts');
    // Every replayed subscribe takes 300 ms and then crashes the process: each start lasts longer than stableMs.
    const c = connector({ maxStdioProcessesPerUpstream: 1, stdioStableMs: 100, stdioMaxRestarts: 2 });
    const session = await open(c, fixtureConfig({ FIXTURE_CRASH_SUBSCRIBE_FILE: crashFile, FIXTURE_CRASH_SUBSCRIBE_KEEP: '1', FIXTURE_SLOW_SUBSCRIBE_MS: '300', FIXTURE_STARTS_FILE: startsFile }));
    await session.request('resources/subscribe', { uri: 'mem://watched' });
    const starts = () => (existsSync(startsFile) ? readFileSync(startsFile, 'utf8').trim().split('\n') : []);
    writeFileSync(crashFile, '');
    process.kill(Number(starts()[0]), 'SIGKILL');
    // The first start after the kill, then at most stdioMaxRestarts more: then the circuit opens and nothing restarts.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const made = starts().length;
    expect(made).toBeGreaterThanOrEqual(2);
    expect(made).toBeLessThanOrEqual(4);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(starts()).toHaveLength(made);
    rmSync(dir, { recursive: true, force: true });
  }, 15_000);

  it('drops on restart only the subscriptions the new process refuses for good, not one that failed for a while', async () => {
    const refuseFile = path.join(mkdtempSync(path.join(tmpdir(), 'pcs-refuse-')), 'refuse');
    const { a, b } = await twoSessionsOnOneProcess({ FIXTURE_REFUSE_FILE: refuseFile });
    await a.request('resources/subscribe', { uri: 'mem://gone' });
    await a.request('resources/subscribe', { uri: 'mem://flaky' });
    writeFileSync(refuseFile, '');
    const pid = await pidOf(b);
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => {
      const next = await pidOf(b).catch(() => undefined);
      return next !== undefined && next !== pid;
    });
    rmSync(refuseFile);
    // Another session subscribing: mem://flaky is still held (answered here), mem://gone is not (asked of the process).
    await b.request('resources/subscribe', { uri: 'mem://flaky' });
    await b.request('resources/subscribe', { uri: 'mem://gone' });
    const calls = ((await call(b, 'state'))['structuredContent'] as { calls: string[] }).calls;
    expect(calls.filter((c) => c === 'subscribe mem://flaky')).toHaveLength(1);
    expect(calls.filter((c) => c === 'subscribe mem://gone')).toHaveLength(2);
  });

  it('bounds the processes per upstream', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 2 });
    const config = fixtureConfig();
    const pids = new Set<number>();
    for (let i = 0; i < 3; i += 1) pids.add(await pidOf(await open(c, config)));
    expect(pids.size).toBe(2);
  });

  it('gives a session a process made for an agent like its own (protocol version, capabilities) while the bound allows', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 2 });
    const config = fixtureConfig();
    const sampling = { ...identity, capabilities: { sampling: {} } };
    const first = await open(c, config);
    const firstPid = await pidOf(first);
    await first.close();
    // The first process is idle now, but was initialised for an agent without sampling: another process for this one.
    const withSampling = await c.connect(config, sampling);
    sessions.push(withSampling);
    expect(await pidOf(withSampling as UpstreamSession & { pid?: number })).not.toBe(firstPid);
    // An agent like the first one gets the first process back.
    expect(await pidOf(await open(c, config))).toBe(firstPid);
    // At the bound, a third kind of agent shares the least-used process.
    const older = await c.connect(config, { ...identity, protocolVersion: '2025-03-26' });
    sessions.push(older);
    expect([firstPid, await pidOf(withSampling as UpstreamSession & { pid?: number })]).toContain(await pidOf(older as UpstreamSession & { pid?: number }));
  });

  it('at the bound, does not pile one kind of agent onto one process while another process has few sessions', async () => {
    const c = connector({ maxStdioProcessesPerUpstream: 2 });
    const config = fixtureConfig();
    const alike = await pidOf(await open(c, config));
    const other = await c.connect(config, { ...identity, capabilities: { sampling: {} } });
    sessions.push(other);
    const otherPid = await pidOf(other as UpstreamSession & { pid?: number });
    const pids: number[] = [];
    for (let i = 0; i < 6; i += 1) pids.push(await pidOf(await open(c, config)));
    // The process alike while it has at most twice the other's sessions plus one; past that, the other one.
    expect(pids).toEqual([alike, alike, alike, otherPid, alike, alike]);
  });

  it('sends notifications/cancelled with its own id when a call is aborted', async () => {
    const session = await open(connector());
    const controller = new AbortController();
    const sleeping = session.request(
      'tools/call',
      { name: 'sleep', arguments: { ms: 5_000 } },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 50);
    await expect(sleeping).rejects.toMatchObject({ name: 'AbortError' });
    const { notifications } = (await call(session, 'seen'))['structuredContent'] as {
      notifications: { method: string; params?: { requestId?: unknown } }[];
    };
    const cancelled = notifications.filter((n) => n.method === 'notifications/cancelled');
    expect(cancelled).toHaveLength(1);
    expect(typeof cancelled[0]?.params?.requestId).toBe('number');
  });

  it('cancels upstream the calls in flight of a session that closes, on a process other sessions go on using', async () => {
    const { a, b } = await twoSessionsOnOneProcess();
    const sleeping = a.request('tools/call', { name: 'sleep', arguments: { ms: 5_000 } });
    const outcome = expect(sleeping).rejects.toMatchObject({ reason: 'closed' });
    // Written by the time the process answers something (its stdin is read in order).
    await call(b, 'pid');
    await a.close();
    await outcome;
    const { notifications } = (await call(b, 'seen'))['structuredContent'] as {
      notifications: { method: string; params?: { requestId?: unknown; reason?: unknown } }[];
    };
    const cancelled = notifications.filter((n) => n.method === 'notifications/cancelled');
    expect(cancelled).toHaveLength(1);
    expect(cancelled[0]?.params).toMatchObject({ requestId: expect.any(Number), reason: 'session closed' });
  });

  it('times out a call and keeps the process usable', async () => {
    const session = await open(connector());
    await expect(
      session.request('tools/call', { name: 'sleep', arguments: { ms: 2_000 } }, { timeoutMs: 100 }),
    ).rejects.toMatchObject({ reason: 'timeout' });
    expect(textOf(await call(session, 'pid'))).toMatch(/^\d+$/);
  });

  it('kills and restarts a process that stopped answering (three calls in a row timed out)', async () => {
    const logger = recordingLogger();
    const session = await open(connector({ logger }));
    const pid = await pidOf(session);
    await expect(session.request('tools/call', { name: 'freeze', arguments: {} }, { timeoutMs: 100 })).rejects.toMatchObject({ reason: 'timeout' });
    await expect(session.request('tools/call', { name: 'pid', arguments: {} }, { timeoutMs: 100 })).rejects.toMatchObject({ reason: 'timeout' });
    expect(isAlive(pid)).toBe(true);
    await expect(session.request('tools/call', { name: 'pid', arguments: {} }, { timeoutMs: 100 })).rejects.toMatchObject({ reason: 'timeout' });
    await waitFor(() => !isAlive(pid));
    expect(logger.entries.map((entry) => entry.message)).toContain('upstream process stopped answering; killing it for a restart');
    const restarted = await waitFor(async () => {
      const next = await pidOf(session).catch(() => undefined);
      return next !== undefined && next !== pid ? next : undefined;
    });
    expect(isAlive(restarted)).toBe(true);
  });

  it('fails calls at once while a process has stopped reading and megabytes wait for its stdin', async () => {
    const session = await open(connector());
    const frozen = session.request('tools/call', { name: 'freeze', arguments: {} }, { timeoutMs: 30_000 });
    frozen.catch(() => undefined);
    const big = 'x'.repeat(1024 * 1024);
    const waiting: Promise<unknown>[] = [];
    let refused: unknown;
    // The pipe takes ~64 KiB; the rest waits in the gateway, up to STDIN_BUFFER_MAX_BYTES (8 MiB).
    for (let i = 0; i < 20 && refused === undefined; i += 1) {
      const pending = session.request('tools/call', { name: 'pid', arguments: { padding: big } }, { timeoutMs: 30_000 });
      pending.catch((error: unknown) => (refused = error));
      waiting.push(pending);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(refused).toMatchObject({ name: 'UpstreamUnavailableError', reason: 'overloaded' });
    expect(waiting.length).toBeGreaterThanOrEqual(8);
    expect(waiting.length).toBeLessThanOrEqual(10);
    for (const pending of waiting) pending.catch(() => undefined);
  });

  it('stops what the process started too (a wrapper’s server), at shutdown and after a crash', async () => {
    const c = connector();
    const session = await open(c);
    const grandchildOf = async () => ((await call(session, 'grandchild'))['structuredContent'] as { pid: number }).pid;
    const first = await grandchildOf();
    expect(isAlive(first)).toBe(true);
    // The process crashes: what it left behind goes with it.
    await expect(call(session, 'crash')).rejects.toMatchObject({ reason: 'closed' });
    await waitFor(() => !isAlive(first));
    const second = await waitFor(async () => grandchildOf().catch(() => undefined));
    expect(isAlive(second)).toBe(true);
    // Shutdown: SIGTERM to the group (the grandchild ignores it), then nothing of it survives the process.
    await c.shutdown();
    await waitFor(() => !isAlive(second));
  });

  it('starts nothing after shutdown, not even a restart that was waiting out its backoff', async () => {
    const logger = recordingLogger();
    const c = connector({ logger, stdioRestartBackoffMs: { initial: 600, max: 600 } });
    const session = await open(c);
    const started = () => logger.entries.filter((entry) => entry.message === 'upstream process started').length;
    expect(started()).toBe(1);
    // The crash schedules a restart 600 ms later; shutdown comes first.
    await expect(call(session, 'crash')).rejects.toMatchObject({ reason: 'closed' });
    await c.shutdown();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(started()).toBe(1);
  });

  it('holds a call waiting for a restart to its own timeout and cancellation', async () => {
    const session = await open(connector({ stdioRestartBackoffMs: { initial: 3_000, max: 3_000 } }));
    await expect(call(session, 'crash')).rejects.toMatchObject({ reason: 'closed' });
    // The restart waits 3 s; the call gives up after its own 200 ms, or at once when cancelled.
    let started = Date.now();
    await expect(session.request('tools/call', { name: 'pid', arguments: {} }, { timeoutMs: 200 })).rejects.toMatchObject({ reason: 'timeout' });
    expect(Date.now() - started).toBeLessThan(1_500);
    const controller = new AbortController();
    started = Date.now();
    const cancelled = session.request('tools/call', { name: 'pid', arguments: {} }, { signal: controller.signal });
    setTimeout(() => controller.abort(new DOMException('enough', 'AbortError')), 100);
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(1_500);
    // And the restart still happens for the next call.
    expect(textOf(await call(session, 'pid'))).toMatch(/^\d+$/);
  });

  it('counts an oversized message as a crash: restarted with backoff, then the circuit opens', async () => {
    const session = await open(connector({ maxMessageBytes: 16 * 1024, stdioMaxRestarts: 1 }));
    await expect(call(session, 'huge')).rejects.toMatchObject({ reason: 'closed' });
    await waitFor(async () => (await pidOf(session).catch(() => undefined)) !== undefined);
    await expect(call(session, 'huge')).rejects.toMatchObject({ reason: 'closed' });
    await expect(call(session, 'pid')).rejects.toMatchObject({ reason: 'circuit_open' });
  });

  it('restarts the process after it is killed', async () => {
    const session = await open(connector());
    const pid = await pidOf(session);
    const inFlight = session.request('tools/call', { name: 'sleep', arguments: { ms: 5_000 } });
    process.kill(pid, 'SIGKILL');
    await expect(inFlight).rejects.toMatchObject({ reason: 'closed' });
    const restarted = await waitFor(async () => {
      const next = await pidOf(session).catch(() => undefined);
      return next !== undefined && next !== pid ? next : undefined;
    });
    expect(isAlive(restarted)).toBe(true);
  });

  it('opens the circuit when the process keeps crashing', async () => {
    const session = await open(connector({ stdioMaxRestarts: 1 }));
    await expect(call(session, 'crash')).rejects.toMatchObject({ reason: 'closed' });
    await waitFor(async () => (await pidOf(session).catch(() => undefined)) !== undefined);
    await expect(call(session, 'crash')).rejects.toMatchObject({ reason: 'closed' });
    await expect(call(session, 'pid')).rejects.toMatchObject({ reason: 'circuit_open' });
  });

  it('opens the circuit of a server that starts but answers no call after the threshold of timeouts, across the kills that restart it', async () => {
    // callTimeoutMs no shorter than stableMs, as the defaults are (30 s each): each killed process counted as stable.
    const c = connector({ stdioStableMs: 300, breaker: { failureThreshold: 5, cooldownMs: 60_000 } });
    const config = fixtureConfig({}, { callTimeoutMs: 300 });
    let session: UpstreamSession | undefined;
    const reasons: unknown[] = [];
    // Every call hangs. A session that ended with its killed process is opened again, as the engine does.
    for (let attempt = 0; attempt < 8 && !reasons.includes('circuit_open'); attempt += 1) {
      try {
        session ??= await open(c, config);
        await session.request('tools/call', { name: 'sleep', arguments: { ms: 10_000 } });
        reasons.push('answered');
      } catch (error) {
        const reason = (error as { reason?: unknown }).reason;
        reasons.push(reason);
        if (reason === 'closed') session = undefined;
      }
    }
    // Three timeouts kill the first process (hung); the fresh one's start leaves the count alone: two more open it.
    expect(reasons.filter((reason) => reason === 'timeout')).toHaveLength(5);
    expect(reasons.at(-1)).toBe('circuit_open');
    expect(c.circuits?.()[0]?.state).toBe('open');
  }, 30_000);

  it('stops an idle process and starts it again on the next call', async () => {
    const session = await open(connector({ stdioIdleMs: 150 }));
    const pid = await pidOf(session);
    await waitFor(() => !isAlive(pid));
    const next = await pidOf(session);
    expect(next).not.toBe(pid);
  });

  it('does not start a process stopped for idleness for an agent\'s notification; the next call does', async () => {
    const session = await open(connector({ stdioIdleMs: 150 }));
    const pid = await pidOf(session);
    await waitFor(() => !isAlive(pid));
    await waitFor(() => session.pid === undefined);
    await session.notify('notifications/roots/list_changed');
    expect(session.pid).toBeUndefined();
    await session.notify('notifications/progress', { progressToken: 1, progress: 1 });
    // Checked again well within an idle period: a process started for them would still run.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(session.pid).toBeUndefined();
    const next = await pidOf(session);
    expect(next).not.toBe(pid);
  });

  it('keeps an idle process running while it waits on the agent\'s answer to a request of its own', async () => {
    const session = await open(connector({ stdioIdleMs: 150 }));
    const pid = await pidOf(session);
    let answer: (roots: Record<string, unknown>) => void = () => undefined;
    const asked: string[] = [];
    session.onServerRequest((request) => {
      asked.push(request.method);
      return new Promise((resolve) => (answer = resolve));
    });
    // The fixture asks for the roots when told they changed: a request outside any call, the agent slow to answer.
    await session.notify('notifications/roots/list_changed');
    await waitFor(() => asked.length === 1);
    // Several idle periods later the process still waits for the answer, and gets it.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(isAlive(pid)).toBe(true);
    answer({ roots: [{ uri: 'file:///srv/slow', name: 'slow' }] });
    // Relayed once the handler's promise settles (after this turn): asked for before then, the roots are not there yet.
    await new Promise((resolve) => setImmediate(resolve));
    expect((await call(session, 'roots'))['structuredContent']).toEqual({ roots: { roots: [{ uri: 'file:///srv/slow', name: 'slow' }] } });
    expect(await pidOf(session)).toBe(pid);
  });

  it('keeps an idle process running while a session is subscribed to one of its resources', async () => {
    const session = await open(connector({ stdioIdleMs: 150 }));
    const updates: JsonRpcNotification[] = [];
    session.onNotification((n) => void updates.push(n));
    await session.request('resources/subscribe', { uri: 'mem://watched' });
    const pid = await pidOf(session);
    // Many idle periods later the process is still there, and an update it sends still reaches the session.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(isAlive(pid)).toBe(true);
    process.kill(pid, 'SIGUSR2');
    await waitFor(() => updates.some((n) => n.method === 'notifications/resources/updated'));
    // Unsubscribed, it is idle again and stops.
    await session.request('resources/unsubscribe', { uri: 'mem://watched' });
    await waitFor(() => !isAlive(pid));
  });

  it('escalates to SIGKILL at shutdown when SIGTERM is ignored', async () => {
    const c = connector({ stdioKillGraceMs: 200 });
    const session = await open(c, fixtureConfig({ FIXTURE_IGNORE_SIGTERM: '1' }));
    const pid = await pidOf(session);
    // the fixture ignores SIGTERM and the end of its stdin
    process.kill(pid, 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(isAlive(pid)).toBe(true);
    const started = Date.now();
    await c.shutdown();
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(isAlive(pid)).toBe(false);
  });

  it('captures stderr to the logger, truncated and rate-limited', async () => {
    const logger = recordingLogger();
    const session = await open(connector({ logger }));
    await call(session, 'noisy');
    await waitFor(() => logger.entries.filter((e) => e.message === 'upstream stderr').length >= 20);
    const lines = logger.entries.filter((e) => e.message === 'upstream stderr');
    expect(lines[0]?.fields['stderr']).toBe('fixture started');
    expect(lines.length).toBe(20);
    expect(lines.every((e) => String(e.fields['stderr']).length <= 501)).toBe(true);
  });

  it('answers a ping from a process shared by two sessions itself, even while both have calls in flight', async () => {
    const { a, b } = await twoSessionsOnOneProcess();
    // With two calls in flight a server request cannot be attributed to either session (refused), but a ping needs no one.
    const sleeping = call(a, 'sleep', { ms: 500 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(textOf(await call(b, 'ping_client'))).toBe('pong');
    await sleeping;
    // And with none in flight (nobody's handler to ask).
    const unattributed = await call(a, 'ping_client');
    expect(textOf(unattributed)).toBe('pong');
  });

  it('answers server requests through the call’s handler', async () => {
    const session = await open(connector());
    const result = await session.request(
      'tools/call',
      { name: 'ask', arguments: { question: 'why?' } },
      {
        onServerRequest: async (request) => ({
          role: 'assistant',
          content: { type: 'text', text: `because (${request.method})` },
          model: 'm',
        }),
      },
    );
    expect(textOf(result)).toBe('because (sampling/createMessage)');
  });

  it('fails to connect to a command that does not exist, without naming it', async () => {
    const error = await connector()
      .connect(fixtureConfig({}, { command: '/nonexistent/secret-tool', args: ['--token=abc'] }), identity)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'connect_failed' });
    expect(JSON.stringify({ m: (error as Error).message, c: (error as Error).cause })).not.toMatch(
      /secret-tool|abc/,
    );
  });

  it('counts a command that does not exist once per start toward its circuit (its initialize is not left to time out)', async () => {
    const c = connector({ breaker: { failureThreshold: 5, cooldownMs: 60_000 } });
    const config = fixtureConfig({}, { command: '/nonexistent/portcullis-missing', connectTimeoutMs: 100 });
    const reasons: unknown[] = [];
    for (let attempt = 0; attempt < 4; attempt += 1) {
      reasons.push(await c.connect(config, identity).then(() => 'connected', (error: { reason?: unknown }) => error.reason));
      // Past the connect timeout: before, the initialize stranded by the failed spawn timed out now and counted again.
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(reasons).toEqual(['connect_failed', 'connect_failed', 'connect_failed', 'connect_failed']);
    expect(c.circuits?.()[0]).toMatchObject({ state: 'closed' });
  });
});
