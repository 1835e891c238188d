#!/usr/bin/env node
// `npm run bench:gateway-instructions`: the gateway's user-space instructions per `tools/call`, counted by callgrind.
//
// bench:gateway's CPU per call moves by up to 2× with this shared machine's speed from one minute to the next, which
// hides changes of 5–10 %. An instruction count does not move with the machine: the gateway runs under
// `valgrind --tool=callgrind` with counting off, is warmed up (the JIT has optimised the call path), then counts
// exactly --calls echo calls at --concurrency, and the total is divided by the calls. Same load, tenant, policy
// (rate-limited rule) and audit settings as bench:gateway. Kernel work (socket writes and reads) is not counted;
// V8's JIT, GC and Node's C++ are. Under valgrind the process is ~20–50× slower, so timings mean nothing here.
//
//   npm run bench:gateway-instructions -- [--calls 6000] [--warmup 10000] [--concurrency 16] [--bare-proxy] [--no-guards]
//     [--audit-flush-ms 3000] [--js-names] [--node-args "<flags>"] [--out tmp/callgrind] [--metrics]
// --bare-proxy also counts tools/bench/lib/bare-proxy.mjs (no MCP logic) under the same load, the floor.
// --no-guards counts the gateway with audit and rate limits off instead of on.
// --metrics counts it with Prometheus metrics on (GATEWAY_METRICS_PORT; off otherwise, as by default).
// --gateway <main.js> counts another build (e.g. one made in a worktree of an earlier commit, whose packages resolve).
// --js-names runs Node with --perf-basic-prof and writes <profile>.named beside each main-thread profile, its JIT code
// addresses replaced by the JavaScript functions' names: `callgrind_annotate --inclusive=yes <profile>.named`.
// Needs valgrind (Debian's package) and the builds bench:gateway needs. Traffic goes to 127.0.0.1 only.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { applyMigrations, DEFAULT_ADMIN_URL, withDatabaseUrl } from '../db/index.mjs';
import { argValue as arg, freePort, pollReady, startBuiltApp, waitReady } from '../scripts/lib/harness.mjs';
import { repoRoot } from '../scripts/lib/run.mjs';
import { benchGatewayEnv, discardBenchData, messageFor, openSession, post, seedCallBenchTenant } from './lib/mcp-bench.mjs';

const CALLS = Math.min(Number(arg('calls', '6000')), 20_000);
const WARMUP = Math.min(Number(arg('warmup', '10000')), 50_000);
const CONCURRENCY = Math.min(Math.max(1, Number(arg('concurrency', '16'))), 64);
const BARE_PROXY = process.argv.includes('--bare-proxy');
const GUARDS = !process.argv.includes('--no-guards');
const JS_NAMES = process.argv.includes('--js-names');
const METRICS = process.argv.includes('--metrics');
// Node/V8 flags for the gateway (e.g. --node-args "--single-threaded-gc"), to count what a runtime setting changes.
const NODE_ARGS = arg('node-args', '').split(' ').filter(Boolean);
// The emitter flushes on a timer; under valgrind ~30× fewer calls fit between two flushes than in real time, so each
// audit job would carry ~30× fewer events and its fixed cost would weigh ~30× more per call. A longer interval keeps
// the events per job near bench:gateway's (printed at the end).
const AUDIT_FLUSH_MS = Math.max(1, Number(arg('audit-flush-ms', '3000')));
// Emptied at the start of each run: give concurrent runs their own (--out tmp/callgrind-b).
const OUT_DIR = path.resolve(repoRoot, arg('out', 'tmp/callgrind'));

/**
 * Rewrites a callgrind profile's bare code addresses (JIT code has no symbols) to the names in Node's
 * /tmp/perf-<pid>.map (`start size name` per line, hex, in the order V8 made the code). V8 reuses addresses (code
 * collected or moved by the GC), so several lines may cover one address: the last of them is taken, the code that
 * lived there most recently (the counted window comes after the warm-up, when the hot code no longer moves). Names can
 * still be wrong for code that moved during the window. An address in no range keeps its hex form.
 */
function nameJitCode(profile, pid) {
  const ranges = readFileSync(`/tmp/perf-${pid}.map`, 'utf8')
    .split('\n')
    .map((line) => /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line))
    .filter(Boolean)
    .map((m, order) => ({ start: Number.parseInt(m[1], 16), end: Number.parseInt(m[1], 16) + Number.parseInt(m[2], 16), name: m[3], order }))
    .sort((a, b) => a.start - b.start || a.order - b.order);
  // No code object is anywhere near this large: ranges starting further below an address cannot contain it.
  const MAX_CODE_SIZE = 16 * 1024 * 1024;
  const lookup = (address) => {
    let lo = 0;
    let hi = ranges.length - 1;
    // The last range starting at or below the address.
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ranges[mid].start <= address) lo = mid + 1;
      else hi = mid - 1;
    }
    let best;
    for (let i = hi; i >= 0 && ranges[i].start > address - MAX_CODE_SIZE; i--) {
      const range = ranges[i];
      if (address < range.end && (best === undefined || range.order > best.order)) best = range;
    }
    return best?.name;
  };
  const text = readFileSync(profile, 'utf8').replace(/^(c?fn=\(\d+\) )0x([0-9a-f]+)('\d+)?$/gm, (line, head, hex, recursion = '') => {
    const name = lookup(Number.parseInt(hex, 16));
    return name === undefined ? line : `${head}${name.replace(/\s+/g, '_')}${recursion}`;
  });
  writeFileSync(`${profile}.named`, text);
}

/** Starts `args` (a Node program and its arguments) under callgrind with counting off; resolves when `readyUrl` answers. */
async function underCallgrind(name, args, env, readyUrl) {
  const outFile = path.join(OUT_DIR, `${name}.${Date.now()}.out`);
  const child = spawn(
    'valgrind',
    ['--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${outFile}`, process.execPath, ...(JS_NAMES ? ['--perf-basic-prof'] : []), ...args],
    { cwd: repoRoot, env: { PATH: process.env.PATH, NODE_ENV: 'production', LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4_000);
  });
  const state = await pollReady(readyUrl, { child, timeoutMs: 300_000, intervalMs: 1_000, requestTimeoutMs: 10_000 });
  if (state !== 'ready') throw new Error(`${name} under callgrind: ${state}\n${stderr.split('\n').filter((l) => !l.startsWith('==')).join('\n')}`);
  return { child, outFile };
}

const callgrindControl = (pid, ...args) => execFileSync('callgrind_control', [...args, String(pid)], { stdio: 'ignore' });

/** `count` echo calls spread over the sessions, `sessions.length` in flight; throws on the first failed call. */
async function calls(url, sessions, tool, count) {
  let next = 0;
  await Promise.all(
    sessions.map(async (headers) => {
      while (next < count) {
        const id = ++next;
        const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: { message: 'hello portcullis' } } });
        const res = await post(url, headers, body);
        const message = messageFor(res, id);
        if (res.status !== 200 || message.error || message.result?.isError) throw new Error(`call failed: HTTP ${res.status} ${res.text.slice(0, 200)}`);
      }
    }),
  );
}

/**
 * Resolves once the target's audit jobs have stopped arriving (the emitter flushed what the calls so far produced), so
 * the counted window holds the audit work of its own calls: none of the warm-up's, all of its own. `settled()` answers
 * whether nothing changed since it was last asked.
 */
async function auditSettled(settled) {
  const deadline = Date.now() + 120_000;
  let quiet = 0;
  while (Date.now() < deadline && quiet < 3) {
    await new Promise((r) => setTimeout(r, 1_000));
    quiet = (await settled()) ? quiet + 1 : 0;
  }
}

/** Warms the target up, counts `CALLS` calls, and reads the instruction total callgrind dumped. */
async function instructionsPerCall(target) {
  const sessions = [];
  for (let i = 0; i < CONCURRENCY; i++) sessions.push(await openSession(target.url, target.auth));
  await calls(target.url, sessions, target.tool, WARMUP);
  await auditSettled(target.settled);
  const jobsBefore = await target.jobs();
  callgrindControl(target.pid, '--instr=on');
  const started = Date.now();
  await calls(target.url, sessions, target.tool, CALLS);
  const seconds = (Date.now() - started) / 1_000;
  await auditSettled(target.settled);
  callgrindControl(target.pid, '--instr=off');
  const jobs = (await target.jobs()) - jobsBefore;
  callgrindControl(target.pid, '--dump');
  // With --separate-threads the dump is one `<out>.1-<thread>` file per thread; thread 01 is the main (JavaScript) thread,
  // the others are V8's background compiler and GC helpers and libuv's pool. Their `summary` lines stay 0 when counting
  // starts late; `totals` has the count.
  const dir = path.dirname(target.outFile);
  const prefix = `${path.basename(target.outFile)}.1-`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const files = readdirSync(dir).filter((file) => file.startsWith(prefix));
    const counts = files.map((file) => ({ file, total: Number(/^totals:\s+(\d+)/m.exec(readFileSync(path.join(dir, file), 'utf8'))?.[1] ?? 0) }));
    const main = counts.find((count) => count.file.endsWith('-01'));
    if (main && main.total > 0) {
      const all = counts.reduce((sum, count) => sum + count.total, 0);
      const profile = path.join(dir, main.file);
      if (JS_NAMES) nameJitCode(profile, target.pid);
      return { main: main.total / CALLS, all: all / CALLS, profile, jobs, callsPerSecond: CALLS / seconds };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('callgrind wrote no counts');
}

async function main() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is not installed (Debian: apt-get install valgrind)');
  }
  const baseAdmin = process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const adminUrl = withDatabaseUrl(baseAdmin, { database });
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const queuePrefix = `bench-${randomBytes(4).toString('hex')}`;
  const children = [];
  rmSync(OUT_DIR, { recursive: true, force: true });
  mkdirSync(OUT_DIR, { recursive: true });
  try {
    await applyMigrations({ adminUrl });
    const upstreamPort = await freePort();
    const upstreamUrl = `http://127.0.0.1:${upstreamPort}/kitchen-sink/mcp`;
    const { apiKey } = await seedCallBenchTenant(adminUrl, upstreamUrl);
    const upstream = startBuiltApp('demo-upstreams', { env: { DEMO_UPSTREAMS_PORT: String(upstreamPort), DEMO_UPSTREAMS_SERVERS: 'kitchen-sink' } });
    children.push(upstream);
    await waitReady(`http://127.0.0.1:${upstreamPort}/readyz`, upstream);

    console.log(`bench:gateway-instructions — ${WARMUP} warm-up calls, then ${CALLS} counted, concurrency ${CONCURRENCY}, node ${process.version}`);
    const gatewayPort = await freePort();
    const gateway = await underCallgrind(
      'gateway',
      [...NODE_ARGS, path.resolve(repoRoot, arg('gateway', 'dist/apps/gateway/main.js'))],
      {
        ...benchGatewayEnv({ port: gatewayPort, adminUrl, redisUrl, queuePrefix, guards: GUARDS }),
        GATEWAY_AUDIT_FLUSH_MS: String(AUDIT_FLUSH_MS),
        ...(METRICS ? { GATEWAY_METRICS_PORT: '0' } : {}),
      },
      `http://127.0.0.1:${gatewayPort}/readyz`,
    );
    children.push(gateway.child);
    // The audit queue's jobs (one per emitter flush): the gateway's audit work is done when their count stops moving.
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    let lastCount = -1;
    const jobs = () => redis.llen(`${queuePrefix}:portcullis-audit:wait`);
    const settled = async () => {
      const count = await jobs();
      const same = count === lastCount;
      lastCount = count;
      return same;
    };
    const perCall = await instructionsPerCall({
      settled,
      jobs,
      url: `http://127.0.0.1:${gatewayPort}/t/bench/mcp`,
      auth: { authorization: `Bearer ${apiKey}` },
      tool: 'sink__echo',
      pid: gateway.child.pid,
      outFile: gateway.outFile,
    }).finally(() => redis.disconnect());
    const k = (n) => `${(n / 1000).toFixed(1).padStart(7)} k`;
    console.log(`gateway     ${k(perCall.main)} instructions/call on the main thread, ${k(perCall.all)} with V8's helper threads (audit and rate limits ${GUARDS ? 'on' : 'off'})`);
    console.log(
      `            ${perCall.callsPerSecond.toFixed(0)} calls/s under valgrind; ${perCall.jobs} audit jobs in the counted window` +
        (perCall.jobs > 0 ? ` (${(CALLS / perCall.jobs).toFixed(0)} events each; flush every ${AUDIT_FLUSH_MS} ms)` : ''),
    );

    if (BARE_PROXY) {
      const port = await freePort();
      const proxy = await underCallgrind(
        'bare-proxy',
        [path.join(repoRoot, 'tools/bench/lib/bare-proxy.mjs'), String(port), `http://127.0.0.1:${upstreamPort}`],
        {},
        `http://127.0.0.1:${port}/readyz`,
      );
      children.push(proxy.child);
      const proxyPerCall = await instructionsPerCall({ settled: async () => true, jobs: async () => 0, url: `http://127.0.0.1:${port}/kitchen-sink/mcp`, auth: {}, tool: 'echo', pid: proxy.child.pid, outFile: proxy.outFile });
      console.log(`bare proxy  ${k(proxyPerCall.main)} instructions/call on the main thread, ${k(proxyPerCall.all)} with V8's helper threads (gateway ${(perCall.main / proxyPerCall.main).toFixed(2)}× on the main thread)`);
    }
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1_000));
    await discardBenchData({ adminUrl, redisUrl, queuePrefix });
  }
}

main().catch((error) => {
  console.error(`bench:gateway-instructions failed: ${error.message}`);
  process.exitCode = 1;
});
