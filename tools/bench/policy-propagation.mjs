#!/usr/bin/env node
// `npm run bench:policy-propagation`: change-to-enforced latency of a policy snapshot across three gateway processes.
//
// Starts the built demo upstream (kitchen-sink: an `echo` tool) and THREE built gateways against a fresh database,
// opens one MCP session per gateway, then repeatedly flips the tenant's policy between "deny everything" and "allow
// echo": each flip is written as the control plane's writer writes it (one transaction; the new version active), and
// announced on Redis after the commit. From the commit, every gateway is probed with `tools/call echo` every 5 ms
// until it answers as the new snapshot says. Prints p50/p99/max of "enforced by all three" (and per replica).
// With --no-notice the change is not announced, measuring the periodic reconcile (GATEWAY_POLICY_RECONCILE_MS).
// Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
//
//   npm run bench:policy-propagation -- [--reps 20] [--no-notice] [--reconcile-ms 5000]
// Needs: `npx nx run-many -t build -p gateway demo-upstreams`, Postgres and Redis as for npm test.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { applyMigrations, dropDatabase, withDatabaseUrl, DEFAULT_ADMIN_URL } from '../db/index.mjs';
import { argValue as arg, freePort, startBuiltApp, waitReady } from '../scripts/lib/harness.mjs';
import { repoRoot } from '../scripts/lib/run.mjs';
import { activatePolicy } from './lib/policy-snapshot.mjs';

const REPS = Math.max(1, Math.min(Number(arg('reps', '20')), 200));
const NOTICE = !process.argv.includes('--no-notice');
const RECONCILE_MS = Math.max(100, Math.min(Number(arg('reconcile-ms', NOTICE ? '60000' : '5000')), 60_000));
const PROBE_EVERY_MS = 5;
const PROBE_TIMEOUT_MS = NOTICE ? 5_000 : 3 * RECONCILE_MS;
const REPLICAS = 3;
const SNAPSHOTS_CHANNEL = 'pcs:snapshots:changed'; // CHANGE_CHANNELS.snapshots in @portcullis/contracts/api
const POLICY_DENIED = -32030; // GATEWAY_RPC.POLICY_DENIED

/** Replica index → snapshot version → epoch ms at which that replica put the version in force (from its log). */
const swaps = new Map();

function start(name, env, replica) {
  const child = startBuiltApp(name, {
    env: { LOG_LEVEL: replica === undefined ? 'warn' : 'info', ...env },
    stdio: ['ignore', replica === undefined ? 'ignore' : 'pipe', 'inherit'],
  });
  if (replica !== undefined) {
    const seen = new Map();
    swaps.set(replica, seen);
    let buffer = '';
    child.stdout.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.includes('policy snapshot in force')) continue;
        try {
          const entry = JSON.parse(line);
          seen.set(entry.version, Date.parse(entry.time));
        } catch {
          // not a JSON log line
        }
      }
    });
  }
  return child;
}

// How long each app may take to answer /readyz (longer than waitReady's default of 30 s).
const READY_TIMEOUT_MS = 120_000;

/** One JSON-RPC request over Streamable HTTP; the answer may come as JSON or as an SSE stream. */
async function rpc(url, headers, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  if (body.id === undefined) return { res };
  const payload = (res.headers.get('content-type') ?? '').includes('text/event-stream')
    ? text
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => JSON.parse(line.slice(5)))
        .find((message) => message.id === body.id)
    : JSON.parse(text);
  return { res, payload };
}

async function openSession(url, apiKey) {
  const auth = { authorization: `Bearer ${apiKey}` };
  const { res, payload } = await rpc(url, auth, {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench-policy-propagation', version: '1' } },
  });
  const sessionId = res.headers.get('mcp-session-id');
  if (!sessionId || payload?.error) throw new Error(`initialize failed: ${JSON.stringify(payload)}`);
  const headers = { ...auth, 'mcp-session-id': sessionId };
  await rpc(url, headers, { jsonrpc: '2.0', method: 'notifications/initialized' });
  let next = 2;
  return async () => {
    const { payload: answer } = await rpc(url, headers, { jsonrpc: '2.0', id: next++, method: 'tools/call', params: { name: 'sink__echo', arguments: { message: 'probe' } } });
    if (answer?.error?.code === POLICY_DENIED) return 'denied';
    if (answer?.result && !answer.result.isError) return 'allowed';
    throw new Error(`unexpected answer: ${JSON.stringify(answer)}`);
  };
}

/** ms from `since` until `probe` answers `expected`. */
async function until(probe, expected, since) {
  for (let attempt = 0; attempt < 100_000; attempt++) {
    if ((await probe()) === expected) return performance.now() - since;
    if (performance.now() - since > PROBE_TIMEOUT_MS) throw new Error(`not ${expected} after ${PROBE_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
  }
  throw new Error('probe bound reached');
}

const percentile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
};

async function main() {
  const baseAdmin = process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const adminUrl = withDatabaseUrl(baseAdmin, { database });
  const children = [];
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const db = new pg.Client({ connectionString: adminUrl });
  try {
    await applyMigrations({ adminUrl });
    await db.connect();
    await redis.connect();
    const upstreamPort = await freePort();
    const apiKey = `pcs_${randomBytes(30).toString('base64url').replace(/[-_]/g, 'x').slice(0, 40)}`;
    const tenantId = randomUUID();
    const agentId = randomUUID();
    await db.query(`INSERT INTO tenants (id, slug, name, updated_at) VALUES ($1, 'bench', 'Bench', now())`, [tenantId]);
    await db.query(`INSERT INTO agent_clients (id, tenant_id, name, updated_at) VALUES ($1, $2, 'bench-agent', now())`, [agentId, tenantId]);
    await db.query(`INSERT INTO api_keys (id, tenant_id, name, key_hash, display_prefix, agent_client_id) VALUES ($1, $2, 'bench', $3, $4, $5)`, [
      randomUUID(),
      tenantId,
      createHash('sha256').update(apiKey).digest('hex'),
      apiKey.slice(0, 10),
      agentId,
    ]);
    await db.query(`INSERT INTO upstreams (id, tenant_id, name, tool_prefix, transport, url, updated_at) VALUES ($1, $2, 'sink', 'sink', 'streamable_http', $3, now())`, [
      randomUUID(),
      tenantId,
      `http://127.0.0.1:${upstreamPort}/kitchen-sink/mcp`,
    ]);
    const denyAll = { defaultEffect: 'deny', agentClientIds: [agentId] };
    const allowEcho = {
      defaultEffect: 'deny',
      agentClientIds: [agentId],
      rules: [{ id: 'bench-echo', subjects: [{ type: 'agent_client', agentClientId: agentId }], targets: [{ kind: 'tool', upstream: 'sink', name: 'echo' }], effect: 'allow' }],
    };
    await activatePolicy(db, tenantId, denyAll);

    const upstream = start('demo-upstreams', { DEMO_UPSTREAMS_PORT: String(upstreamPort), DEMO_UPSTREAMS_SERVERS: 'kitchen-sink' });
    children.push(upstream);
    await waitReady(`http://127.0.0.1:${upstreamPort}/readyz`, upstream, READY_TIMEOUT_MS);
    const ports = await Promise.all(Array.from({ length: REPLICAS }, freePort));
    const env = {
      DATABASE_URL: withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null }),
      DATABASE_SYSTEM_URL: withDatabaseUrl(adminUrl, { user: 'portcullis_system', password: null }),
      REDIS_URL: redisUrl,
      GATEWAY_UPSTREAM_ALLOW_PRIVATE: 'true',
      GATEWAY_SECRETS_KEYRING: `bench:${randomBytes(32).toString('base64')}`,
      GATEWAY_POLICY_RECONCILE_MS: String(RECONCILE_MS),
    };
    for (const port of ports) {
      const spool = path.join(repoRoot, 'tmp', `bench-policy-propagation-spool-${port}`);
      mkdirSync(spool, { recursive: true });
      children.push(start('gateway', { ...env, GATEWAY_PORT: String(port), GATEWAY_AUDIT_SPOOL_DIR: spool }, children.length - 1));
    }
    await Promise.all(ports.map((port, index) => waitReady(`http://127.0.0.1:${port}/readyz`, children[index + 1], READY_TIMEOUT_MS)));
    const probes = await Promise.all(ports.map((port) => openSession(`http://127.0.0.1:${port}/t/bench/mcp`, apiKey)));
    for (const probe of probes) if ((await probe()) !== 'denied') throw new Error('the initial policy is not in force');
    // One probe's round trip (gateway → upstream → back) bounds how precisely "enforced" can be observed.
    const rtts = [];
    for (let i = 0; i < 20; i++) {
      for (const probe of probes) {
        const t0 = performance.now();
        await probe();
        rtts.push(performance.now() - t0);
      }
    }

    console.log(
      `bench:policy-propagation — ${REPLICAS} gateway processes, ${REPS} policy changes, ` +
        `${NOTICE ? 'announced on Redis' : `NOT announced (reconcile every ${RECONCILE_MS} ms)`}, probe every ${PROBE_EVERY_MS} ms, node ${process.version}`,
    );
    const all = [];
    const each = [];
    const swapped = [];
    for (let rep = 0; rep < REPS; rep++) {
      const allow = rep % 2 === 0;
      const { version, committedAt } = await activatePolicy(db, tenantId, allow ? allowEcho : denyAll);
      const committedWall = Date.now();
      if (NOTICE) await redis.publish(SNAPSHOTS_CHANNEL, tenantId);
      const latencies = await Promise.all(probes.map((probe) => until(probe, allow ? 'allowed' : 'denied', committedAt)));
      each.push(...latencies);
      all.push(Math.max(...latencies));
      // Log lines are flushed asynchronously: give them a moment, then read each replica's swap time.
      await new Promise((r) => setTimeout(r, 50));
      const at = [...swaps.values()].map((seen) => seen.get(version));
      if (at.every((t) => t !== undefined)) swapped.push(Math.max(...at) - committedWall);
      // Let the replicas settle (and a reconcile tick move relative to the next write).
      await new Promise((r) => setTimeout(r, NOTICE ? 100 : 137));
    }
    const fmt = (ms) => `${ms.toFixed(1)} ms`;
    console.log(`commit → enforced by all ${REPLICAS}: p50 ${fmt(percentile(all, 0.5))}, p99 ${fmt(percentile(all, 0.99))}, max ${fmt(Math.max(...all))}`);
    console.log(`commit → enforced per replica:  p50 ${fmt(percentile(each, 0.5))}, p99 ${fmt(percentile(each, 0.99))}`);
    if (swapped.length > 0) {
      console.log(
        `commit → snapshot swapped on all ${REPLICAS} (replica logs, ms resolution): p50 ${fmt(percentile(swapped, 0.5))}, ` +
          `p99 ${fmt(percentile(swapped, 0.99))}, max ${fmt(Math.max(...swapped))}`,
      );
    }
    console.log(`one probe round trip (tools/call through a gateway): p50 ${fmt(percentile(rtts, 0.5))}, p99 ${fmt(percentile(rtts, 0.99))}`);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((r) => child.once('exit', r)) : undefined)));
    redis.disconnect();
    await db.end().catch(() => undefined);
    await dropDatabase(adminUrl).catch((error) => console.error(`could not drop ${database}: ${error.message}`));
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
