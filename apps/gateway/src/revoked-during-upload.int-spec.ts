/**
 * A POST authenticated from its headers, whose body arrives after its key was revoked (and the gateway reloaded): the
 * call does not run, nor does its result reach the revoked key's holder. The credential is checked again once the body
 * is in (and after the session lookup), as the GET streams check it right before they open (`refuseIfRevoked`).
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
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  const closed = new Promise<void>((resolve) => upstream?.server.close(() => resolve()));
  upstream?.server.closeAllConnections();
  await closed;
  await db?.$disconnect();
});

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
