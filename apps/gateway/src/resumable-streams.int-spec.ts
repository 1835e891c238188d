/**
 * Resumable Streamable HTTP SSE streams (`Last-Event-ID`): the official SDK client loses its connection
 * in the middle of a progress-reporting tool call — a real TCP break, through a proxy the test controls —
 * reconnects with the last event id it saw, and receives the rest of the stream and the result, on the
 * same replica or on another one. Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  kitchenSinkTenant,
  readSse,
  resumptionsOn,
  startDemoUpstreams,
  startProxy,
  startTestGateway,
  type DemoUpstreams,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;
/** A tenant whose kitchen-sink upstream times calls out after 600 ms. */
let shortTenant: TestTenant;
let shortKey: string;

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  ({ tenant, key } = await kitchenSinkTenant(db, demo, 'resume-agent'));
  ({ tenant: shortTenant, key: shortKey } = await kitchenSinkTenant(db, demo, 'short-agent'));
  await db.upstream.updateMany({ where: { tenantId: shortTenant.id }, data: { callTimeoutMs: 600 } as never });
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe('SDK client resuming a broken POST stream', () => {
  it.each([
    { name: 'on the same replica', resumeOn: () => gatewayA },
    { name: 'on another replica', resumeOn: () => gatewayB },
  ])('receives the remaining progress and the result $name', async ({ resumeOn }) => {
    const proxy = await startProxy(gatewayA.url);
    const resumed = resumptionsOn(resumeOn());
    const client = new Client({ name: 'resume-spec', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${proxy.url}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
      reconnectionOptions: {
        initialReconnectionDelay: 200,
        maxReconnectionDelay: 1_000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 5,
      },
    });
    await client.connect(transport);
    const progress: number[] = [];
    let broken = false;
    const call = client.callTool(
      { name: 'ks__slow_count', arguments: { steps: 8, interval_ms: 150 } },
      undefined,
      {
        onprogress: (p) => {
          progress.push(p.progress);
          if (p.progress === 3 && !broken) {
            broken = true;
            proxy.target = resumeOn().url;
            proxy.breakAll();
          }
        },
      },
    );
    const result = await call;
    expect(broken).toBe(true);
    expect(text(result)).toBe('Counted to 8.');
    // Nothing lost, nothing twice: the steps sent while the agent was away were replayed.
    expect(progress).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(resumed.some((id) => id.startsWith('p'))).toBe(true);
    // The session goes on after the resumption.
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'after' } }))).toBe('after');
    await client.close();
    await proxy.close();
  });
});

describe('SDK client whose call ends with an error on a resumable stream', () => {
  it('stops resuming it once told nothing is left, and its standalone stream stays put', async () => {
    const resumed = resumptionsOn(gatewayA);
    const client = new Client({ name: 'error-after-progress', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gatewayA.url}/t/${shortTenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${shortKey}` } },
      reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 1_000, reconnectionDelayGrowFactor: 1.5, maxRetries: 2 },
    });
    await client.connect(transport);
    // Progress turns the answer into a stream with event ids; the upstream's call timeout then ends it with a
    // JSON-RPC error, which the SDK client does not count as the answer: it resumes the stream from the error's id.
    const progress: number[] = [];
    await expect(
      client.callTool({ name: 'ks__slow_count', arguments: { steps: 30, interval_ms: 100 } }, undefined, { onprogress: (p) => void progress.push(p.progress) }),
    ).rejects.toThrow(/timed out/);
    expect(progress.length).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    // One resume of the POST stream, answered 405; before, each one closed the session's standalone stream, which
    // reconnected (Last-Event-ID of its own) and closed the other in turn, once a second.
    expect(resumed.filter((id) => id.startsWith('p'))).toHaveLength(1);
    expect(resumed.filter((id) => id.startsWith('s'))).toEqual([]);
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'after' } }))).toBe('after');
    await client.close();
  }, 20_000);
});

describe('Last-Event-ID on a raw GET', () => {
  const headers = (sessionId: string, extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${key}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    'mcp-session-id': sessionId,
    ...extra,
  });

  async function session(base: string): Promise<string> {
    const res = await fetch(`${base}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-11-25',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });
    expect(res.status).toBe(200);
    return res.headers.get('mcp-session-id') ?? '';
  }

  /** Reads an SSE response for up to `ms` (or until it ends); returns the text. */
  async function readFor(res: Response, ms: number): Promise<{ text: string; ended: boolean }> {
    const reader = res.body?.getReader();
    if (!reader) return { text: '', ended: true };
    const decoder = new TextDecoder();
    let out = '';
    const deadline = Date.now() + ms;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const chunk = await Promise.race([
        reader.read(),
        new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), left)),
      ]);
      if (chunk === 'timeout') break;
      if (chunk.done) return { text: out, ended: true };
      out += decoder.decode(chunk.value, { stream: true });
    }
    await reader.cancel().catch(() => undefined);
    return { text: out, ended: false };
  }


  /** POSTs a `ks__slow_count` call with a progress token to replica A: its answer is a resumable SSE stream. */
  const slowCount = (sessionId: string, id: number, steps: number, intervalMs: number): Promise<Response> =>
    fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: headers(sessionId),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: 'ks__slow_count', arguments: { steps, interval_ms: intervalMs }, _meta: { progressToken: 'tok' } },
      }),
    });

  /** The complete events (up to their blank line) in an SSE text. */
  const completeEvents = (sse: string): string[] => sse.split('\n\n').slice(0, -1);

  const ids = (sse: string): string[] => [...sse.matchAll(/^id: (.+)$/gm)].map((m) => m[1] ?? '');
  const data = (sse: string): string[] => [...sse.matchAll(/^data: (.+)$/gm)].map((m) => m[1] ?? '');
  /** Ids of messages, not of priming events (`<stream>_0`, empty data: where a stream can be resumed from its start). */
  const messageIds = (sse: string): string[] => ids(sse).filter((id) => !id.endsWith('_0'));

  it('replays the rest of the same stream, from any replica, and nothing for another session or an unknown id', async () => {
    const sessionId = await session(gatewayA.url);
    const post = await slowCount(sessionId, 7, 3, 5);
    expect(post.headers.get('content-type')).toContain('text/event-stream');
    const full = await post.text();
    // A 2025-11-25 agent's stream opens with a priming event: an id before the first message, empty data, a retry.
    expect(full).toMatch(/^id: p\w+_0\nretry: \d+\ndata: \n\n/);
    const eventIds = messageIds(full);
    // Three progress events and the result, and the upstream's step log messages.
    expect(eventIds.length).toBeGreaterThanOrEqual(4);
    expect(new Set(eventIds).size).toBe(eventIds.length);

    // From the priming event's id: every message of the stream.
    const fromStart = await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': ids(full)[0] ?? '' }),
    });
    const all = await readSse(fromStart, () => false);
    expect(all.ended).toBe(true);
    expect(ids(all.text)).toEqual(eventIds);
    expect(data(all.text)).toEqual(data(full));

    // After the first progress event: the two others and the result, in order, with their ids; then the end.
    const resumed = await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': eventIds[0] ?? '' }),
    });
    expect(resumed.status).toBe(200);
    // Read until the stream ends (capped): the replay must end by itself.
    const replay = await readSse(resumed, () => false);
    expect(replay.ended).toBe(true);
    expect(ids(replay.text)).toEqual(eventIds.slice(1));
    expect(data(replay.text)).toEqual(data(full).slice(1));

    // The session's own standalone stream, open while the resumes below come in: none of them may take its place.
    const standalone = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { headers: headers(sessionId, { accept: 'text/event-stream' }) });
    expect(standalone.status).toBe(200);

    // Another session of the same agent presenting that id, an unknown POST stream's id, and the id of the response
    // itself (nothing left): nothing to resume, 405 (on which an SDK client stops resuming), nothing replayed.
    const other = await session(gatewayA.url);
    for (const [owner, id] of [
      [other, eventIds[0] ?? ''],
      [sessionId, `p${'0'.repeat(16)}zz_1`],
      [sessionId, eventIds.at(-1) ?? ''],
    ] as const) {
      const res = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { headers: headers(owner, { accept: 'text/event-stream', 'last-event-id': id }) });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST, DELETE');
      expect((await res.json()).error.message).toMatch(/nothing is left to resume/);
    }

    expect((await readFor(standalone, 300)).ended).toBe(false);

    // A malformed id names no stream: a plain standalone stream, nothing replayed (it takes the session's stream over).
    const malformed = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': 'garbage' }) });
    expect(malformed.status).toBe(200);
    const read = await readFor(malformed, 300);
    expect(read.ended).toBe(false);
    expect(data(read.text)).toEqual([]);
  });

  it('bounds the resumed streams one session holds open at once', async () => {
    const sessionId = await session(gatewayA.url);
    // Long enough to outlast the resumes on a loaded machine (an answered call would end them, and free their places):
    // the session's DELETE at the end cancels them.
    // Nine streams, each resumed once (a later resume of one stream ends the earlier: they would not add up).
    const eventIds: string[] = [];
    for (let id = 9; id < 18; id++) {
      const first = await readSse(await slowCount(sessionId, id, 600, 100), (text) => completeEvents(text).length >= 1);
      eventIds.push(ids(first.text)[0] ?? '');
    }
    expect(eventIds).not.toContain('');
    const open = Array.from({ length: 9 }, () => new AbortController());
    const statuses: number[] = [];
    for (const [index, controller] of open.entries()) {
      const res = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
        headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': eventIds[index] ?? '' }),
        signal: controller.signal,
      });
      statuses.push(res.status);
      if (res.status !== 200) expect((await res.json()).error.message).toMatch(/Too many resumed streams/);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 429]);
    for (const controller of open) controller.abort();
    const ended = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { method: 'DELETE', headers: headers(sessionId) });
    expect(ended.status).toBe(200);
  });

  // Before, the original response went on carrying every message the resumed stream carried, to its end: an agent
  // still reading it got each one twice (MCP: a message goes out on one of the client's streams).
  it.each([
    { name: 'on the same replica', resumeOn: () => gatewayA },
    { name: 'on another replica', resumeOn: () => gatewayB },
  ])('a POST stream resumed while its response is still open ends there: the rest goes out once, on the resumed stream ($name)', async ({ resumeOn }) => {
    const sessionId = await session(gatewayA.url);
    const post = await slowCount(sessionId, 11, 8, 150);
    const reader = post.body?.getReader();
    if (reader === undefined) throw new Error('no body');
    const decoder = new TextDecoder();
    let original = '';
    let originalEnded = false;
    const reading = (async () => {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        original += decoder.decode(chunk.value, { stream: true });
      }
      originalEnded = true;
    })().catch(() => undefined);
    await waitFor(() => messageIds(original).length >= 1, { timeoutMs: 5_000, description: 'the first message on the POST stream' });
    const resumedFrom = messageIds(original)[0] ?? '';
    const resumed = await fetch(`${resumeOn().url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': resumedFrom }),
    });
    expect(resumed.status).toBe(200);
    const rest = await readSse(resumed, () => false);
    expect(rest.ended).toBe(true);
    // The result came on the resumed stream, and the original ended without it.
    expect(data(rest.text).at(-1)).toContain('Counted to 8.');
    await waitFor(() => originalEnded, { timeoutMs: 5_000, description: 'the original response ended' });
    await reading;
    expect(original).not.toContain('Counted to 8.');
    // Nothing lost: what the original carried up to the resume, and the resumed stream after it, are the whole stream.
    const carried = messageIds(original);
    expect(carried.length).toBeGreaterThanOrEqual(1);
    expect(ids(rest.text)[0]).toBe(resumedFrom.replace(/_(\d+)$/, (_m, seq: string) => `_${Number(seq) + 1}`));
  });

  // A resume the agent gave up on while the gateway still held it is a stream like the original: a later resume of the
  // same stream ends it too (found by re-review; both carried every later message, the answer included).
  it.each([
    { name: 'on the same replica', resumeOn: () => gatewayA },
    { name: 'on another replica', resumeOn: () => gatewayB },
  ])('a POST stream resumed twice sends what follows on the later resume only ($name)', async ({ resumeOn }) => {
    const sessionId = await session(gatewayA.url);
    const post = await slowCount(sessionId, 21, 10, 200);
    const first = await readSse(post, (text) => messageIds(text).length >= 1);
    const resumedFrom = messageIds(first.text)[0] ?? '';
    expect(resumedFrom).not.toBe('');
    const resume = () => fetch(`${resumeOn().url}/t/${tenant.slug}/mcp`, { headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': resumedFrom }) });
    const one = await resume();
    expect(one.status).toBe(200);
    const readingOne = readSse(one, () => false, 15_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const two = await resume();
    expect(two.status).toBe(200);
    const [earlier, later] = await Promise.all([readingOne, readSse(two, () => false, 15_000)]);
    expect(earlier.ended).toBe(true);
    expect(later.ended).toBe(true);
    expect(earlier.text).not.toContain('Counted to 10.');
    expect(data(later.text).at(-1)).toContain('Counted to 10.');
  }, 40_000);

  /**
   * Adds tools through replica A (each one announces a tools/list_changed on the upstream's session-wide channel)
   * until `reading` (the agent's standalone stream, read until such a message) is done. The gateway opens its own
   * standalone stream to the upstream once the agent's stream attaches, and a notification the upstream sends before
   * that is up has nowhere to go: so a tool is added until one arrives, rather than once.
   */
  async function addToolsUntilNotified(sessionId: string, reading: Promise<unknown>, firstId: number): Promise<void> {
    let received = false;
    void reading.then(() => {
      received = true;
    });
    let nextId = firstId;
    await waitFor(
      async () => {
        const res = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
          method: 'POST',
          headers: headers(sessionId),
          body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name: 'ks__add_tool', arguments: {} } }),
        });
        expect(res.status).toBe(200);
        await waitFor(() => received, { timeoutMs: 1_000, intervalMs: 20 }).catch(() => undefined);
        return received;
      },
      { timeoutMs: 9_000, description: 'a tools/list_changed on the standalone stream' },
    );
  }

  /** The stream an event id belongs to. */
  const streamOf = (id: string): string => id.slice(0, id.lastIndexOf('_'));

  it('a standalone stream resumed with its Last-Event-ID gets the messages it missed first, as the new stream\'s own', async () => {
    const sessionId = await session(gatewayA.url);
    const first = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream' }),
    });
    expect(first.status).toBe(200);
    const reading = readSse(first, (sse) =>
      completeEvents(sse).some((event) => event.includes('notifications/tools/list_changed')),
    );
    await addToolsUntilNotified(sessionId, reading, 9);
    const got = await reading;
    // The stream opened with a priming event of its own.
    expect(got.text).toMatch(/^id: s\w+_0\nretry: \d+\ndata: \n\n/);
    const standaloneIds = messageIds(completeEvents(got.text).join('\n\n'));
    expect(data(got.text).join('\n')).toContain('notifications/tools/list_changed');
    expect(standaloneIds.length).toBeGreaterThan(0);
    const older = streamOf(standaloneIds[0] ?? '');
    expect(older).toMatch(/^s/);

    // Reconnecting with an id before the last one replays the rest first, as the new stream's own events (numbered and
    // logged there), so the agent holds the new stream's id from the first of them on; then the new stream's messages.
    const resumed = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': `${older}_0` }),
    });
    const ownMessage = (sse: string) => messageIds(completeEvents(sse).join('\n\n')).length > standaloneIds.length;
    const resumedReading = readSse(resumed, ownMessage);
    await addToolsUntilNotified(sessionId, resumedReading, 100);
    const replay = await resumedReading;
    const replayIds = ids(completeEvents(replay.text).join('\n\n'));
    const newer = streamOf(replayIds[0] ?? '');
    expect(newer).toMatch(/^s/);
    expect(newer).not.toBe(older);
    // Numbered from 1 on the new stream: no priming event (the first replayed message gives the agent its id).
    expect(replayIds.slice(0, standaloneIds.length)).toEqual(standaloneIds.map((_id, i) => `${newer}_${i + 1}`));
    expect(data(replay.text).slice(0, standaloneIds.length)).toEqual(data(got.text).filter((message) => message !== ''));
    const newerIds = replayIds;
    expect(newerIds.length).toBeGreaterThan(standaloneIds.length);
    expect(newerIds.every((id) => streamOf(id) === newer)).toBe(true);

    // Had the new stream's messages been lost to a disconnect, the agent's first id on it brings them back, from any
    // replica, again as the newest stream's own; the older stream's id would only read the older log.
    const again = await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': `${newer}_0` }),
    });
    const recovered = await readSse(again, (sse) => messageIds(completeEvents(sse).join('\n\n')).length >= newerIds.length);
    const recoveredIds = messageIds(completeEvents(recovered.text).join('\n\n'));
    const newest = streamOf(recoveredIds[0] ?? '');
    expect(newest).not.toBe(newer);
    expect(recoveredIds.slice(0, newerIds.length)).toEqual(newerIds.map((_id, i) => `${newest}_${i + 1}`));
    expect(data(recovered.text).slice(0, newerIds.length)).toEqual(data(replay.text).slice(0, newerIds.length));
  });

  it('a standalone stream lost on one replica and resumed on another: what came while the agent was away arrives once, then the new stream takes over', async () => {
    const sessionId = await session(gatewayA.url);
    const away = new AbortController();
    const first = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream' }),
      signal: away.signal,
    });
    expect(first.status).toBe(200);
    const reading = readSse(first, (sse) => completeEvents(sse).some((event) => event.includes('notifications/tools/list_changed')));
    await addToolsUntilNotified(sessionId, reading, 200);
    const seen = messageIds(completeEvents((await reading).text).join('\n\n'));
    const lastSeen = seen.at(-1) ?? '';
    const older = streamOf(lastSeen);
    expect(older).toMatch(/^s/);
    away.abort();

    // While the agent is away, replica A keeps the stream parked and logs what the upstream announces. Each told at
    // once: an upstream's list changes are told at most once a second, those between once at its end, which starts
    // another second (the tools added above may have left one to tell).
    const announce = async (id: number) => {
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      return fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
        method: 'POST',
        headers: headers(sessionId),
        body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'ks__add_tool', arguments: {} } }),
      });
    };
    expect((await announce(300)).status).toBe(200);
    expect((await announce(301)).status).toBe(200);

    // The agent comes back through replica B with its last id: B's stream is announced, A's parked one ends (its log's
    // end marker), and B sends what A logged first, as its own events, then whatever comes next.
    const startedAt = Date.now();
    const resumed = await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, {
      headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': lastSeen }),
    });
    expect(resumed.status).toBe(200);
    let firstAfterMs: number | undefined;
    const replayedAndMore = (sse: string) => {
      const sent = ids(completeEvents(sse).join('\n\n'));
      if (firstAfterMs === undefined && sent.length > 0) firstAfterMs = Date.now() - startedAt;
      return sent.length >= 3;
    };
    const resumedReading = readSse(resumed, replayedAndMore);
    // Announced once the new stream is up: routed from A, which holds the upstream session, to B over the bus.
    await addToolsUntilNotified(sessionId, resumedReading, 310);
    const text = (await resumedReading).text;
    const gotIds = ids(completeEvents(text).join('\n\n'));
    // All of B's stream, numbered from 1, none of A's (no priming event: the first replayed message names B's stream).
    const newer = streamOf(gotIds[0] ?? '');
    expect(newer).not.toBe(older);
    expect(gotIds.slice(0, 3)).toEqual([`${newer}_1`, `${newer}_2`, `${newer}_3`]);
    // What A logged after the agent's last id comes first: the two announcements made while it was away, each once.
    const announcements = data(text).filter((message) => message.includes('notifications/tools/list_changed'));
    expect(announcements.length).toBeGreaterThanOrEqual(3);
    // A's parked stream ended when B's was announced (its log's end marker): B did not wait out its bound (2 s) for it.
    expect(firstAfterMs).toBeLessThan(1_500);
  }, 20_000);
});
