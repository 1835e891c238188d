/**
 * Malformed requests on the MCP endpoints beyond those in gateway.int-spec.ts: Host rejection (DNS
 * rebinding), the GET and DELETE methods, batches, version negotiation, and the legacy HTTP+SSE endpoints.
 * Every answer is the specification's status code with a JSON-RPC error carrying `data.traceId`; nothing
 * internal leaks. Raw `node:http` requests, so the Host header can be set.
 */
import { createServer as createHttpServer, request as httpRequest, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { createRedisClient } from '@portcullis/data/redis';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** One request; for SSE answers, what arrived in the first `sseMs` milliseconds. */
function raw(
  method: string,
  path: string,
  headers: Record<string, string | string[]>,
  body?: string | Buffer,
  sseMs = 300,
): Promise<RawResponse> {
  const url = new URL(`${gateway.url}${path}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, method, headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
        res.on('end', done);
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          setTimeout(() => {
            done();
            req.destroy();
          }, sseMs);
        }
      },
    );
    req.on('error', (error) => (req.destroyed ? undefined : reject(error)));
    req.end(body);
  });
}

const auth = () => ({ authorization: `Bearer ${key}` });
/** A ping whose string holds a Latin-1 é (0xE9): not UTF-8. */
const notUtf8Body = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":5,"method":"ping","params":{"_meta":{"s":"caf'), Buffer.from([0xe9]), Buffer.from('"}}}')]);
const postHeaders = (extra: Record<string, string | string[]> = {}) => ({
  ...auth(),
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  ...extra,
});
const initBody = (version = '2025-11-25') =>
  JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });

function expectRpcError(res: RawResponse, status: number, code: number): Record<string, unknown> {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toContain('application/json');
  expect(res.body).not.toMatch(/at .*\.(js|ts):\d+/);
  const body = JSON.parse(res.body) as {
    jsonrpc: string;
    error: { code: number; message: string; data: { traceId: string } };
  };
  expect(body.jsonrpc).toBe('2.0');
  expect(body.error.code).toBe(code);
  expect(body.error.data.traceId).toMatch(/^[0-9a-f]{32}$/);
  return body as unknown as Record<string, unknown>;
}

async function newSession(version = '2025-11-25'): Promise<string> {
  const res = await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), initBody(version));
  expect(res.status).toBe(200);
  return String(res.headers['mcp-session-id']);
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'errors-agent'));
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_ALLOWED_HOSTS: '127.0.0.1,gateway.example' },
  });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

describe('POST on the raw fast path', () => {
  it('refuses a body over the limit with 413, whether announced by Content-Length or streamed in chunks, and keeps serving', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'y'.repeat(70_000) } });
    expectRpcError(await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), big), 413, -32013);
    expectRpcError(await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders({ 'transfer-encoding': 'chunked' }), big), 413, -32013);
    expect((await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), initBody())).status).toBe(200);
  });

  it('reads a body that arrives with its headers or in pieces afterwards alike, and counts the limit over the pieces', async () => {
    const url = new URL(gateway.url);
    /** Writes `pieces` on one connection `gapMs` apart and returns the status line and body of the answer. */
    const sendInPieces = (pieces: readonly (string | Buffer)[], gapMs: number) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const socket = connect(Number(url.port), url.hostname);
        const received: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => received.push(chunk));
        socket.on('error', reject);
        socket.on('close', () => {
          const text = Buffer.concat(received).toString('utf8');
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
          resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
        });
        socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
        void (async () => {
          for (const piece of pieces) {
            socket.write(piece);
            await new Promise((r) => setTimeout(r, gapMs));
          }
        })();
      });
    const head = (framing: string) =>
      `POST /t/${tenant.slug}/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer ${key}\r\n` +
      `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n${framing}\r\n`;
    // 'é' is two bytes in UTF-8: the body is cut between them, so pieces decoded one by one would garble it.
    const body = Buffer.from(initBody().replace('"raw"', '"r\u00e9sum\u00e9"'));
    const cut = body.indexOf(Buffer.from('\u00e9')) + 1;
    for (const gapMs of [0, 60]) {
      const answer = await sendInPieces([head(`Content-Length: ${body.length}\r\n`), body.subarray(0, cut), body.subarray(cut)], gapMs);
      expect(answer.status, `pieces ${gapMs} ms apart`).toBe(200);
      expect(answer.body).toContain('"protocolVersion":"2025-11-25"');
    }
    // Chunked, each piece under the limit and the sum over it: refused once the sum passes it.
    const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    const pad = 'y'.repeat(30_000);
    const over = await sendInPieces([head('Transfer-Encoding: chunked\r\n'), chunk(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"${pad}`), chunk(pad), chunk(`${pad}"}}`), '0\r\n\r\n'], 60);
    expect(over.status).toBe(413);
    expect(over.body).toContain('-32013');
  });

  it('refuses a wrong key or tenant from the headers alone, before any of the body is sent', async () => {
    const url = new URL(gateway.url);
    // Headers announcing a body of 60 KB that never comes: the answer must not wait for it.
    const early = (path: string, authorization: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(
          { host: url.hostname, port: url.port, path, method: 'POST', headers: { ...postHeaders(), authorization, 'content-length': '60000' } },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (body += chunk));
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, body });
              req.destroy();
            });
          },
        );
        req.on('error', (error) => (req.destroyed ? undefined : reject(error)));
        req.flushHeaders();
        setTimeout(() => reject(new Error('no answer before the body')), 5_000).unref();
      });
    const wrongKey = await early(`/t/${tenant.slug}/mcp`, 'Bearer pcs_not-a-real-key-0000000000000000000000');
    expect(wrongKey.status).toBe(401);
    expect(JSON.parse(wrongKey.body)).toMatchObject({ error: { code: -32001 } });
    expect((await early('/t/no-such-tenant/mcp', `Bearer ${key}`)).status).toBe(404);
    // The gateway goes on serving.
    expect((await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), initBody())).status).toBe(200);
  });

  it('decodes the tenant segment as the router did, and carries the caller\'s trace id', async () => {
    const escaped = `%${tenant.slug.charCodeAt(0).toString(16)}${tenant.slug.slice(1)}`;
    expect((await raw('POST', `/t/${escaped}/mcp`, postHeaders(), initBody())).status).toBe(200);
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const refused = expectRpcError(await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders({ traceparent }), '{"jsonrpc":'), 400, -32700) as {
      error: { data: { traceId: string } };
    };
    expect(refused.error.data.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    // Over the router's parameter limit: no tenant has such a name (404), never handed to authentication. The router
    // refuses it before any route, so as problem+json (as an unknown path), without the path echoed.
    const long = await raw('POST', `/t/${'x'.repeat(150)}/mcp`, postHeaders(), initBody());
    expect([long.status, JSON.parse(long.body)]).toEqual([404, expect.objectContaining({ code: 'NOT_FOUND', traceId: expect.any(String) })]);
    expect(long.body).not.toContain('xxxx');
    // A malformed escape is not the fast path's to judge: the router answers it, 400.
    const malformed = await raw('POST', '/t/%E0%A4%A/mcp', postHeaders(), initBody());
    expect([malformed.status, JSON.parse(malformed.body)]).toEqual([400, expect.objectContaining({ code: 'BAD_REQUEST' })]);
    expect(malformed.body).not.toMatch(/FST_ERR|%A4/);
  });
});

describe('Host validation (DNS rebinding)', () => {
  it('refuses a Host that is not allowed, on every endpoint, before authentication', async () => {
    for (const [method, path] of [
      ['POST', `/t/${tenant.slug}/mcp`],
      ['GET', `/t/${tenant.slug}/mcp`],
      ['DELETE', `/t/${tenant.slug}/mcp`],
      ['GET', `/t/${tenant.slug}/sse`],
      ['POST', `/t/${tenant.slug}/messages?sessionId=x`],
    ] as const) {
      const res = await raw(
        method,
        path,
        { ...postHeaders(), host: 'evil.example' },
        method === 'POST' ? initBody() : undefined,
      );
      const body = expectRpcError(res, 403, -32003) as { error: { message: string } };
      expect(body.error.message).toBe('Host not allowed');
    }
    // Unauthenticated and from a bad host: still 403 first (nothing about the key is revealed).
    expectRpcError(
      await raw(
        'POST',
        `/t/${tenant.slug}/mcp`,
        { 'content-type': 'application/json', host: 'evil.example:80' },
        initBody(),
      ),
      403,
      -32003,
    );
    // Allowed names pass, with or without a port.
    expect(
      (
        await raw(
          'POST',
          `/t/${tenant.slug}/mcp`,
          { ...postHeaders(), host: 'gateway.example:443' },
          initBody(),
        )
      ).status,
    ).toBe(200);
  });
});

describe('Streamable HTTP GET and DELETE', () => {
  it('GET: 406 without text/event-stream, 400 without a session, 404 for an unknown one, 400 for a bad version', async () => {
    const sessionId = await newSession();
    const path = `/t/${tenant.slug}/mcp`;
    expectRpcError(
      await raw('GET', path, { ...auth(), accept: 'application/json', 'mcp-session-id': sessionId }),
      406,
      -32006,
    );
    expectRpcError(await raw('GET', path, { ...auth(), accept: 'text/event-stream' }), 400, -32600);
    expectRpcError(
      await raw('GET', path, { ...auth(), accept: 'text/event-stream', 'mcp-session-id': 'A'.repeat(43) }),
      404,
      -32004,
    );
    expectRpcError(
      await raw('GET', path, {
        ...auth(),
        accept: 'text/event-stream',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2099-01-01',
      }),
      400,
      -32600,
    );
    expectRpcError(
      await raw('GET', path, { accept: 'text/event-stream', 'mcp-session-id': sessionId }),
      401,
      -32001,
    );
    const ok = await raw('GET', path, {
      ...auth(),
      accept: 'text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-11-25',
    });
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toBe('text/event-stream');
    // Passed on at once by a buffering reverse proxy in front (nginx's header).
    expect(ok.headers['x-accel-buffering']).toBe('no');
  });

  it('DELETE: 400 without a session, 404 for an unknown one; after DELETE the session is 404 everywhere', async () => {
    const sessionId = await newSession();
    const path = `/t/${tenant.slug}/mcp`;
    expectRpcError(await raw('DELETE', path, auth()), 400, -32600);
    expectRpcError(await raw('DELETE', path, { ...auth(), 'mcp-session-id': 'not-a-session' }), 404, -32004);
    // An unsupported MCP-Protocol-Version is refused on DELETE as on GET and POST (the session stays).
    expectRpcError(await raw('DELETE', path, { ...auth(), 'mcp-session-id': sessionId, 'mcp-protocol-version': '1999-01-01' }), 400, -32600);
    expect((await raw('DELETE', path, { ...auth(), 'mcp-session-id': sessionId })).status).toBe(200);
    expectRpcError(await raw('DELETE', path, { ...auth(), 'mcp-session-id': sessionId }), 404, -32004);
    expectRpcError(
      await raw('GET', path, { ...auth(), accept: 'text/event-stream', 'mcp-session-id': sessionId }),
      404,
      -32004,
    );
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'ping' });
    const body = expectRpcError(
      await raw('POST', path, postHeaders({ 'mcp-session-id': sessionId }), ping),
      404,
      -32004,
    ) as { id: unknown };
    // The request's id is known: the refusal carries it (JSON-RPC 2.0 §5), as a refused protocol version does.
    expect(body.id).toBe(5);
  });
});

describe('an Mcp-Session-Id header sent twice', () => {
  it('is refused with 400 on POST, GET and DELETE, even naming the same live session twice, and the session stays', async () => {
    const sessionId = await newSession();
    const path = `/t/${tenant.slug}/mcp`;
    const twice = [sessionId, sessionId];
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'ping' });
    const refusal = expectRpcError(await raw('POST', path, postHeaders({ 'mcp-session-id': twice }), ping), 400, -32600) as { error: { message: string } };
    expect(refusal.error.message).toMatch(/one Mcp-Session-Id/);
    expectRpcError(await raw('GET', path, { ...auth(), accept: 'text/event-stream', 'mcp-session-id': twice }), 400, -32600);
    expectRpcError(await raw('DELETE', path, { ...auth(), 'mcp-session-id': twice }), 400, -32600);
    // Two different ids are no better than two copies of one.
    expectRpcError(await raw('DELETE', path, { ...auth(), 'mcp-session-id': [sessionId, 'A'.repeat(43)] }), 400, -32600);
    const answer = await raw('POST', path, postHeaders({ 'mcp-session-id': sessionId }), ping);
    expect(answer.status).toBe(200);
  });
});

describe('an empty MCP-Protocol-Version header', () => {
  it('is refused with 400 on POST, GET and DELETE like an unsupported version, not taken for a missing one', async () => {
    const sessionId = await newSession();
    const path = `/t/${tenant.slug}/mcp`;
    const empty = { 'mcp-session-id': sessionId, 'mcp-protocol-version': '' };
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'ping' });
    const refusals = [
      await raw('POST', path, postHeaders(empty), ping),
      await raw('GET', path, { ...auth(), accept: 'text/event-stream', ...empty }),
      await raw('DELETE', path, { ...auth(), ...empty }),
    ];
    for (const res of refusals) {
      const body = expectRpcError(res, 400, -32600) as { error: { message: string } };
      expect(body.error.message).toBe('Bad Request: unsupported MCP-Protocol-Version');
    }
    // The POST's request id is known, and its refusal carries it.
    expect((JSON.parse(refusals[0]?.body ?? '{}') as { id?: unknown }).id).toBe(5);
    // The session is still there: without the header at all, a request falls back to 2025-03-26 and is served.
    const served = await raw('POST', path, postHeaders({ 'mcp-session-id': sessionId }), ping);
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body)).toEqual({ jsonrpc: '2.0', id: 5, result: {} });
  });
});

describe('HEAD', () => {
  it('is 405 on the MCP and legacy SSE endpoints, naming the methods that are allowed; no stream is opened', async () => {
    const sessionId = await newSession();
    const onMcp = await raw('HEAD', `/t/${tenant.slug}/mcp`, { ...auth(), accept: 'text/event-stream', 'mcp-session-id': sessionId });
    expect(onMcp.status).toBe(405);
    expect(onMcp.headers['allow']).toBe('GET, POST, DELETE');
    const onSse = await raw('HEAD', `/t/${tenant.slug}/sse`, { ...auth(), accept: 'text/event-stream' });
    expect(onSse.status).toBe(405);
    expect(onSse.headers['allow']).toBe('GET');
  });
});

describe('methods neither transport defines', () => {
  it('are 405 with Allow on each endpoint, an unknown tenant included, without reading a declared body', async () => {
    const sessionId = await newSession();
    const cases = [
      ['PUT', 'mcp', 'GET, POST, DELETE'],
      ['PATCH', 'mcp', 'GET, POST, DELETE'],
      ['POST', 'sse', 'GET'],
      ['DELETE', 'sse', 'GET'],
      ['PUT', 'sse', 'GET'],
      ['GET', 'messages', 'POST'],
      ['DELETE', 'messages', 'POST'],
      ['PATCH', 'messages', 'POST'],
      ['HEAD', 'messages', 'POST'],
      ['TRACE', 'mcp', 'GET, POST, DELETE'],
      ['QUERY', 'mcp', 'GET, POST, DELETE'],
      ['TRACE', 'sse', 'GET'],
      ['QUERY', 'messages', 'POST'],
    ] as const;
    for (const [method, endpoint, allow] of cases) {
      for (const slug of [tenant.slug, 'no-such-tenant']) {
        const res = await raw(method, `/t/${slug}/${endpoint}`, { ...postHeaders({ 'mcp-session-id': sessionId }) }, method === 'HEAD' || method === 'GET' || method === 'TRACE' ? undefined : initBody());
        expect(res.status, `${method} ${endpoint}`).toBe(405);
        expect(res.headers['allow'], `${method} ${endpoint}`).toBe(allow);
        if (method !== 'HEAD') expect(JSON.parse(res.body)).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Method Not Allowed' } });
      }
    }
    // A body larger than the limit is not read: still 405, not 413, and the connection is closed.
    const big = await raw('PUT', `/t/${tenant.slug}/mcp`, postHeaders(), Buffer.alloc(8 * 1024 * 1024, 0x20));
    expect(big.status).toBe(405);
    expect(big.headers['connection']).toBe('close');
  });
});

describe('POST details', () => {
  it('refuses a body in a content coding (gzip, or labelled deflate but plain) with 415 and Accept-Encoding: identity', async () => {
    for (const [coding, body] of [['gzip', gzipSync(initBody())], ['deflate', initBody()], ['identity, br', initBody()]] as const) {
      const res = await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders({ 'content-encoding': coding }), body);
      expectRpcError(res, 415, -32015);
      expect(res.headers['accept-encoding']).toBe('identity');
    }
    expect((await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders({ 'content-encoding': 'identity' }), initBody())).status).toBe(200);
  });

  it('batches: empty is invalid, allowed on 2025-03-26, refused on 2025-06-18 and later; initialize cannot be batched', async () => {
    const path = `/t/${tenant.slug}/mcp`;
    const old = await newSession('2025-03-26');
    const current = await newSession('2025-06-18');
    const pings = JSON.stringify([
      { jsonrpc: '2.0', id: 'a', method: 'ping' },
      { jsonrpc: '2.0', id: 'b', method: 'ping' },
    ]);
    expectRpcError(await raw('POST', path, postHeaders({ 'mcp-session-id': old }), '[]'), 400, -32600);
    const batch = await raw(
      'POST',
      path,
      postHeaders({ 'mcp-session-id': old, 'mcp-protocol-version': '2025-03-26' }),
      pings,
    );
    expect(batch.status).toBe(200);
    expect(JSON.parse(batch.body)).toEqual([
      { jsonrpc: '2.0', id: 'a', result: {} },
      { jsonrpc: '2.0', id: 'b', result: {} },
    ]);
    expectRpcError(
      await raw(
        'POST',
        path,
        postHeaders({ 'mcp-session-id': current, 'mcp-protocol-version': '2025-06-18' }),
        pings,
      ),
      400,
      -32600,
    );
    expectRpcError(await raw('POST', path, postHeaders(), `[${initBody()}]`), 400, -32600);
    // Whether a session takes batches is its negotiated version's: not a missing or different header's.
    expectRpcError(await raw('POST', path, postHeaders({ 'mcp-session-id': current }), pings), 400, -32600);
    expectRpcError(await raw('POST', path, postHeaders({ 'mcp-session-id': current, 'mcp-protocol-version': '2025-03-26' }), pings), 400, -32600);

    // A batch is bounded (each of its requests runs at once), and an id still in progress is not served twice.
    const oldHeaders = postHeaders({ 'mcp-session-id': old, 'mcp-protocol-version': '2025-03-26' });
    const hundred = (from: number) => Array.from({ length: 100 }, (_, i) => ({ jsonrpc: '2.0', id: from + i, method: 'ping' }));
    expect((await raw('POST', path, oldHeaders, JSON.stringify(hundred(0)))).status).toBe(200);
    const tooMany = await raw('POST', path, oldHeaders, JSON.stringify([...hundred(1_000), { jsonrpc: '2.0', id: 'x', method: 'ping' }]));
    expectRpcError(tooMany, 400, -32600);
    expect(tooMany.body).toMatch(/at most 100/);
    // An invalid element is answered in place (JSON-RPC 2.0 §6); the valid ones are still served.
    const mixed = await raw('POST', path, oldHeaders, JSON.stringify([{ jsonrpc: '2.0', id: 'ok', method: 'ping' }, { foo: 1 }, { jsonrpc: '1.0', id: 'old', method: 'ping' }]));
    expect(mixed.status).toBe(200);
    const mixedAnswers = JSON.parse(mixed.body) as { id: unknown; result?: unknown; error?: { code: number } }[];
    expect(mixedAnswers).toHaveLength(3);
    expect(mixedAnswers.find((a) => a.id === 'ok')).toMatchObject({ result: {} });
    expect(mixedAnswers.filter((a) => a.error?.code === -32600).map((a) => a.id).sort()).toEqual([null, 'old'].sort());
    const onlyInvalid = await raw('POST', path, oldHeaders, JSON.stringify([{ foo: 1 }]));
    expect(onlyInvalid.status).toBe(200);
    expect(JSON.parse(onlyInvalid.body)).toMatchObject([{ id: null, error: { code: -32600 } }]);
    const twice = await raw('POST', path, oldHeaders, JSON.stringify([{ jsonrpc: '2.0', id: 'same', method: 'ping' }, { jsonrpc: '2.0', id: 'same', method: 'ping' }]));
    const answers = JSON.parse(twice.body) as { id: string; result?: unknown; error?: { code: number } }[];
    expect(answers.filter((a) => a.result !== undefined)).toHaveLength(1);
    expect(answers.filter((a) => a.error?.code === -32600)).toHaveLength(1);
    // Every request cancelled by its own batch: still input holding a request, so no 202 (MCP 2025-03-26), but an
    // empty answer, as for a single request its agent cancelled (found by review).
    const withdrawn = await raw('POST', path, oldHeaders, JSON.stringify([
      { jsonrpc: '2.0', id: 'p1', method: 'ping' },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'p1', reason: 'changed my mind' } },
    ]));
    expect(withdrawn.status).toBe(200);
    expect(withdrawn.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(withdrawn.body).toBe('');
    // Notifications alone are still accepted with 202.
    const notified = await raw('POST', path, oldHeaders, JSON.stringify([{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'gone' } }]));
    expect(notified.status).toBe(202);
  });

  it('initialize negotiates the version down to what the client speaks, or offers the latest', async () => {
    for (const version of ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05']) {
      const res = await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), initBody(version));
      expect(JSON.parse(res.body).result.protocolVersion).toBe(version);
    }
    const future = await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), initBody('2099-01-01'));
    expect(JSON.parse(future.body).result.protocolVersion).toBe('2025-11-25');
    // Missing required fields: invalid params, and no session is created.
    const bad = await raw(
      'POST',
      `/t/${tenant.slug}/mcp`,
      postHeaders(),
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }),
    );
    expectRpcError(bad, 400, -32602);
    expect(bad.headers['mcp-session-id']).toBeUndefined();
  });

  it('a body that is not UTF-8 is a parse error and one in another charset 415, and an integer id past 2^53 or a fractional one is invalid', async () => {
    const init = await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(), initBody());
    const session = { 'mcp-session-id': String(init.headers['mcp-session-id']) };
    // (The framework's route, which reads bodies for what the fast path leaves to it, is covered in mcp-routes.spec.ts.)
    const path = `/t/${tenant.slug}/mcp`;
    expectRpcError(await raw('POST', path, postHeaders(session), notUtf8Body), 400, -32700);
    expectRpcError(await raw('POST', path, postHeaders({ ...session, 'content-type': 'application/json; charset=latin1' }), notUtf8Body), 415, -32015);
    expectRpcError(await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders(session), '{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}'), 400, -32600);
    // MCP's ids are strings or integers: a fractional one is no id (the answer names none).
    const fractional = await raw('POST', path, postHeaders(session), '{"jsonrpc":"2.0","id":1.5,"method":"ping"}');
    expectRpcError(fractional, 400, -32600);
    expect(JSON.parse(fractional.body)).toMatchObject({ id: null });
    const served = await raw('POST', `/t/${tenant.slug}/mcp`, postHeaders({ ...session, 'content-type': 'application/json; charset="UTF-8"' }), '{"jsonrpc":"2.0","id":9007199254740991,"method":"ping"}');
    expect(served.status).toBe(200);
    expect(served.body).toContain('"id":9007199254740991');
  });

  it('a response or notification alone is accepted with 202 and no body', async () => {
    const sessionId = await newSession();
    const headers = postHeaders({ 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' });
    const answer = await raw(
      'POST',
      `/t/${tenant.slug}/mcp`,
      headers,
      JSON.stringify({ jsonrpc: '2.0', id: 'pcs.nobody.x', result: {} }),
    );
    expect(answer.status).toBe(202);
    expect(answer.body).toBe('');
    const cancel = await raw(
      'POST',
      `/t/${tenant.slug}/mcp`,
      headers,
      JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 42 } }),
    );
    expect(cancel.status).toBe(202);
  });
});

describe('legacy HTTP+SSE endpoints', () => {
  it('GET /sse needs text/event-stream and a key; POST /messages checks its session, content type and JSON', async () => {
    expectRpcError(
      await raw('GET', `/t/${tenant.slug}/sse`, { ...auth(), accept: 'application/json' }),
      406,
      -32006,
    );
    expectRpcError(await raw('GET', `/t/${tenant.slug}/sse`, { accept: 'text/event-stream' }), 401, -32001);
    expectRpcError(
      await raw('GET', `/t/no-such-tenant/sse`, { ...auth(), accept: 'text/event-stream' }),
      404,
      -32004,
    );
    const stream = await raw('GET', `/t/${tenant.slug}/sse`, { ...auth(), accept: 'text/event-stream' });
    expect(stream.status).toBe(200);
    const endpoint = /event: endpoint\ndata: (.+)\n/.exec(stream.body)?.[1] ?? '';
    expect(endpoint).toMatch(new RegExp(`^/t/${tenant.slug}/messages\\?sessionId=[A-Za-z0-9_-]{43}$`));

    const ping = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
    const messages = `/t/${tenant.slug}/messages`;
    expectRpcError(
      await raw('POST', messages, { ...auth(), 'content-type': 'application/json' }, ping),
      400,
      -32600,
    );
    expectRpcError(
      await raw(
        'POST',
        `${messages}?sessionId=${'B'.repeat(43)}`,
        { ...auth(), 'content-type': 'application/json' },
        ping,
      ),
      404,
      -32004,
    );
    // The stream above has closed, so its session is gone too.
    expectRpcError(
      await raw('POST', endpoint, { ...auth(), 'content-type': 'application/json' }, ping),
      404,
      -32004,
    );
    expectRpcError(
      await raw('POST', `${messages}?sessionId=x`, { ...auth(), 'content-type': 'text/plain' }, ping),
      415,
      -32015,
    );

    // On a live legacy session: bad JSON and a bad JSON-RPC shape.
    const open = new AbortController();
    const live = await fetch(`${gateway.url}/t/${tenant.slug}/sse`, {
      headers: { ...auth(), accept: 'text/event-stream' },
      signal: open.signal,
    });
    const reader = live.body?.getReader();
    let first = '';
    while (reader && !first.includes('sessionId='))
      first += new TextDecoder().decode((await reader.read()).value);
    const liveEndpoint = /data: (.+)\n/.exec(first)?.[1] ?? '';
    expectRpcError(
      await raw('POST', liveEndpoint, { ...auth(), 'content-type': 'application/json' }, '{"jsonrpc":'),
      400,
      -32700,
    );
    expectRpcError(
      await raw(
        'POST',
        liveEndpoint,
        { ...auth(), 'content-type': 'application/json' },
        '{"jsonrpc":"2.0","id":{}}',
      ),
      400,
      -32600,
    );
    // Bytes that are not UTF-8, and a body declared in another charset: refused, never read as other text.
    expectRpcError(await raw('POST', liveEndpoint, { ...auth(), 'content-type': 'application/json' }, notUtf8Body), 400, -32700);
    expectRpcError(await raw('POST', liveEndpoint, { ...auth(), 'content-type': 'application/json; charset=latin1' }, ping), 415, -32015);
    // A body in a content coding the gateway does not apply: 415, never read as it stands (here: labelled deflate,
    // sent plain).
    const coded = await raw('POST', liveEndpoint, { ...auth(), 'content-type': 'application/json', 'content-encoding': 'deflate' }, ping);
    expectRpcError(coded, 415, -32015);
    expect(coded.headers['accept-encoding']).toBe('identity');
    expect(
      (await raw('POST', liveEndpoint, { ...auth(), 'content-type': 'application/json', 'content-encoding': 'identity' }, ping)).status,
    ).toBe(202);
    // A number JSON.parse would change is refused before the 202 (with the request's id), never passed on as another value.
    const inexact = await raw('POST', liveEndpoint, { ...auth(), 'content-type': 'application/json' }, '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"n":9007199254740993}}}');
    expectRpcError(inexact, 400, -32602);
    expect(JSON.parse(inexact.body).id).toBe(7);
    open.abort();
  });

  it('answers concurrent initialize messages on one legacy session with one session: the others are refused', async () => {
    const open = new AbortController();
    const live = await fetch(`${gateway.url}/t/${tenant.slug}/sse`, { headers: { ...auth(), accept: 'text/event-stream' }, signal: open.signal });
    const reader = live.body?.getReader();
    if (!reader) throw new Error('no stream');
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('sessionId=')) text += decoder.decode((await reader.read()).value);
    const endpoint = /data: (.+)\n/.exec(text)?.[1] ?? '';
    const initialize = (id: number) =>
      JSON.stringify({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'racer', version: '1' } } });
    // Each POST is answered 202 at once and handled concurrently; only the first may connect the upstreams.
    const posted = await Promise.all([1, 2, 3, 4, 5].map((id) => raw('POST', endpoint, { ...auth(), 'content-type': 'application/json' }, initialize(id))));
    expect(posted.map((r) => r.status)).toEqual([202, 202, 202, 202, 202]);
    const messages: { id: number; result?: unknown; error?: { message: string } }[] = [];
    const deadline = Date.now() + 10_000;
    while (messages.length < 5 && Date.now() < deadline) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += decoder.decode(chunk.value);
      const events = text.split('\n\n');
      text = events.pop() ?? '';
      for (const event of events) {
        const data = /^data: (.*)$/m.exec(event)?.[1];
        if (data?.startsWith('{')) messages.push(JSON.parse(data));
      }
    }
    open.abort();
    expect(messages).toHaveLength(5);
    expect(messages.filter((m) => m.result !== undefined)).toHaveLength(1);
    const refused = messages.filter((m) => m.error !== undefined);
    expect(refused).toHaveLength(4);
    for (const m of refused) expect(m.error?.message).toMatch(/already initialised/);
  });

  it('bounds the requests one legacy session has under way: past 96, a POST is refused 429 until answers come', async () => {
    // An upstream that answers initialize and tools/list, and holds every tools/call until it is let go.
    const held: ServerResponse[] = [];
    const upstream = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        if (req.method !== 'POST') return void res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
        const message = JSON.parse(body) as { id?: number; method: string; params?: { protocolVersion?: string } };
        if (message.id === undefined) return void res.writeHead(202).end();
        if (message.method === 'tools/call') return void held.push(Object.assign(res, { callId: message.id }));
        const result =
          message.method === 'initialize'
            ? { protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'holding', version: '1' } }
            : { tools: [{ name: 'wait', inputSchema: { type: 'object' } }] };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'holding-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      });
    });
    upstream.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const open = new AbortController();
    try {
      const busyTenant = await createTestTenant(db);
      await writeActiveSnapshot(db, busyTenant.id, ALLOW_ALL);
      const { key: busyKey } = await createAgentWithKey(db, busyTenant.id, 'busy-agent');
      const { port } = upstream.address() as { port: number };
      await db.upstream.create({
        data: { tenantId: busyTenant.id, name: 'hold', toolPrefix: 'hold', transport: 'streamable_http', url: `http://127.0.0.1:${port}/mcp`, connectTimeoutMs: 5_000, callTimeoutMs: 30_000 },
      });
      await gateway.dataPlane.refreshAll();
      const headers = { authorization: `Bearer ${busyKey}`, 'content-type': 'application/json' };
      const live = await fetch(`${gateway.url}/t/${busyTenant.slug}/sse`, { headers: { authorization: headers.authorization, accept: 'text/event-stream' }, signal: open.signal });
      const reader = live.body?.getReader();
      if (!reader) throw new Error('no stream');
      const decoder = new TextDecoder();
      let text = '';
      const readUntil = async (needle: string) => {
        while (!text.includes(needle)) text += decoder.decode((await reader.read()).value);
      };
      await readUntil('sessionId=');
      const endpoint = /data: (.+)\n/.exec(text)?.[1] ?? '';
      const post = (message: Record<string, unknown>) => raw('POST', endpoint, headers, JSON.stringify({ jsonrpc: '2.0', ...message }));
      expect((await post({ id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'busy', version: '1' } } })).status).toBe(202);
      await readUntil('"id":1');
      expect((await post({ method: 'notifications/initialized' })).status).toBe(202);

      const call = (id: number) => post({ id, method: 'tools/call', params: { name: 'hold__wait', arguments: {} } });
      for (let id = 100; id < 100 + 96; id++) expect((await call(id)).status).toBe(202);
      const refused = await call(999);
      const refusal = expectRpcError(refused, 429, -32029);
      expect((refusal['error'] as { message: string }).message).toMatch(/at most 96/);
      // Its id was read: the refusal names it (JSON-RPC: null only when it could not be).
      expect(refusal['id']).toBe(999);
      expect(refused.headers['retry-after']).toBe('1');
      // Notifications are not requests: they still go through.
      expect((await post({ method: 'notifications/roots/list_changed' })).status).toBe(202);
      await vi.waitFor(() => expect(held.length).toBeGreaterThan(0), { timeout: 5_000 });
      // One answer comes: one more request may go.
      const first = held.shift() as ServerResponse & { callId: number };
      first.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: first.callId, result: { content: [] } }));
      await vi.waitFor(async () => expect((await call(1_000)).status).toBe(202), { timeout: 5_000, interval: 100 });
    } finally {
      open.abort();
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  }, 30_000);

  it('ends a legacy session whose stream closed while it was being set up, instead of keeping it with its upstreams', async () => {
    // An upstream that accepts connections and never answers: initialize waits for its connect timeout.
    const sockets = new Set<Socket>();
    const silent = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'errors-spec' });
    try {
      const slowTenant = await createTestTenant(db);
      await writeActiveSnapshot(db, slowTenant.id, ALLOW_ALL);
      const { key: slowKey } = await createAgentWithKey(db, slowTenant.id, 'slow-agent');
      const { port } = silent.address() as { port: number };
      await db.upstream.create({
        data: { tenantId: slowTenant.id, name: 'slow', toolPrefix: 'slow', transport: 'streamable_http', url: `http://127.0.0.1:${port}/mcp`, connectTimeoutMs: 1_000, callTimeoutMs: 2_000 },
      });
      await gateway.dataPlane.refreshAll();
      const headers = { authorization: `Bearer ${slowKey}` };
      const open = new AbortController();
      const live = await fetch(`${gateway.url}/t/${slowTenant.slug}/sse`, { headers: { ...headers, accept: 'text/event-stream' }, signal: open.signal });
      const reader = live.body?.getReader();
      if (!reader) throw new Error('no stream');
      let text = '';
      while (!text.includes('sessionId=')) text += new TextDecoder().decode((await reader.read()).value);
      const endpoint = /data: (.+)\n/.exec(text)?.[1] ?? '';
      const sessionId = new URL(endpoint, gateway.url).searchParams.get('sessionId') ?? '';
      const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'leaver', version: '1' } } });
      expect((await raw('POST', endpoint, { ...headers, 'content-type': 'application/json' }, init)).status).toBe(202);
      // The agent goes while the upstream is still being connected.
      open.abort();
      // initialize ends after the upstream's connect timeout (1 s): the session is then ended, not kept for its idle TTL.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await redis.exists(`pcs:session:${sessionId}`)).toBe(0);
    } finally {
      redis.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
