#!/usr/bin/env node
// `npm run bench:gateway`: the same MCP load directly against an upstream and through the gateway.
//
// Starts the built demo upstream (SDK-based; its kitchen-sink server has an `echo` tool) and the built
// gateway against a fresh database, then for each concurrency (1, 16, 64) and repetition alternates
// targets: open MCP sessions (initialize once per session), then `tools/call echo` with a small payload
// for a fixed time. Prints p50/p99 latency, calls/s, the gateway process's CPU time per call (from
// /proc), and the ratios to direct. Traffic goes to 127.0.0.1 only; every loop is bounded in time.
//
//   npm run bench:gateway -- [--seconds 5] [--reps 3] [--concurrency 1,16,64] [--warmup 5] [--warmup-each 2] [--cpu-prof] [--guards] [--bare-proxy] [--tcp-relay] [--unguarded] [--bridges]
// Before the first measured run every target serves the same load at c=16 for --warmup seconds (0: none), unmeasured:
// a gateway in service has compiled its call path long ago, and without it the first concurrency's figures (c=1 by
// default) would time V8 compiling the gateway's code, which a bare proxy, with far less code, barely pays.
// --warmup-each (seconds, default 2; 0: none) then serves each concurrency's load once more, unmeasured, to every target
// before that concurrency's repetitions: a new concurrency takes code paths the c=16 warm-up did not (queued requests,
// more sockets), and a V8 profile of the first c=64 repetition had a tenth of the gateway's CPU in TurboFan.
// --cpu-prof writes the gateway's V8 CPU profile to tmp/prof/ when it exits.
// The gateway runs as in production: policy with a rate limit on the called tool (high enough never to refuse, so
// every call is counted in Redis) and audit events to a BullMQ queue (a bench-only prefix, emptied at the end).
// --guards instead alternates two gateways, one with audit and rate limits on and one with both off
// (GATEWAY_AUDIT_ENABLED / GATEWAY_RATE_LIMITS_ENABLED), and prints their throughput cost; `--guards-off audit` or
// `--guards-off rate-limits` turns only that one off in the "direct" gateway, to price each guard alone.
// --against <dir> instead alternates this tree's gateway with a baseline gateway built elsewhere (<dir>/apps/gateway/main.js,
// e.g. a copy of dist/ taken before a change, kept inside the repository so its packages resolve), both with guards on,
// and prints the change in throughput and CPU per call paired by repetition. --node-args "<flags>" and
// --against-node-args "<flags>" add Node flags to either (with --against-node-args alone the baseline is this build).
// --bare-proxy adds a third target in the rotation: a bare Node reverse proxy with no MCP logic
// (tools/bench/lib/bare-proxy.mjs), the floor any HTTP proxy built on Node's own HTTP stacks pays on this machine.
// --tcp-relay adds one more: a relay piping bytes with no HTTP parsing (tools/bench/lib/tcp-relay.mjs), the floor of
// any Node process in the path.
// --bridges adds the two npm bridges issue #3 names, at their pinned devDependency versions: supergateway
// (stdio → Streamable HTTP, stateful: one child process per session) and mcp-proxy (Streamable HTTP only, one child
// process shared by all sessions), each in front of the same SDK server (the demo upstream's kitchen-sink) over stdio,
// as those bridges are built to run. Their "upstream CPU" is that of all their child processes.
// --unguarded adds another target in the rotation: a second gateway with audit and rate limits off (API-key auth and
// policy on), the configuration issue #3's targets are stated for; issue #5 prices the guards on top (--guards).
// Needs: `npx nx run-many -t build -p gateway demo-upstreams`, Postgres and Redis as for npm test.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { applyMigrations, withDatabaseUrl, DEFAULT_ADMIN_URL } from '../db/index.mjs';
import { argValue as arg, freePort, startBuiltApp, waitReady } from '../scripts/lib/harness.mjs';
import { repoRoot } from '../scripts/lib/run.mjs';
import { benchGatewayEnv, closeSession, discardBenchData, openSession, messageFor, post, seedCallBenchTenant } from './lib/mcp-bench.mjs';

const SECONDS = Math.min(Number(arg('seconds', '5')), 30);
const REPS = Math.min(Number(arg('reps', '3')), 10);
const CONCURRENCY = arg('concurrency', '1,16,64').split(',').map(Number).filter((n) => n > 0 && n <= 256);
const MAX_CALLS_PER_RUN = 500_000;

const PROFILE = process.argv.includes('--cpu-prof');
const GUARDS = process.argv.includes('--guards');
const GUARDS_OFF = arg('guards-off', 'both');
if (!['both', 'audit', 'rate-limits'].includes(GUARDS_OFF)) throw new Error('--guards-off takes audit, rate-limits or both');
const BARE_PROXY = process.argv.includes('--bare-proxy');
const UNGUARDED = process.argv.includes('--unguarded');
const TCP_RELAY = process.argv.includes('--tcp-relay');
const BRIDGES = process.argv.includes('--bridges');
const WARMUP_SECONDS = Math.min(Number(arg('warmup', '5')), 30);
if (!(WARMUP_SECONDS >= 0)) throw new Error('--warmup takes a number of seconds (0: no warm-up)');
const WARMUP_CONCURRENCY = 16;
const WARMUP_EACH_SECONDS = Math.min(Number(arg('warmup-each', '2')), 30);
if (!(WARMUP_EACH_SECONDS >= 0)) throw new Error('--warmup-each takes a number of seconds (0: none)');
const NODE_ARGS = arg('node-args', '').split(' ').filter(Boolean);
const AGAINST_NODE_ARGS = arg('against-node-args', '').split(' ').filter(Boolean);
const AGAINST = arg('against', '') || (AGAINST_NODE_ARGS.length > 0 ? path.join(repoRoot, 'dist') : '');
if (AGAINST && GUARDS) throw new Error('--against and --guards each replace the direct target: use one');
if (UNGUARDED && (AGAINST || GUARDS)) throw new Error('--unguarded adds a target beside direct: not with --against or --guards');
// The gateway runs' time windows on the monotonic clock, which V8 profiles also use: the summariser
// (tools/bench/gateway-profile.mjs) keeps only samples taken while load was on.
const profileWindows = [];
/** The local Redis server's pid (audit queue and rate-limit counters), to count its CPU per call; null if unknown. */
let redisPid = null;

async function localRedisPid(url) {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const pid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1]);
    // A Redis in a container reports its own namespace's pid: count it only if that pid here is a Redis.
    if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('redis')) return null;
    cpuMicros(pid);
    return pid;
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}

function start(name, entry, env, extraNodeArgs = []) {
  const profile = PROFILE && name === 'gateway' ? ['--cpu-prof', `--cpu-prof-dir=${path.join(repoRoot, 'tmp/prof')}`] : [];
  return startBuiltApp(name, { entry, env, nodeArgs: [...profile, ...extraNodeArgs] });
}

/** utime + stime of a process, in microseconds (clock ticks are 100 Hz on Linux). */
function cpuMicros(pid) {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** read and write system calls so far (/proc/<pid>/io): writes per call show whether responses are coalesced. */
function syscalls(pid) {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(io)?.[1] ?? 0);
  return { reads: field('syscr'), writes: field('syscw') };
}

/** Every live descendant of `pid` (children's children too), from /proc/<pid>/task/<tid>/children. */
function descendants(pid) {
  const found = [];
  const read = (read) => {
    try {
      return read();
    } catch {
      return null; // exited meanwhile
    }
  };
  const visit = (parent) => {
    for (const tid of read(() => readdirSync(`/proc/${parent}/task`)) ?? []) {
      const children = read(() => readFileSync(`/proc/${parent}/task/${tid}/children`, 'utf8')) ?? '';
      for (const child of children.split(' ').filter(Boolean).map(Number)) {
        found.push(child);
        visit(child);
      }
    }
  };
  visit(pid);
  return found;
}

/** The upstream's CPU so far: its one process, or (a bridge's stdio servers) the sum over the bridge's descendants. */
function upstreamCpuMicros(target) {
  if (target.upstreamPid !== null) return cpuMicros(target.upstreamPid);
  let sum = 0;
  for (const pid of descendants(target.pid)) {
    try {
      sum += cpuMicros(pid);
    } catch {
      // exited between the listing and the read
    }
  }
  return sum;
}

function cpuSplit(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) * 10_000, system: Number(fields[12]) * 10_000 };
}

/** One run of `seconds` at `concurrency`; `profiled`: a window the CPU-profile summariser keeps (not the warm-up). */
async function run(target, concurrency, seconds = SECONDS, profiled = true) {
  const sessions = await Promise.all(Array.from({ length: concurrency }, () => openSession(target.url, target.auth)));
  const latencies = [];
  let errors = 0;
  let firstError = null;
  const cpuBefore = target.pid ? cpuMicros(target.pid) : 0;
  const systemBefore = target.pid ? cpuSplit(target.pid).system : 0;
  const ioBefore = target.pid ? syscalls(target.pid) : null;
  const upstreamCpuBefore = upstreamCpuMicros(target);
  const redisCpuBefore = redisPid ? cpuMicros(redisPid) : 0;
  const selfCpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1_000;
  let nextId = 1;
  await Promise.all(
    sessions.map(async (headers) => {
      while (Date.now() < deadline && latencies.length + errors < MAX_CALLS_PER_RUN) {
        const id = nextId++;
        const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: target.tool, arguments: { message: 'hello portcullis' } } });
        const t0 = process.hrtime.bigint();
        try {
          const res = await post(target.url, headers, body);
          const message = messageFor(res, id);
          if (res.status !== 200 || message.error || message.result?.isError) {
            errors++;
            firstError ??= `HTTP ${res.status} ${res.text.slice(0, 300)}`;
          } else latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (error) {
          errors++;
          firstError ??= String(error?.message ?? error);
        }
      }
    }),
  );
  const ended = process.hrtime.bigint();
  if (firstError) console.log(`  (${target.url}, c=${concurrency}: ${errors} errors; first: ${firstError})`);
  const elapsed = Number(ended - started) / 1e9;
  const cpu = target.pid ? cpuMicros(target.pid) - cpuBefore : null;
  const system = target.pid ? cpuSplit(target.pid).system - systemBefore : null;
  const ioAfter = target.pid ? syscalls(target.pid) : null;
  const upstreamCpu = upstreamCpuMicros(target) - upstreamCpuBefore;
  const redisCpu = redisPid ? cpuMicros(redisPid) - redisCpuBefore : null;
  const selfCpu = process.cpuUsage(selfCpuBefore);
  // Ended sessions free what they hold (a supergateway session's child process, the gateway's upstream sessions)
  // instead of piling up over the runs; unmeasured.
  await Promise.all(sessions.map((headers) => closeSession(target.url, headers)));
  if (target.pid && profiled) profileWindows.push({ concurrency, startUs: Number(started / 1000n), endUs: Number(ended / 1000n) });
  const perCall = (micros) => micros / Math.max(1, latencies.length + errors);
  latencies.sort((a, b) => a - b);
  const pick = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    calls: latencies.length,
    errors,
    rps: latencies.length / elapsed,
    p50: pick(0.5),
    p99: pick(0.99),
    cpuPerCallMicros: cpu === null ? null : perCall(cpu),
    systemShare: cpu === null || cpu === 0 ? null : system / cpu,
    writesPerCall: ioBefore && ioAfter ? perCall(ioAfter.writes - ioBefore.writes) : null,
    readsPerCall: ioBefore && ioAfter ? perCall(ioAfter.reads - ioBefore.reads) : null,
    upstreamCpuPerCallMicros: perCall(upstreamCpu),
    loadCpuPerCallMicros: perCall(selfCpu.user + selfCpu.system),
    redisCpuPerCallMicros: redisCpu === null ? null : perCall(redisCpu),
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main() {
  const baseAdmin = process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const adminUrl = withDatabaseUrl(baseAdmin, { database });
  const children = [];
  /** The bridges' processes (--bridges): their stdio servers are stopped with them. */
  const bridges = [];
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const queuePrefix = `bench-${randomBytes(4).toString('hex')}`;
  redisPid = await localRedisPid(redisUrl);
  try {
    await applyMigrations({ adminUrl });
    const upstreamPort = await freePort();
    const gatewayPort = await freePort();
    const upstreamUrl = `http://127.0.0.1:${upstreamPort}/kitchen-sink/mcp`;

    const { apiKey } = await seedCallBenchTenant(adminUrl, upstreamUrl);

    const upstream = start('demo-upstreams', 'main.js', { DEMO_UPSTREAMS_PORT: String(upstreamPort), DEMO_UPSTREAMS_SERVERS: 'kitchen-sink' });
    children.push(upstream);
    await waitReady(`http://127.0.0.1:${upstreamPort}/readyz`, upstream);
    const startGateway = async (port, guards, { entry = 'main.js', nodeArgs = NODE_ARGS } = {}) => {
      const child = start('gateway', entry, benchGatewayEnv({ port, adminUrl, redisUrl, queuePrefix, guards }), nodeArgs);
      children.push(child);
      await waitReady(`http://127.0.0.1:${port}/readyz`, child);
      return child;
    };
    const gateway = await startGateway(gatewayPort, true);
    // The baseline's entry, relative to this tree's dist/apps/gateway (where startBuiltApp looks).
    const againstEntry = AGAINST ? path.relative(path.join(repoRoot, 'dist/apps/gateway'), path.resolve(AGAINST, 'apps/gateway/main.js')) : null;
    const gatewayTarget = (child, port) => ({
      url: `http://127.0.0.1:${port}/t/bench/mcp`,
      auth: { authorization: `Bearer ${apiKey}` },
      tool: 'sink__echo',
      pid: child.pid,
      upstreamPid: upstream.pid,
    });
    const bare = GUARDS
      ? await freePort().then(async (port) =>
          gatewayTarget(await startGateway(port, GUARDS_OFF === 'both' ? false : { audit: GUARDS_OFF !== 'audit', rateLimits: GUARDS_OFF !== 'rate-limits' }), port),
        )
      : againstEntry
        ? await freePort().then(async (port) => gatewayTarget(await startGateway(port, true, { entry: againstEntry, nodeArgs: AGAINST_NODE_ARGS }), port))
        : null;
    // Without --guards: direct vs the gateway (guards on). With it: the gateway without guards (as `direct`) vs with.
    const targets = {
      direct: bare ?? { url: upstreamUrl, auth: {}, tool: 'echo', pid: null, upstreamPid: upstream.pid },
      gateway: gatewayTarget(gateway, gatewayPort),
    };
    /** A proxy of tools/bench/lib in front of the upstream, as a target (its readiness is the upstream's, through it). */
    const startProxy = async (script) => {
      const port = await freePort();
      const child = spawn(process.execPath, [path.join(repoRoot, 'tools/bench/lib', script), String(port), `http://127.0.0.1:${upstreamPort}`], {
        cwd: repoRoot,
        env: { PATH: process.env.PATH, NODE_ENV: 'production' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.push(child);
      await waitReady(`http://127.0.0.1:${port}/readyz`, child);
      return { url: `http://127.0.0.1:${port}/kitchen-sink/mcp`, auth: {}, tool: 'echo', pid: child.pid, upstreamPid: upstream.pid };
    };
    if (BARE_PROXY) targets.proxy = await startProxy('bare-proxy.mjs');
    if (TCP_RELAY) targets.relay = await startProxy('tcp-relay.mjs');
    if (BRIDGES) {
      const stdioServer = [process.execPath, path.join(repoRoot, 'dist/apps/demo-upstreams/stdio.js'), 'kitchen-sink'];
      /** A bridge from node_modules in front of the stdio server; readiness through `readyPath`. */
      const startBridge = async (bin, args, readyPath) => {
        const port = await freePort();
        const child = spawn(process.execPath, [path.join(repoRoot, 'node_modules', bin), ...args(port)], {
          cwd: repoRoot,
          env: { PATH: process.env.PATH, NODE_ENV: 'production', LOG_LEVEL: 'warn' },
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        children.push(child);
        bridges.push(child);
        await waitReady(`http://127.0.0.1:${port}${readyPath}`, child);
        return { url: `http://127.0.0.1:${port}/mcp`, auth: {}, tool: 'echo', pid: child.pid, upstreamPid: null };
      };
      targets.supergateway = await startBridge(
        'supergateway/dist/index.js',
        (port) => [
          '--stdio', stdioServer.map((word) => `'${word}'`).join(' '), // run by a shell
          '--outputTransport', 'streamableHttp', '--stateful', '--streamableHttpPath', '/mcp',
          '--port', String(port), '--healthEndpoint', '/readyz', '--logLevel', 'none',
        ],
        '/readyz',
      );
      targets['mcp-proxy'] = await startBridge(
        'mcp-proxy/dist/bin/mcp-proxy.mjs',
        (port) => ['--host', '127.0.0.1', '--port', String(port), '--server', 'stream', '--', ...stdioServer],
        '/ping',
      );
    }
    if (UNGUARDED) {
      const port = await freePort();
      targets.unguarded = gatewayTarget(await startGateway(port, false), port);
    }
    if (GUARDS) {
      const off = GUARDS_OFF === 'both' ? 'audit and rate limits' : GUARDS_OFF === 'audit' ? 'audit' : 'rate limits';
      console.log(`--guards: "direct" rows are the gateway with ${off} off, "gateway" rows with both on`);
    }
    if (againstEntry) {
      console.log(`--against: "direct" rows are the baseline gateway (${path.resolve(AGAINST, 'apps/gateway/main.js')}${AGAINST_NODE_ARGS.length ? ` ${AGAINST_NODE_ARGS.join(' ')}` : ''}), "gateway" rows this build${NODE_ARGS.length ? ` (${NODE_ARGS.join(' ')})` : ''}`);
    }
    console.log(`bench:gateway — ${SECONDS}s per run, ${REPS} repetitions, concurrency ${CONCURRENCY.join('/')}, node ${process.version}`);
    if (WARMUP_SECONDS > 0) {
      const warm = [];
      for (const [name, target] of Object.entries(targets)) warm.push(`${name} ${(await run(target, WARMUP_CONCURRENCY, WARMUP_SECONDS, false)).rps.toFixed(0)}`);
      console.log(`warm-up, unmeasured (${WARMUP_SECONDS}s each at c=${WARMUP_CONCURRENCY}, calls/s): ${warm.join(', ')}`);
    }
    const rows = [];
    for (const c of CONCURRENCY) {
      const names = Object.keys(targets);
      if (WARMUP_EACH_SECONDS > 0) for (const name of names) await run(targets[name], c, WARMUP_EACH_SECONDS, false);
      const results = Object.fromEntries(names.map((name) => [name, []]));
      for (let rep = 0; rep < REPS; rep++) {
        // Each repetition starts with a different target, so no target always runs first (or right after another).
        for (let i = 0; i < names.length; i++) {
          const name = names[(rep + i) % names.length];
          results[name].push(await run(targets[name], c));
        }
      }
      const summary = (list) => ({
        rps: median(list.map((r) => r.rps)),
        p50: median(list.map((r) => r.p50)),
        p99: median(list.map((r) => r.p99)),
        errors: list.reduce((sum, r) => sum + r.errors, 0),
        cpu: list[0]?.cpuPerCallMicros === null ? null : median(list.map((r) => r.cpuPerCallMicros)),
        upstreamCpu: median(list.map((r) => r.upstreamCpuPerCallMicros)),
        systemShare: list[0]?.systemShare === null ? null : median(list.map((r) => r.systemShare)),
        writesPerCall: list[0]?.writesPerCall === null ? null : median(list.map((r) => r.writesPerCall)),
        readsPerCall: list[0]?.readsPerCall === null ? null : median(list.map((r) => r.readsPerCall)),
        loadCpu: median(list.map((r) => r.loadCpuPerCallMicros)),
        redisCpu: redisPid === null ? null : median(list.map((r) => r.redisCpuPerCallMicros)),
      });
      const d = summary(results.direct);
      const g = summary(results.gateway);
      // Each repetition's gateway/direct throughput ratio, paired within the repetition: steadier than the ratio of
      // medians on a machine whose speed drifts from one minute to the next.
      const paired = results.gateway.map((r, i) => r.rps / results.direct[i].rps);
      const pairedCpu = againstEntry ? results.gateway.map((r, i) => r.cpuPerCallMicros / results.direct[i].cpuPerCallMicros) : [];
      // On a saturated machine every process's CPU per call is what bounds throughput: the share the on-target adds to
      // the whole (gateway, upstream, load generator, Redis) is the throughput it costs, without the run-to-run drift.
      const total = (x) => (x.cpu ?? 0) + x.upstreamCpu + x.loadCpu + (x.redisCpu ?? 0);
      const cpuModelCost = 1 - total(d) / total(g);
      const pairedText = `paired by repetition: median ${(100 * median(paired)).toFixed(1)}%, range ${(100 * Math.min(...paired)).toFixed(1)}–${(100 * Math.max(...paired)).toFixed(1)}%`;
      const b = results.proxy ? summary(results.proxy) : null;
      const relay = results.relay ? summary(results.relay) : null;
      const u = results.unguarded ? summary(results.unguarded) : null;
      const pairedUnguarded = results.unguarded ? results.unguarded.map((r, i) => r.rps / results.direct[i].rps) : [];
      const bridgeSummaries = Object.fromEntries(
        ['supergateway', 'mcp-proxy'].filter((name) => results[name]).map((name) => [
          name,
          { ...summary(results[name]), paired: median(results[name].map((r, i) => r.rps / results.direct[i].rps)) },
        ]),
      );
      rows.push({ c, d, g, pairedRatio: median(paired), cpuModelCost, ...(b ? { b } : {}), ...(relay ? { relay } : {}), ...(u ? { u, pairedUnguarded: median(pairedUnguarded) } : {}), bridges: bridgeSummaries });
      console.log(
        `c=${String(c).padEnd(3)} direct  ${d.rps.toFixed(0).padStart(6)} calls/s  p50 ${d.p50.toFixed(2)} ms  p99 ${d.p99.toFixed(2)} ms  errors ${d.errors}  ${d.cpu === null ? '' : `gateway CPU ${d.cpu.toFixed(0)} µs/call  `}upstream CPU ${d.upstreamCpu.toFixed(0)} µs/call  load generator ${d.loadCpu.toFixed(0)} µs/call\n` +
          `      gateway ${g.rps.toFixed(0).padStart(6)} calls/s  p50 ${g.p50.toFixed(2)} ms  p99 ${g.p99.toFixed(2)} ms  errors ${g.errors}  gateway CPU ${g.cpu?.toFixed(0)} µs/call (${(100 * (g.systemShare ?? 0)).toFixed(0)}% kernel, ${g.writesPerCall?.toFixed(2)} writes + ${g.readsPerCall?.toFixed(2)} reads/call)  upstream CPU ${g.upstreamCpu.toFixed(0)} µs/call  load generator ${g.loadCpu.toFixed(0)} µs/call${g.redisCpu === null ? '' : `  Redis ${g.redisCpu.toFixed(0)} µs/call`}\n` +
          (againstEntry
            ? `      change  throughput ${(100 * (g.rps / d.rps - 1)).toFixed(1)}% vs the baseline, gateway CPU ${d.cpu?.toFixed(0)} → ${g.cpu?.toFixed(0)} µs/call, added p50 ${(g.p50 - d.p50).toFixed(3)} ms\n` +
              `              this/baseline throughput ${pairedText}; CPU per call paired: median ${(100 * median(pairedCpu)).toFixed(1)}%, range ${(100 * Math.min(...pairedCpu)).toFixed(1)}–${(100 * Math.max(...pairedCpu)).toFixed(1)}%`
            : GUARDS
            ? `      guards  throughput cost ${(100 * (1 - g.rps / d.rps)).toFixed(1)}% (${GUARDS_OFF === 'both' ? 'audit + rate limits' : GUARDS_OFF} on vs off), added p50 ${(g.p50 - d.p50).toFixed(3)} ms, added CPU ${(g.cpu - d.cpu).toFixed(0)} µs/call\n` +
              `              on/off ${pairedText}; CPU of all processes per call ${total(d).toFixed(0)} → ${total(g).toFixed(0)} µs (Redis ${d.redisCpu?.toFixed(0)} → ${g.redisCpu?.toFixed(0)}): cost ${(100 * cpuModelCost).toFixed(1)}%`
            : `      ratio   throughput ${(100 * g.rps / d.rps).toFixed(1)}% of direct, added p50 ${(g.p50 - d.p50).toFixed(3)} ms\n` +
              `              gateway/direct ${pairedText}`),
      );
      if (u) {
        console.log(
          `      unguarded ${u.rps.toFixed(0).padStart(6)} calls/s  p50 ${u.p50.toFixed(2)} ms  p99 ${u.p99.toFixed(2)} ms  errors ${u.errors}  gateway CPU ${u.cpu?.toFixed(0)} µs/call (${(100 * (u.systemShare ?? 0)).toFixed(0)}% kernel)  upstream CPU ${u.upstreamCpu.toFixed(0)} µs/call\n` +
            `      ratio   gateway without audit and rate limits ${(100 * u.rps / d.rps).toFixed(1)}% of direct, added p50 ${(u.p50 - d.p50).toFixed(3)} ms\n` +
            `              unguarded/direct paired by repetition: median ${(100 * median(pairedUnguarded)).toFixed(1)}%, range ${(100 * Math.min(...pairedUnguarded)).toFixed(1)}–${(100 * Math.max(...pairedUnguarded)).toFixed(1)}%`,
        );
      }
      if (b) {
        console.log(
          `      bare proxy ${b.rps.toFixed(0).padStart(6)} calls/s  p50 ${b.p50.toFixed(2)} ms  p99 ${b.p99.toFixed(2)} ms  errors ${b.errors}  proxy CPU ${b.cpu?.toFixed(0)} µs/call (${(100 * (b.systemShare ?? 0)).toFixed(0)}% kernel)  upstream CPU ${b.upstreamCpu.toFixed(0)} µs/call\n` +
            `      ratio   bare proxy ${(100 * b.rps / d.rps).toFixed(1)}% of direct, added p50 ${(b.p50 - d.p50).toFixed(3)} ms; gateway ${(100 * g.rps / b.rps).toFixed(1)}% of the bare proxy`,
        );
      }
      if (relay) {
        console.log(
          `      tcp relay ${relay.rps.toFixed(0).padStart(6)} calls/s  p50 ${relay.p50.toFixed(2)} ms  p99 ${relay.p99.toFixed(2)} ms  errors ${relay.errors}  relay CPU ${relay.cpu?.toFixed(0)} µs/call (${(100 * (relay.systemShare ?? 0)).toFixed(0)}% kernel)  upstream CPU ${relay.upstreamCpu.toFixed(0)} µs/call  load generator ${relay.loadCpu.toFixed(0)} µs/call\n` +
            `      ratio   tcp relay ${(100 * relay.rps / d.rps).toFixed(1)}% of direct, added p50 ${(relay.p50 - d.p50).toFixed(3)} ms`,
        );
      }
      for (const [name, x] of Object.entries(bridgeSummaries)) {
        console.log(
          `      ${name} ${x.rps.toFixed(0).padStart(6)} calls/s  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  errors ${x.errors}  bridge CPU ${x.cpu?.toFixed(0)} µs/call (${(100 * (x.systemShare ?? 0)).toFixed(0)}% kernel)  stdio server CPU ${x.upstreamCpu.toFixed(0)} µs/call  load generator ${x.loadCpu.toFixed(0)} µs/call\n` +
            `      ratio   ${name} ${(100 * x.rps / d.rps).toFixed(1)}% of direct (paired median ${(100 * x.paired).toFixed(1)}%), added p50 ${(x.p50 - d.p50).toFixed(3)} ms; gateway ${(100 * g.rps / x.rps).toFixed(1)}% of ${name}`,
        );
      }
    }
    return rows;
  } finally {
    for (const pid of bridges.flatMap((child) => descendants(child.pid))) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone already
      }
    }
    for (const child of children) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, PROFILE ? 3_000 : 500));
    if (PROFILE) {
      mkdirSync(path.join(repoRoot, 'tmp/prof'), { recursive: true });
      writeFileSync(path.join(repoRoot, 'tmp/prof/windows.json'), JSON.stringify(profileWindows));
    }
    await discardBenchData({ adminUrl, redisUrl, queuePrefix });
  }
}

main().catch((error) => {
  console.error(`bench:gateway failed: ${error.message}`);
  process.exitCode = 1;
});
