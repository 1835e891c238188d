#!/usr/bin/env node
// `npm run bench:tools-list`: `tools/list` through the gateway over many aggregated tools (default 5 upstreams × 100
// tools = 500), against the same upstreams asked directly (all of them in parallel, as the gateway does).
//
// Starts an SDK-based upstream (tools/bench/lib/many-tools-server.mjs) mounted under UPSTREAMS paths and the built
// gateway against a fresh database (allow-all policy, API-key auth, audit and rate limits on), opens one MCP session,
// then alternates: `tools/list` through the gateway, and `tools/list` on every upstream directly in parallel. Prints
// p50/p99 of each, the merged tool count and the answer size. Target: ≤ 2 ms through the gateway.
// Bounded: --requests (default 300, at most 5,000) sequential requests each way after 50 warm-ups; 127.0.0.1 only.
//
//   npm run bench:tools-list -- [--upstreams 5] [--tools 100] [--requests 300] [--minimal] [--no-listen] [--cpu-prof]
// The session listens on its standalone GET stream, as SDK clients do; --no-listen leaves it out: the gateway then
// reuses no upstream listing page (it would not hear of their changes) and asks every upstream each time.
// --minimal: tools with a name, a one-line description and an empty schema (~90 bytes each) instead of realistic
// definitions (~490 bytes), to separate the gateway's per-tool work from moving the answer's bytes.
// --cpu-prof writes the gateway's V8 CPU profile to tmp/prof/ (summarise with tools/bench/gateway-profile.mjs --all).
// Needs: `npx nx run-many -t build -p gateway`, Postgres and Redis as for npm test.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { applyMigrations, withDatabaseUrl, DEFAULT_ADMIN_URL } from '../db/index.mjs';
import { argValue, freePort, startBuiltApp, waitReady } from '../scripts/lib/harness.mjs';
import { repoRoot } from '../scripts/lib/run.mjs';
import { benchGatewayEnv, discardBenchData, listen, messageFor, openSession, post, seedBenchTenant } from './lib/mcp-bench.mjs';
import { activatePolicy } from './lib/policy-snapshot.mjs';

const UPSTREAMS = Math.min(Math.max(1, Number(argValue('upstreams', '5'))), 20);
const TOOLS = Math.min(Math.max(1, Number(argValue('tools', '100'))), 1_000);
const REQUESTS = Math.min(Math.max(10, Number(argValue('requests', '300'))), 5_000);
const WARMUP = 50;
const SHAPE = process.argv.includes('--minimal') ? 'minimal' : 'full';

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function main() {
  const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const adminUrl = withDatabaseUrl(process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL, { database });
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const queuePrefix = `bench-${randomBytes(4).toString('hex')}`;
  const children = [];
  try {
    await applyMigrations({ adminUrl });
    const upstreamPort = await freePort();
    const gatewayPort = await freePort();
    const upstreamUrls = Array.from({ length: UPSTREAMS }, (_, i) => `http://127.0.0.1:${upstreamPort}/u${i}/mcp`);
    const db = new pg.Client({ connectionString: adminUrl });
    await db.connect();
    const { tenantId, apiKey } = await seedBenchTenant(
      db,
      upstreamUrls.map((url, i) => ({ name: `inventory-${i}`, prefix: `inv${i}`, url })),
    );
    await activatePolicy(db, tenantId, { defaultEffect: 'allow' });
    await db.end();

    const upstream = spawn(process.execPath, [path.join(repoRoot, 'tools/bench/lib/many-tools-server.mjs'), String(upstreamPort), String(TOOLS), SHAPE], {
      cwd: repoRoot,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(upstream);
    await waitReady(`http://127.0.0.1:${upstreamPort}/readyz`, upstream);
    const nodeArgs = process.argv.includes('--cpu-prof') ? ['--cpu-prof', `--cpu-prof-dir=${path.join(repoRoot, 'tmp/prof')}`] : [];
    const gateway = startBuiltApp('gateway', { nodeArgs, env: benchGatewayEnv({ port: gatewayPort, adminUrl, redisUrl, queuePrefix }) });
    children.push(gateway);
    await waitReady(`http://127.0.0.1:${gatewayPort}/readyz`, gateway);

    const gatewayUrl = `http://127.0.0.1:${gatewayPort}/t/bench/mcp`;
    const session = await openSession(gatewayUrl, { authorization: `Bearer ${apiKey}` });
    const listening = !process.argv.includes('--no-listen');
    const stopListening = listening ? await listen(gatewayUrl, session) : () => undefined;
    const directSessions = await Promise.all(upstreamUrls.map((url) => openSession(url, {})));
    let id = 1;
    const listBody = () => JSON.stringify({ jsonrpc: '2.0', id: id++, method: 'tools/list' });
    // Timed: the request until the last byte of its answer has arrived (`ms`), and until the client has also decoded
    // it into a string (`decodedMs`: ~0.45 ms of client work for 246 KiB here). Parsed and checked afterwards, untimed.
    const elapsed = (t0, t1) => Number(t1 - t0) / 1e6;
    const throughGateway = async () => {
      const body = listBody();
      const t0 = process.hrtime.bigint();
      const res = await post(gatewayUrl, session, body);
      const decodedMs = elapsed(t0, process.hrtime.bigint());
      const message = messageFor(res, JSON.parse(body).id);
      if (res.status !== 200 || !message.result) throw new Error(`tools/list failed: ${res.status} ${res.text.slice(0, 200)}`);
      return { ms: elapsed(t0, res.receivedAt), decodedMs, tools: message.result.tools.length, bytes: Buffer.byteLength(res.text) };
    };
    // All upstreams asked at once; done when the last answer has arrived.
    const direct = async () => {
      const t0 = process.hrtime.bigint();
      const answers = await Promise.all(
        upstreamUrls.map(async (url, i) => {
          const res = await post(url, directSessions[i], listBody());
          if (res.status !== 200) throw new Error(`direct tools/list failed: ${res.status}`);
          return res.receivedAt;
        }),
      );
      const done = process.hrtime.bigint();
      return { ms: elapsed(t0, answers.reduce((a, b) => (a > b ? a : b))), decodedMs: elapsed(t0, done) };
    };

    for (let i = 0; i < WARMUP; i++) {
      await throughGateway();
      await direct();
    }
    const viaGateway = { ms: [], decodedMs: [] };
    const viaDirect = { ms: [], decodedMs: [] };
    const record = (into, sample) => {
      into.ms.push(sample.ms);
      into.decodedMs.push(sample.decodedMs);
    };
    let shape = { tools: 0, bytes: 0 };
    for (let i = 0; i < REQUESTS; i++) {
      shape = await throughGateway();
      record(viaGateway, shape);
      record(viaDirect, await direct());
    }
    for (const samples of [viaGateway, viaDirect]) for (const list of Object.values(samples)) list.sort((a, b) => a - b);
    const figures = ({ ms, decodedMs }) =>
      `p50 ${quantile(ms, 0.5).toFixed(2)} ms  p99 ${quantile(ms, 0.99).toFixed(2)} ms  ` +
      `(decoded by the client: p50 ${quantile(decodedMs, 0.5).toFixed(2)} ms)`;
    const p50 = quantile(viaGateway.ms, 0.5);
    console.log(`bench:tools-list — ${UPSTREAMS} upstreams × ${TOOLS} ${SHAPE} tools, ${REQUESTS} requests each way, node ${process.version}`);
    console.log(`  timed to the answer's last byte; ${shape.tools} tools, ${(shape.bytes / 1024).toFixed(0)} KiB through the gateway; the agent ${listening ? 'listens (pages reused)' : 'does not listen (--no-listen: every upstream asked each time)'}`);
    stopListening();
    console.log(`  gateway  tools/list  ${figures(viaGateway)}  target p50 ≤ 2 ms: ${p50 <= 2 ? 'met' : 'NOT met'}`);
    console.log(`  direct   ${UPSTREAMS} × tools/list in parallel  ${figures(viaDirect)}`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, process.argv.includes('--cpu-prof') ? 3_000 : 500));
    await discardBenchData({ adminUrl, redisUrl, queuePrefix });
  }
}

main().catch((error) => {
  console.error(`bench:tools-list failed: ${error.message}`);
  process.exitCode = 1;
});
