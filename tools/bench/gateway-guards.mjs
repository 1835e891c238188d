#!/usr/bin/env node
// `npm run bench:gateway-guards`: the CPU the audit and rate-limit hooks add to one MCP request, measured in
// process (so it does not depend on what else the machine is running, unlike throughput).
//
// Runs the gateway's real hooks as data-plane.ts composes them (a stand-in for the policy hook that admits
// with one rate-limit rule, then `rateLimitHooks` on a dedicated auto-pipelined Redis connection, then
// `auditHooks` emitting to the real emitter → BullMQ on the local Redis under a bench-only prefix, emptied at
// the end) for a fixed time with C requests in flight, and prints requests/s and this process's CPU per
// request. Compare with the gateway's CPU per call from `npm run bench:gateway` to get the share.
//
//   npm run bench:gateway-guards -- [--seconds 5] [--concurrency 64] [--results metadata|full|none]
import { randomBytes, randomUUID } from 'node:crypto';
import { argValue as arg, importSource as load } from '../scripts/lib/harness.mjs';

const SECONDS = Math.min(Number(arg('seconds', '5')), 30);
const CONCURRENCY = Math.min(Math.max(Number(arg('concurrency', '64')), 1), 512);
const RESULTS = arg('results', 'metadata');
const MAX_REQUESTS = 2_000_000;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const { composeHooks, NO_STREAM } = await load('libs/gateway/core/src/index.ts');
const { createRateLimitRedis, rateLimitHooks, RateLimitService } = await load('libs/gateway/rate-limit/src/index.ts');
const { auditHooks, createAuditEmitter, createAuditQueueProducer } = await load('libs/gateway/audit-emitter/src/index.ts');
const { tenantSettings } = await load('libs/contracts/api/src/index.ts');
const { createLogger } = await load('libs/shared/util-logger/src/index.ts');
const { Queue } = await import('bullmq');

const logger = createLogger({ service: 'bench-guards', level: 'warn' });
const prefix = `bench-guards-${randomBytes(4).toString('hex')}`;
const tenantId = randomUUID();
const settings = tenantSettings.parse({ audit: { results: RESULTS } });
const redis = createRateLimitRedis(redisUrl, 'bench-guards');
await new Promise((ok) => (redis.status === 'ready' ? ok() : redis.once('ready', ok)));
const producer = createAuditQueueProducer({ redisUrl, prefix, connectionName: 'bench-guards-audit' });
const emitter = createAuditEmitter({ producer, maxBuffer: 20_000, flushEveryMs: 100, batchSize: 500, spoolDir: null, spoolMaxBytes: 64 * 1024 * 1024, logger });
const audit = auditHooks({ emitter, settings: () => settings, separator: '__', spoolDurable: false, logger });
const limiter = new RateLimitService({ redis, keyPrefix: prefix, redisTimeoutMs: 250, concurrencyLeaseMs: 60_000 });
// What the policy hook admits an allowed call with (decision, rule, snapshot version, its rate limit).
const policyStandIn = {
  admit: () => ({
    decision: 'allow',
    reason: 'rule bench-limit allows',
    ruleIds: ['bench-limit'],
    snapshotVersion: 1,
    rateLimits: [{ ruleId: 'bench-limit', rateLimit: { scope: ['agent_client', 'tool'], requests: 10_000_000, windowSeconds: 3_600, maxConcurrent: null } }],
  }),
};
const variants = {
  none: composeHooks([policyStandIn]),
  limits: composeHooks([policyStandIn, rateLimitHooks({ limiter, settings: () => settings, logger })]),
  audit: composeHooks([policyStandIn, audit]),
  guards: composeHooks([policyStandIn, rateLimitHooks({ limiter, settings: () => settings, logger }), audit]),
};

const upstream = { id: randomUUID(), name: 'sink', toolPrefix: 'sink' };
const record = {
  id: randomBytes(32).toString('base64url'),
  tenantId,
  principalKind: 'agent_client',
  principalId: randomUUID(),
  protocolVersion: '2025-11-25',
  clientInfo: { name: 'bench', version: '1' },
  clientCapabilities: {},
  upstreams: {},
  createdAt: Date.now(),
};
const result = { content: [{ type: 'text', text: 'hello portcullis' }] };

async function run(name) {
  const hooks = variants[name];
  const signal = new AbortController().signal;
  let done = 0;
  const deadline = Date.now() + SECONDS * 1_000;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline && done < MAX_REQUESTS) {
        const info = {
          record,
          method: 'tools/call',
          requestId: done,
          traceId: randomBytes(16).toString('hex'),
          startedAt: Date.now(),
          target: { upstream, kind: 'tool', name: 'echo' },
          arguments: { message: 'hello portcullis' },
        };
        const verdict = hooks.admit(info, NO_STREAM, signal, undefined);
        const admission = verdict instanceof Promise ? await verdict : verdict;
        admission?.release?.();
        hooks.completed?.(info, { outcome: 'ok', admission, result, latencyMs: 1 });
        done++;
        if (!(verdict instanceof Promise)) await null; // let the other loops run
      }
    }),
  );
  await emitter.flush();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  return { name, requests: done, rps: done / seconds, cpuPerRequest: (used.user + used.system) / done };
}

try {
  console.log(`bench:gateway-guards — ${SECONDS}s per run, ${CONCURRENCY} in flight, results=${RESULTS}, node ${process.version}`);
  await run('guards'); // warm-up (JIT, connections, scripts loaded)
  const rows = [];
  const order = ['none', 'limits', 'audit', 'guards'];
  for (const name of [...order, ...order.reverse()]) rows.push(await run(name));
  for (const name of ['none', 'limits', 'audit', 'guards']) {
    const mine = rows.filter((r) => r.name === name);
    const cpu = mine.map((r) => r.cpuPerRequest).sort((a, b) => a - b)[0];
    const rps = Math.max(...mine.map((r) => r.rps));
    console.log(`${name.padEnd(6)} ${rps.toFixed(0).padStart(7)} requests/s  ${cpu.toFixed(1).padStart(6)} µs CPU/request (best of ${mine.length})`);
  }
  const best = (name) => Math.min(...rows.filter((r) => r.name === name).map((r) => r.cpuPerRequest));
  console.log(`audit + rate limits add ${(best('guards') - best('none')).toFixed(1)} µs of gateway CPU per request; stats ${JSON.stringify(emitter.stats())}`);
} finally {
  await emitter.close();
  await producer.close();
  const queue = new Queue('portcullis-audit', { connection: { url: redisUrl }, prefix });
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
}
