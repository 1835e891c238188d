/**
 * A call under way when the key that made it is revoked. The gateway ends the SSE streams of a key once it is revoked
 * (standalone GET, legacy SSE, resumed POST streams, and the SSE stream a POST turned into: `revalidateStreams`), and
 * refuses a task's result or a held call's go-ahead to a credential that is gone (`credentialsAfterApproval`). A POST's
 * stream ends with an error for each of its requests in place of their results. Before, it carried the call's progress
 * and finally its result to the revoked key's holder, however long the call ran (up to an hour).
 */
import { connect } from 'node:net';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { startRecordingUpstream, type RecordingUpstream } from './testing/recording-upstream';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let upstream: RecordingUpstream;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await startRecordingUpstream();
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, connectTimeoutMs: 10_000, callTimeoutMs: 30_000, name: 'recorder', toolPrefix: 'rec', transport: 'streamable_http', url: upstream.url } as never,
  });
  // Keep-alives every 500 ms: the slow call's POST turns into an SSE stream within a second.
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SSE_KEEPALIVE_MS: '500', GATEWAY_SSE_REPLAY_TTL_MS: '60000' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  const closed = new Promise<void>((resolve) => upstream?.server.close(() => resolve()));
  upstream?.server.closeAllConnections();
  await closed;
  await db?.$disconnect();
});

describe('a call under way when its key is revoked', () => {
  it("does not hand the call's result to the revoked key's holder on the POST's SSE stream", async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'revoked-mid-call');
    await gateway.dataPlane.refreshAll();
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    const sessionId = init.headers.get('mcp-session-id') ?? '';

    const call = postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'tools/call', params: { name: 'rec__slow', arguments: { ms: 4_000 } } });
    const response = await call;
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    // The key is revoked (and every replica told) while the call runs.
    await db.apiKey.updateMany({ where: { agentClientId: agentId }, data: { revokedAt: new Date() } });
    await gateway.dataPlane.refreshAll();
    // The key is refused from now on...
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(401);
    // ...and the stream it opened ends with an error instead of the result.
    const text = await response.text();
    expect(text).not.toContain('slept 4000');
    expect(text).toContain('"reason":"credential_no_longer_valid"');
  }, 30_000);
  it("relays nothing more of the upstream's to the revoked key's holder: the stream ends with the error at once", async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'revoked-mid-stream');
    await gateway.dataPlane.refreshAll();
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const response = await postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'tools/call', params: { name: 'rec__tick', arguments: { ms: 6_000 }, _meta: { progressToken: 'p1' } } });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    const revoked: { at?: number } = {};
    const afterRevocation: string[] = [];
    const reading = (async () => {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        const part = decoder.decode(chunk.value, { stream: true });
        text += part;
        // Half a second for the revocation to take effect.
        if (revoked.at !== undefined && Date.now() - revoked.at > 500) afterRevocation.push(...(part.match(/tick-\d+/g) ?? []));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(text).toContain('tick-');
    await db.apiKey.updateMany({ where: { agentClientId: agentId }, data: { revokedAt: new Date() } });
    await gateway.dataPlane.refreshAll();
    revoked.at = Date.now();
    await reading;
    expect(Date.now() - revoked.at).toBeLessThan(3_000);
    expect(text).not.toContain('"ticked"');
    expect(text).toContain('"reason":"credential_no_longer_valid"');
    expect(afterRevocation).toEqual([]);
  }, 30_000);

  it("does not hand a batch's results to the revoked key's holder (2025-03-26)", async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'revoked-mid-batch');
    await gateway.dataPlane.refreshAll();
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const init = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } }),
    });
    await init.text();
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const response = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-03-26' },
      body: JSON.stringify([{ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'rec__slow', arguments: { ms: 4_000 } } }]),
    });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    await db.apiKey.updateMany({ where: { agentClientId: agentId }, data: { revokedAt: new Date() } });
    await gateway.dataPlane.refreshAll();
    const text = await response.text();
    expect(text).not.toContain('slept 4000');
    expect(text).toContain('"reason":"credential_no_longer_valid"');
  }, 30_000);
});

/**
 * A POST authenticated from its headers, whose body arrives after its key was revoked (and the gateway reloaded): the
 * call does not run, nor does its result reach the revoked key's holder. The credential is checked again once the body
 * is in (and after the session lookup), as the GET streams check it right before they open (`refuseIfRevoked`).
 */
describe('a POST whose body arrives after its key was revoked', () => {
  it('is refused, not run and answered to the revoked key', async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'revoked-during-upload');
    await gateway.dataPlane.refreshAll();
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await (await postInSession(gateway, tenant.slug, key, sessionId, { method: 'notifications/initialized' })).text();

    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'rec__echo', arguments: { message: 'ran-after-revocation' } } });
    const { port } = new URL(gateway.url);
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Headers and the first byte of the body, while the key is good.
    socket.write(
      [
        `POST /t/${tenant.slug}/mcp HTTP/1.1`,
        `host: 127.0.0.1:${port}`,
        `authorization: Bearer ${key}`,
        'content-type: application/json',
        'accept: application/json, text/event-stream',
        `mcp-session-id: ${sessionId}`,
        'mcp-protocol-version: 2025-11-25',
        `content-length: ${Buffer.byteLength(body)}`,
        'connection: close',
        '',
        body.slice(0, 1),
      ].join('\r\n'),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Revoked, and this gateway has reloaded: the key is refused from now on.
    await db.apiKey.updateMany({ where: { agentClientId: agentId }, data: { revokedAt: new Date() } });
    await gateway.dataPlane.refreshAll();
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(401);
    // The rest of the body, after the revocation took effect.
    socket.write(body.slice(1));
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));

    expect(answer).not.toContain('ran-after-revocation');
    expect(answer).toMatch(/^HTTP\/1\.1 (401|403)|credential_no_longer_valid/);
  }, 30_000);
});
