/**
 * Issue #4's distribution test: three gateway processes (the built bundle, as production runs it) serve one tenant.
 * A new policy snapshot written the way the control plane's writer writes it (one transaction: next version active,
 * previous deactivated; then a notice on CHANGE_CHANNELS.snapshots) is enforced by all three at once; one written
 * WITHOUT the notice is still enforced by all three once their periodic reconcile runs.
 * Needs the built gateway and demo-upstreams (`npm test` builds them first).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { GATEWAY_RPC } from '@portcullis/gateway/core';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeActiveSnapshot, type FixturePolicy } from '../../apps/gateway/src/testing/policy-fixtures';
import { freePort, startBuiltApp, waitForReady, type AppProcess } from '../support/app-process';

/** Replicas for the notice test never reconcile during it, so only the Redis notice can explain the result. */
const NO_RECONCILE_MS = 600_000;
/** Replicas for the reconcile test compare with the database this often. */
const RECONCILE_MS = 1_000;
/**
 * The target is 1 s (typically tens of ms: see `npm run bench:policy-propagation` in docs/benchmarks.md). The test
 * allows 3 s because it runs beside other suites on a 2-core machine, where one probe round trip alone can take
 * hundreds of milliseconds.
 */
const NOTICE_BOUND_MS = 3_000;
const ctx = testContext();
const processes: AppProcess[] = [];
let db: SystemPrismaClient;
let redis: Redis;
let tenant: TestTenant;
let agentId: string;
let apiKey: string;
let demoPort: number;

const denyAll = (): FixturePolicy => ({ defaultEffect: 'deny', agentClientIds: [agentId] });
const allowEcho = (): FixturePolicy => ({
  defaultEffect: 'deny',
  agentClientIds: [agentId],
  rules: [{ id: 'agent-echoes', subjects: [{ type: 'agent_client', agentClientId: agentId }], targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }], effect: 'allow' }],
});

/** 'allowed' | 'denied' for one echo call through one gateway (any other failure throws). */
async function outcome(client: Client): Promise<'allowed' | 'denied'> {
  try {
    const result = await client.callTool({ name: 'ks__echo', arguments: { message: 'ping' } });
    if (result.isError) throw new Error(`echo failed: ${JSON.stringify(result.content)}`);
    return 'allowed';
  } catch (error) {
    if (error instanceof McpError && error.code === GATEWAY_RPC.POLICY_DENIED) return 'denied';
    throw error;
  }
}

/** Milliseconds from `since` until every gateway answers `expected`, polling each every 10 ms, bounded by `timeoutMs`. */
async function timeUntilAll(clients: readonly Client[], expected: 'allowed' | 'denied', since: number, timeoutMs: number): Promise<number[]> {
  return Promise.all(
    clients.map(async (client) => {
      for (let attempts = 0; attempts < 2_000; attempts++) {
        if ((await outcome(client)) === expected) return performance.now() - since;
        if (performance.now() - since > timeoutMs) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`a gateway did not answer ${expected} within ${timeoutMs} ms`);
    }),
  );
}

/** Three gateway processes (the built bundle) and one MCP session on each. */
async function startReplicas(reconcileMs: number): Promise<{ clients: Client[]; stop: () => Promise<void> }> {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const gateways = ports.map((port) =>
    startBuiltApp('gateway', {
      GATEWAY_PORT: String(port),
      DATABASE_URL: ctx.databaseUrl,
      DATABASE_SYSTEM_URL: ctx.systemDatabaseUrl,
      REDIS_URL: ctx.redisUrl,
      GATEWAY_UPSTREAM_ALLOW_PRIVATE: 'true',
      GATEWAY_POLICY_RECONCILE_MS: String(reconcileMs),
      LOG_LEVEL: 'warn',
    }),
  );
  processes.push(...gateways);
  await Promise.all(gateways.map((gateway, index) => waitForReady(`http://127.0.0.1:${ports[index]}/readyz`, gateway, 90_000)));
  const clients: Client[] = [];
  for (const port of ports) {
    const client = new Client({ name: 'policy-propagation', version: '1.0.0' }, { capabilities: {} });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${apiKey}` } } }),
    );
    clients.push(client);
  }
  return {
    clients,
    stop: async () => {
      await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
      await Promise.all(gateways.map((gateway) => gateway.stop(5_000)));
    },
  };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'policy-propagation-e2e' });
  demoPort = await freePort();
  const demo = startBuiltApp('demo-upstreams', { DEMO_UPSTREAMS_PORT: String(demoPort), LOG_LEVEL: 'warn' });
  processes.push(demo);
  await waitForReady(`http://127.0.0.1:${demoPort}/healthz`, demo);

  tenant = await createTestTenant(db);
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `http://127.0.0.1:${demoPort}/kitchen-sink/mcp` } });
  const agent = await db.agentClient.create({ data: { tenantId: tenant.id, name: 'propagation-agent' } });
  agentId = agent.id;
  apiKey = generateApiKey();
  await db.apiKey.create({ data: { tenantId: tenant.id, name: 'propagation', keyHash: hashApiKey(apiKey), displayPrefix: apiKey.slice(0, 10), agentClientId: agent.id } });
}, 60_000);

afterAll(async () => {
  await Promise.all(processes.map((app) => app.stop(5_000)));
  redis?.disconnect();
  await db?.$disconnect();
});

describe('a policy change reaches every gateway replica', () => {
  it('is enforced by all three processes right after the commit when the notice is published', async () => {
    await writeActiveSnapshot(db, tenant.id, denyAll());
    const replicas = await startReplicas(NO_RECONCILE_MS);
    try {
      expect(await Promise.all(replicas.clients.map(outcome))).toEqual(['denied', 'denied', 'denied']);
      const written = await writeActiveSnapshot(db, tenant.id, allowEcho(), { publish: redis });
      const latencies = await timeUntilAll(replicas.clients, 'allowed', written.committedAt, NOTICE_BOUND_MS);
      expect(Math.max(...latencies)).toBeLessThanOrEqual(NOTICE_BOUND_MS);
    } finally {
      await replicas.stop();
    }
  }, 120_000);

  it('is enforced by all three through the periodic reconcile when the notice is never published', async () => {
    await writeActiveSnapshot(db, tenant.id, allowEcho());
    const replicas = await startReplicas(RECONCILE_MS);
    try {
      expect(await Promise.all(replicas.clients.map(outcome))).toEqual(['allowed', 'allowed', 'allowed']);
      const written = await writeActiveSnapshot(db, tenant.id, denyAll());
      // Nothing was published: only reconciliation (every RECONCILE_MS) can bring the change; allow slack for load.
      const latencies = await timeUntilAll(replicas.clients, 'denied', written.committedAt, 3 * RECONCILE_MS + 2_000);
      expect(Math.max(...latencies)).toBeLessThanOrEqual(3 * RECONCILE_MS + 2_000);
    } finally {
      await replicas.stop();
    }
  }, 120_000);
});
