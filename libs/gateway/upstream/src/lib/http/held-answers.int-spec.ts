/**
 * The bytes of upstream answers a replica holds while they arrive are bounded in all and per tenant (`HeldAnswers`):
 * an upstream that sends most of a large answer and then stalls held it until the call's timeout, for as many calls as
 * were made (found by review: nothing bounded them but each call's 16 MiB).
 */
import type { ServerResponse } from 'node:http';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';
import { FREE_BYTES_PER_CALL } from './held-answers';

const KIB = 1024;

/**
 * A Streamable HTTP server whose `big` tool answers with a JSON body of `FREE_BYTES_PER_CALL + 300 KiB`: all but its
 * last byte at once, the rest when `finish()` is called. Any other call answers at once.
 */
async function stallingServer() {
  const stalled: { res: ServerResponse; rest: string }[] = [];
  const server = await rawServer((req, res) => {
    if (req.method !== 'POST') return void res.writeHead(405).end();
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const message = JSON.parse(text) as { id?: number; method?: string; params?: { name?: string } };
      if (message.id === undefined) return void res.writeHead(202).end();
      if (message.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'stalling', version: '1' } } }));
        return;
      }
      const filler = message.params?.name === 'big' ? 'x'.repeat(FREE_BYTES_PER_CALL + 300 * KIB) : 'small';
      const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: filler }] } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
      if (filler === 'small') return void res.end(body);
      res.write(body.slice(0, -1));
      stalled.push({ res, rest: body.slice(-1) });
    });
  });
  const finish = () => {
    for (const { res, rest } of stalled.splice(0)) res.end(rest);
  };
  return { server, stalled, finish };
}

/**
 * A legacy HTTP+SSE server: every answer on the session's GET stream; a call's answer (past the free part by 300 KiB)
 * all but its end, held there by the gateway while it waits for the rest (found by re-review: such streams were not
 * counted).
 */
async function legacyStallingServer() {
  const streams: ServerResponse[] = [];
  let stalled = 0;
  const server = await rawServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: endpoint\ndata: /messages?s=${streams.length}\n\n`);
      streams.push(res);
      return;
    }
    const stream = streams[Number(new URL(req.url ?? '/', 'http://x').searchParams.get('s'))];
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const message = JSON.parse(text) as { id?: number; method?: string };
      res.writeHead(202).end();
      if (message.id === undefined) return;
      const result =
        message.method === 'initialize'
          ? { protocolVersion: '2024-11-05', capabilities: { tools: {} }, serverInfo: { name: 'legacy-stall', version: '1' } }
          : { content: [{ type: 'text', text: 'x'.repeat(FREE_BYTES_PER_CALL + 300 * KIB) }] };
      const event = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`;
      if (message.method === 'initialize') return void stream?.write(event);
      stream?.write(event.slice(0, -3));
      stalled += 1;
    });
  });
  return { server, stalled: () => stalled };
}

/**
 * A Streamable HTTP server whose standalone GET stream carries a notification of `FREE_BYTES_PER_CALL + 300 KiB`, all
 * but its end (held by the gateway while it waits for the rest); `endStream()` closes that stream, and the streams
 * asked for after it carry nothing. Calls are answered with a result as large as that notification, at once and whole.
 */
async function standaloneStallingServer() {
  const streams: ServerResponse[] = [];
  const server = await rawServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      streams.push(res);
      if (streams.length > 1) return;
      const note = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x'.repeat(FREE_BYTES_PER_CALL + 300 * KIB) } });
      res.write(`event: message\ndata: ${note.slice(0, -1)}`);
      return;
    }
    if (req.method !== 'POST') return void res.writeHead(405).end();
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const message = JSON.parse(text) as { id?: number; method?: string };
      if (message.id === undefined) return void res.writeHead(202).end();
      const result =
        message.method === 'initialize'
          ? { protocolVersion: '2025-11-25', capabilities: { tools: {}, logging: {} }, serverInfo: { name: 'standalone-stall', version: '1' } }
          : { content: [{ type: 'text', text: 'x'.repeat(FREE_BYTES_PER_CALL + 300 * KIB) }] };
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `s-${message.id}-${Math.random()}` });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
    });
  });
  const endStream = () => streams[0]?.end();
  return { server, streams, endStream };
}

describe('answers held while they arrive', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    for (const connector of connectors.splice(0)) await connector.shutdown();
    for (const server of servers.splice(0)) await server.close();
  });

  it('fails a call whose answer would pass its tenant\'s share, or the replica\'s, as overloaded; the others are answered whole', async () => {
    const { server, stalled, finish } = await stallingServer();
    servers.push(server);
    // Each stalled answer counts 300 KiB past the free part: a tenant holds one, the replica two.
    const connector = createUpstreamConnector({ allowPrivateNetworks: true, maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, maxHeldAnswerBytes: 700 * KIB, maxHeldAnswerBytesPerTenant: 400 * KIB });
    connectors.push(connector);
    const url = `${server.url}/mcp`;
    const [a, b, c] = await Promise.all(
      ['tenant-a', 'tenant-b', 'tenant-c'].map((tenantId) => connector.connect(upstreamConfig('streamable_http', { url, tenantId, callTimeoutMs: 10_000 }), identity)),
    );
    if (a === undefined || b === undefined || c === undefined) throw new Error('no sessions');
    const call = (session: typeof a, name: string) => session.request('tools/call', { name, arguments: {} }).then((result) => ({ result }), (error: unknown) => ({ error }));
    const firstA = call(a, 'big');
    await expect.poll(() => stalled.length).toBe(1);
    // Tenant A's second large answer would pass its share: refused at once, not held until the timeout.
    const started = Date.now();
    expect(await call(a, 'big')).toMatchObject({ error: { reason: 'overloaded' } });
    expect(Date.now() - started).toBeLessThan(2_000);
    // Another tenant's is held; a third tenant's would pass the replica's bound.
    const firstB = call(b, 'big');
    await expect.poll(() => stalled.length).toBe(3);
    expect(await call(c, 'big')).toMatchObject({ error: { reason: 'overloaded' } });
    // Small answers are never counted.
    expect(await call(c, 'small')).toMatchObject({ result: { content: [{ text: 'small' }] } });
    finish();
    for (const outcome of await Promise.all([firstA, firstB])) {
      expect((outcome as { result: { content: { text: string }[] } }).result.content[0]?.text.length).toBe(FREE_BYTES_PER_CALL + 300 * KIB);
    }
    // Given back with the answers: tenant A's next large answer is held again.
    const again = call(a, 'big');
    await expect.poll(() => stalled.length).toBe(1);
    finish();
    expect(await again).toMatchObject({ result: { content: [{ type: 'text' }] } });
  }, 20_000);

  it('counts a legacy SSE session\'s stream too: the tenant\'s second stalled answer ends its session as overloaded', async () => {
    const { server, stalled } = await legacyStallingServer();
    servers.push(server);
    const connector = createUpstreamConnector({ allowPrivateNetworks: true, maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, maxHeldAnswerBytes: 700 * KIB, maxHeldAnswerBytesPerTenant: 400 * KIB });
    connectors.push(connector);
    const config = upstreamConfig('sse', { url: `${server.url}/sse`, tenantId: 'tenant-a', callTimeoutMs: 4_000 });
    const one = await connector.connect(config, identity);
    const two = await connector.connect({ ...config }, identity);
    const call = (session: typeof one) => session.request('tools/call', { name: 'big', arguments: {} }).then((result) => ({ result }), (error: unknown) => ({ error }));
    const first = call(one);
    await expect.poll(() => stalled()).toBe(1);
    const started = Date.now();
    // Refused at once, not held until the call's timeout.
    expect(await call(two)).toMatchObject({ error: { reason: 'overloaded' } });
    expect(Date.now() - started).toBeLessThan(2_000);
    // The first session's answer, held within the bounds, waits on (here until its timeout).
    expect(await first).toMatchObject({ error: { reason: 'timeout' } });
  }, 20_000);

  it("counts a Streamable HTTP session's standalone stream too, and gives its count back when the stream ends", async () => {
    const { server, streams, endStream } = await standaloneStallingServer();
    servers.push(server);
    // The stalled notification counts 300 KiB past the free part; a call's answer, read whole at once, the same while
    // its body is read: the tenant's share holds one of the two.
    const connector = createUpstreamConnector({ allowPrivateNetworks: true, maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, maxHeldAnswerBytes: 700 * KIB, maxHeldAnswerBytesPerTenant: 400 * KIB });
    connectors.push(connector);
    const config = upstreamConfig('streamable_http', { url: `${server.url}/mcp`, tenantId: 'tenant-a', callTimeoutMs: 4_000 });
    const listening = await connector.connect(config, identity);
    const calling = await connector.connect({ ...config }, identity);
    const call = () => calling.request('tools/call', { name: 'big', arguments: {} }).then((result) => ({ result }), (error: unknown) => ({ error }));
    // Answered whole before anything is held.
    expect(await call()).toMatchObject({ result: { content: [{ type: 'text' }] } });
    listening.onNotification(() => undefined);
    listening.listen?.(true);
    await expect.poll(() => streams.length).toBe(1);
    // The stream's partial event is counted: the same answer now passes the tenant's share.
    await expect.poll(call, { timeout: 3_000 }).toMatchObject({ error: { reason: 'overloaded' } });
    endStream();
    // Given back once the stream ended (the gateway asks for it again; that one holds nothing).
    await expect.poll(call, { timeout: 5_000 }).toMatchObject({ result: { content: [{ type: 'text' }] } });
  }, 20_000);
});
