/**
 * A replica dies in the middle of a call (SIGKILL: no shutdown, no goodbye). The official SDK client, behind a proxy
 * that now sends everything to another replica (the built bundle, as production runs it), resumes the call's stream
 * there with Last-Event-ID. That replica sees the dead one's writer lease lapse with no answer logged and answers the
 * call with an error within about the lease, where before the agent waited out the replay log's lifetime (two minutes here) or its
 * own timeout. A replica that is alive but merely slow is not mistaken for a dead one: its answer arrives through the
 * other replica after many lease lengths. A replica that shuts down gracefully cancels its calls, and the agent
 * resuming elsewhere reads the cancellation from the log. Needs the built gateway and demo-upstreams (`npm test` builds them first).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { GATEWAY_RPC } from '@portcullis/gateway/core';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, type BreakableProxy } from '../../apps/gateway/src/testing/gateway-harness';
import { writeActiveSnapshot } from '../../apps/gateway/src/testing/policy-fixtures';
import { freePort, startBuiltApp, waitForReady, type AppProcess } from '../support/app-process';

const KEEP_ALIVE_MS = 200;
/** The writer's lease: one keep-alive interval and 10 s (its floor); the log itself would live on for two minutes. */
const LEASE_MS = KEEP_ALIVE_MS + 10_000;
const REPLAY_TTL_MS = 120_000;
const ctx = testContext();
const processes: AppProcess[] = [];
let db: SystemPrismaClient;
let tenant: TestTenant;
let apiKey: string;
/** Replicas: `doomed` is killed mid-call; `retiring` shuts down gracefully mid-call; `survivor` takes over; `slow` stays alive. */
let doomed: { url: string; app: AppProcess };
let retiring: { url: string; app: AppProcess };
let survivor: { url: string; app: AppProcess };
let slow: { url: string; app: AppProcess };

async function startGateway(env: Record<string, string> = {}): Promise<{ url: string; app: AppProcess }> {
  const port = await freePort();
  const app = startBuiltApp('gateway', {
    GATEWAY_PORT: String(port),
    DATABASE_URL: ctx.databaseUrl,
    DATABASE_SYSTEM_URL: ctx.systemDatabaseUrl,
    REDIS_URL: ctx.redisUrl,
    GATEWAY_UPSTREAM_ALLOW_PRIVATE: 'true',
    GATEWAY_SSE_KEEPALIVE_MS: String(KEEP_ALIVE_MS),
    GATEWAY_SSE_REPLAY_TTL_MS: String(REPLAY_TTL_MS),
    LOG_LEVEL: 'warn',
    ...env,
  });
  processes.push(app);
  const url = `http://127.0.0.1:${port}`;
  await waitForReady(`${url}/readyz`, app, 90_000);
  return { url, app };
}

/** An SDK client whose every connection goes through `proxy` (whose target can change, as behind a balancer). */
async function connect(proxy: BreakableProxy): Promise<Client> {
  const client = new Client({ name: 'replica-loss-e2e', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${proxy.url}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${apiKey}` } },
      reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 5 },
    }),
  );
  return client;
}

/**
 * A call that stays silent for `steps` × `intervalMs` (then answers: the agent asks for no progress and no logs), and a
 * promise of the first event id the agent holds.
 */
function slowCall(client: Client, intervalMs: number, steps = 1): { answer: Promise<unknown>; primed: Promise<void> } {
  let primed!: () => void;
  const priming = new Promise<void>((resolve) => (primed = resolve));
  const answer = client.callTool({ name: 'ks__slow_count', arguments: { steps, interval_ms: intervalMs } }, undefined, {
    timeout: 60_000,
    onresumptiontoken: () => primed(),
  });
  return { answer, primed: priming };
}

/** An SDK client behind a proxy to `target` (the test may point the proxy elsewhere), both closed after `use`. */
async function behindProxy(target: string, use: (proxy: BreakableProxy, client: Client) => Promise<void>): Promise<void> {
  const proxy = await startProxy(target);
  const client = await connect(proxy);
  try {
    await use(proxy, client);
  } finally {
    await client.close().catch(() => undefined);
    await proxy.close();
  }
}

/** A 40 s call that is expected to fail: its error (an Error saying so if it was answered), once the agent holds an id. */
function failingCall(client: Client): { failure: Promise<unknown>; primed: Promise<void> } {
  const call = slowCall(client, 10_000, 4);
  const failure = call.answer.then(
    () => new Error('the call was answered'),
    (error: unknown) => error,
  );
  return { failure, primed: call.primed };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  const demoPort = await freePort();
  const demo = startBuiltApp('demo-upstreams', { DEMO_UPSTREAMS_PORT: String(demoPort), LOG_LEVEL: 'warn' });
  processes.push(demo);
  await waitForReady(`http://127.0.0.1:${demoPort}/healthz`, demo);
  tenant = await createTestTenant(db);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `http://127.0.0.1:${demoPort}/kitchen-sink/mcp`, callTimeoutMs: 60_000 },
  });
  const agent = await db.agentClient.create({ data: { tenantId: tenant.id, name: 'replica-loss-agent' } });
  apiKey = generateApiKey();
  await db.apiKey.create({ data: { tenantId: tenant.id, name: 'replica-loss', keyHash: hashApiKey(apiKey), displayPrefix: apiKey.slice(0, 10), agentClientId: agent.id } });
  await writeActiveSnapshot(db, tenant.id, { defaultEffect: 'allow' });
  // `retiring` gives calls under way 1 s to finish when told to stop (half its grace), then cancels them.
  [doomed, retiring, survivor, slow] = await Promise.all([startGateway(), startGateway({ SHUTDOWN_GRACE_MS: '2000' }), startGateway(), startGateway()]);
}, 120_000);

afterAll(async () => {
  await Promise.all(processes.map((app) => app.stop(5_000)));
  await db?.$disconnect();
});

describe('a replica lost mid-call', () => {
  it('is found out by the replica the agent resumes on: the call ends with an error within about the lease, and the session goes on', async () => {
    await behindProxy(doomed.url, async (proxy, client) => {
      const { failure, primed } = failingCall(client);
      await primed;
      proxy.target = survivor.url;
      const killedAt = Date.now();
      doomed.app.child.kill('SIGKILL');
      const error = await failure;
      expect(error).toBeInstanceOf(McpError);
      expect((error as McpError).code).toBe(-32603);
      expect((error as McpError).message).toMatch(/replica handling this request stopped before answering/);
      // The rest of the lease and one look at it (every 5 s) later: not the log's lifetime (2 minutes), nor the tool's
      // 40 s, nor the SDK's 60 s timeout.
      expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 12_000);
      // The session lives in Redis: the surviving replica serves it.
      const echoed = await client.callTool({ name: 'ks__echo', arguments: { message: 'still here' } });
      expect(echoed.content).toEqual([{ type: 'text', text: 'still here' }]);
    });
  }, 90_000);

  it('shutting down gracefully cancels the call, and the agent resuming elsewhere learns it from the log', async () => {
    await behindProxy(retiring.url, async (proxy, client) => {
      const { failure, primed } = failingCall(client);
      await primed;
      proxy.target = survivor.url;
      proxy.breakAll();
      const stoppedAt = Date.now();
      const exited = retiring.app.stop(10_000);
      // Not ready from the signal on, while the call under way drains (1 s): a balancer stops sending new sessions.
      let readiness = 0;
      while (readiness !== 503 && Date.now() - stoppedAt < 800) {
        readiness = await fetch(`${retiring.url}/readyz`).then((res) => res.status, () => 0);
      }
      expect(readiness).toBe(503);
      const error = await failure;
      expect(error).toBeInstanceOf(McpError);
      // The replica's own cancellation, logged as the call's answer: not a lost writer found out elsewhere.
      expect((error as McpError).code).toBe(GATEWAY_RPC.UPSTREAM_TIMEOUT);
      expect((error as McpError).message).toMatch(/cancelled/);
      // The drain (1 s) and the cancellation, not the tool's 40 s.
      expect(Date.now() - stoppedAt).toBeLessThan(6_000);
      expect(await exited).toBe(0);
    });
  }, 60_000);

  it('is not confused with a slow one: a call resumed on another replica gets its answer after more than a lease', async () => {
    await behindProxy(slow.url, async (proxy, client) => {
      const started = Date.now();
      // Silent for 1.5 leases: only the writer's renewals keep it from being taken for dead.
      const call = slowCall(client, 7_650, 2);
      await call.primed;
      // The agent's connection to the replica answering the call is cut; it resumes on another one.
      proxy.target = survivor.url;
      proxy.breakAll();
      const result = (await call.answer) as { content: { text: string }[] };
      expect(result.content[0]?.text).toBe('Counted to 2.');
      expect(Date.now() - started).toBeGreaterThan(LEASE_MS);
    });
  }, 60_000);
});
