/**
 * An upstream disabled while an agent's initialize waits for its stdio server to start (initializeWaitMs, 10 s by
 * default: `npx` servers take seconds) does not stay attached to the new session. The reload's retiring runs over the
 * sessions live then, which this one was not yet: the session is held to the registry once it is live, so the disabled
 * upstream's process (the tenant's credentials in its environment) stops at once rather than running on for the
 * session's whole life, in a retired pool outside the bound.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const fixture = path.resolve(__dirname, '../../../libs/gateway/upstream/src/test-fixtures/stdio-fixture-server.mjs');
const dir = mkdtempSync(path.join(tmpdir(), 'disabled-during-initialize-'));
const pidFile = path.join(dir, 'pid');
/** The fixture server, 2 s slow to start (it writes its pid first). */
const slow = path.join(dir, 'slow.mjs');
writeFileSync(slow, `import { writeFileSync } from 'node:fs';
writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
await new Promise((resolve) => setTimeout(resolve, 2_000));
await import(${JSON.stringify(fixture)});
`);
const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'slow', toolPrefix: 'slow', transport: 'stdio', command: process.execPath, args: [slow], connectTimeoutMs: 8_000, callTimeoutMs: 5_000 } as never,
  });
  key = (await createAgentWithKey(db, tenant.id, 'race-agent')).key;
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '500' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
  rmSync(dir, { recursive: true, force: true });
});

describe('an upstream disabled while an initialize waits for its stdio server', () => {
  it('does not leave its process attached to the new session', async () => {
    const client = new Client({ name: 'disabled-during-initialize', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } });
    const connecting = client.connect(transport);
    await waitFor(() => existsSync(pidFile), { timeoutMs: 5_000, description: 'the stdio server spawned' });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // Disabled (as the control plane does: the version bumped) while the initialize still waits.
    await db.upstream.updateMany({ where: { tenantId: tenant.id, name: 'slow' }, data: { enabled: false, version: { increment: 1 } } });
    await gateway.dataPlane.refreshAll();
    await connecting;
    expect((await client.listTools()).tools.some((tool) => tool.name.startsWith('slow'))).toBe(false);
    // Nothing of the disabled upstream runs on for the session (stopped as a reload stops it for sessions live then).
    await waitFor(() => !isAlive(pid), { timeoutMs: 5_000, description: "the disabled upstream's process gone" });
    await transport.terminateSession();
    await client.close();
  }, 40_000);
});
