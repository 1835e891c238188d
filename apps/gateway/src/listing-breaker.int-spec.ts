/**
 * An upstream whose listings never answer opens its circuit breaker like one whose calls never answer: the background
 * recheck of an upstream a listing left out is bounded by the upstream's own call timeout (a signal of the same length,
 * made first, fired first, and its abort was no timeout to the breaker). Once open, listings no longer wait for it.
 * A listing's own deadline says nothing of the upstream: a slow one is left out, never counted as failing (specs below
 * and in libs/gateway/upstream: a busy stdio process, a healthy upstream slower than the list timeout).
 */
import { createServer, type Server } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, messageOf, postInitialize, postInSession, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let silent: Server;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let listsSeen = 0;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  // Answers initialize, never a tools/list.
  silent = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
      const message = JSON.parse(text) as { id?: number; method: string; params?: { protocolVersion?: string } };
      if (message.id === undefined) return void res.writeHead(202).end();
      if (message.method === 'tools/list') {
        listsSeen += 1;
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'silent' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'silent', version: '1' } } }));
    });
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = silent.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 5_000, callTimeoutMs: 20_000 } });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'silent', toolPrefix: 'silent', transport: 'streamable_http', url: `http://127.0.0.1:${address.port}/mcp`, connectTimeoutMs: 1_000, callTimeoutMs: 1_000 } });
  ({ key } = await createAgentWithKey(db, tenant.id, 'breaker-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_LIST_TIMEOUT_MS: '1000' }, breaker: { failureThreshold: 3, cooldownMs: 60_000 } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  silent?.closeAllConnections();
  await new Promise((resolve) => silent?.close(resolve));
  await demo?.stop();
  await db?.$disconnect();
});

it('opens the circuit of an upstream whose tools/list never answers, logs each as a timeout, then lists without waiting', async () => {
  const init = await postInitialize(gateway, tenant.slug, key);
  const sessionId = init.headers.get('mcp-session-id') ?? '';
  await init.text();
  const list = async () => {
    const started = Date.now();
    const answer = await messageOf(await postInSession(gateway, tenant.slug, key, sessionId, { id: 'l', method: 'tools/list' }));
    const names = (answer['result'] as { tools: { name: string }[] }).tools.map((tool) => tool.name);
    return { ms: Date.now() - started, names };
  };
  const listings = [];
  for (let round = 0; round < 6; round += 1) listings.push(await list());
  // The good upstream is listed every time; the silent one never holds a listing past the list timeout.
  for (const listing of listings) {
    expect(listing.names).toContain('ks__echo');
    expect(listing.ms).toBeLessThan(2_500);
  }
  // Open after three rechecks timed out (each listing asks twice: its page and the recheck): the last listings do not
  // wait for it.
  expect(listings.slice(-2).every((listing) => listing.ms < 500), JSON.stringify(listings.map((listing) => listing.ms))).toBe(true);
  expect(listsSeen).toBeLessThanOrEqual(8);
  const reasons = gateway
    .logs()
    .split('\n')
    .filter((line) => line.includes('"upstream":"silent"') && line.includes('"operation":"tools/list"'))
    .map((line) => /"reason":"([^"]+)"/.exec(line)?.[1]);
  // The listings' deadlines (logged as timeouts), then the open circuit.
  expect(reasons[0]).toBe('timeout');
  expect(new Set(reasons)).toEqual(new Set(['timeout', 'circuit_open']));
}, 60_000);
