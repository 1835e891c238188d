/**
 * An API key's expiry ends the SSE streams opened with it when it passes, as it ends its requests: with no reload of
 * the keys in between (the periodic one set to an hour here), the stream of the expired key closes within moments of
 * its expiry, and the stream of a key without expiry stays open.
 */
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let expiring: string;
let lasting: string;
let expiresAt: number;

/** An initialize POST with this key: its status and the session it made. */
async function initialize(key: string): Promise<{ status: number; session: string }> {
  const response = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'expiry-spec', version: '1' } },
    }),
  });
  await response.text();
  return { status: response.status, session: response.headers.get('mcp-session-id') ?? '' };
}

/** A session of this key with its standalone GET stream open; `endedAt()` says when the gateway closed the stream. */
async function openStream(key: string): Promise<{ endedAt: () => number | undefined; close: () => void }> {
  const { status, session } = await initialize(key);
  expect(status).toBe(200);
  const controller = new AbortController();
  const stream = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
    headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' },
    signal: controller.signal,
  });
  expect(stream.status).toBe(200);
  let endedAt: number | undefined;
  void (async () => {
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    try {
      while (!(await reader.read()).done);
    } catch {
      // aborted by the test
    }
    endedAt = Date.now();
  })();
  return { endedAt: () => endedAt, close: () => controller.abort() };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  const agent = await db.agentClient.create({ data: { tenantId: tenant.id, name: 'expiring' } });
  expiring = generateApiKey();
  expiresAt = Date.now() + 4_000;
  await db.apiKey.create({
    data: { tenantId: tenant.id, name: 'expiring', keyHash: hashApiKey(expiring), displayPrefix: expiring.slice(0, 10), agentClientId: agent.id, expiresAt: new Date(expiresAt) },
  });
  ({ key: lasting } = await createAgentWithKey(db, tenant.id, 'lasting'));
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' },
  });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

describe('SSE streams of an API key that expires', () => {
  it('close when the key expires, without waiting for a reload; streams of other keys stay open', async () => {
    const doomed = await openStream(expiring);
    const other = await openStream(lasting);
    expect(Date.now()).toBeLessThan(expiresAt);

    const endedAt = await waitFor(doomed.endedAt, { timeoutMs: 10_000, description: 'the expired key\'s stream closed' });
    expect(endedAt).toBeGreaterThanOrEqual(expiresAt);
    expect(endedAt - expiresAt).toBeLessThan(1_500);
    expect((await initialize(expiring)).status).toBe(401);
    expect(gateway.logs()).toContain('closed an SSE stream whose credential expired');

    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(other.endedAt()).toBeUndefined();
    other.close();
  }, 30_000);
});
