/**
 * An upstream that leaves the tenant (disabled), or whose credentials are rotated, has its stdio processes stopped as
 * soon as the replica's registry reloads (docs/architecture.md: "stdio processes stopped"), not left running with the
 * tenant's (old) credentials until they idle out (GATEWAY_STDIO_IDLE_MS).
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseKeyring, sealJson, upstreamSecretContext } from '@portcullis/auth/secrets';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const fixture = path.resolve(__dirname, '../../../libs/gateway/upstream/src/test-fixtures/stdio-fixture-server.mjs');
const ctx = testContext();
const KEYRING = `k1:${randomBytes(32).toString('base64')}`;
const keyring = parseKeyring(KEYRING);
let db: SystemPrismaClient;
let redis: Redis;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let rotatedId: string;

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The stdio server's env as the control plane seals it: API_TOKEN `name`, with a random part. */
const sealedEnv = (name: string) =>
  new Uint8Array(sealJson(keyring, { API_TOKEN: `${name}-${randomBytes(12).toString('hex')}` }, upstreamSecretContext(tenant.id, rotatedId, 'env')).ciphertext);

const connect = async (): Promise<Client> => {
  const client = new Client({ name: 'stdio-departed', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  return client;
};

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'stdio-departed' });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'fx', toolPrefix: 'fx', transport: 'stdio', command: process.execPath, args: [fixture], connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never,
  });
  const rotated = await db.upstream.create({
    data: { tenantId: tenant.id, name: 'rot', toolPrefix: 'rot', transport: 'stdio', command: process.execPath, args: [fixture], connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never,
  });
  rotatedId = (rotated as { id: string }).id;
  await db.upstream.update({ where: { id: rotatedId }, data: { envCiphertext: sealedEnv('old-token'), encryptionKeyId: keyring.activeKeyId } as never });
  key = (await createAgentWithKey(db, tenant.id, 'departed-agent')).key;
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '500', GATEWAY_SECRETS_KEYRING: KEYRING } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  redis?.disconnect();
  await db?.$disconnect();
});

describe('a stdio upstream the tenant disables', () => {
  it('has its process stopped once the registry reloads', async () => {
    const client = await connect();
    const result = await client.callTool({ name: 'fx__pid', arguments: {} });
    const pid = (result.structuredContent as { pid: number }).pid;
    expect(isAlive(pid)).toBe(true);

    await db.upstream.updateMany({ where: { tenantId: tenant.id, name: 'fx' }, data: { enabled: false } });
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    await waitFor(async () => !(await client.listTools()).tools.some((tool) => tool.name === 'fx__pid'), { timeoutMs: 10_000, description: 'fx gone from the listing' });
    // Stopped: stdin closed, SIGTERM (the fixture exits on either), within a few seconds; not after the 60 s idle time.
    await expect(waitFor(() => !isAlive(pid), { timeoutMs: 5_000, description: 'the disabled upstream\'s process gone' })).resolves.toBe(true);
    await client.close();
  }, 30_000);
});

describe('a stdio upstream whose credentials are rotated', () => {
  it('has the process started with the old ones stopped once the registry reloads, and the next call start a new one', async () => {
    const client = await connect();
    const pidOf = async () => ((await client.callTool({ name: 'rot__pid', arguments: {} })).structuredContent as { pid: number }).pid;
    const pid = await pidOf();
    expect(isAlive(pid)).toBe(true);

    // As the control plane's update does: the env sealed afresh, the version bumped, the change announced.
    await db.upstream.update({ where: { id: rotatedId }, data: { envCiphertext: sealedEnv('new-token'), version: { increment: 1 } } as never });
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    await gateway.dataPlane.refreshAll();
    await expect(waitFor(() => !isAlive(pid), { timeoutMs: 8_000, description: 'the process with the old credentials gone' })).resolves.toBe(true);
    const next = await pidOf();
    expect(next).not.toBe(pid);
    expect(isAlive(next)).toBe(true);
    await client.close();
  }, 30_000);
});
