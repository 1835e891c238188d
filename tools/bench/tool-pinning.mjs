// Tool pinning benchmark: `npm run bench:tool-pinning`. What pinning adds to the gateway: the `filter` hook over a
// 2,000-tool listing of pinned upstreams (hashing each definition), and the `admit` hook per call (map lookups only).
// TypeScript sources through jiti with the workspace aliases (like bench:policy). Loops bounded in count and time.
import { importSource } from '../scripts/lib/harness.mjs';

const { ToolPinIndex, toolPinningHooks } = await importSource('libs/gateway/tool-pinning/src/index.ts');
const { definitionHash } = await importSource('libs/contracts/tool-pins/src/index.ts');

const UPSTREAMS = 40;
const TOOLS_PER_UPSTREAM = 50; // 2,000 tools
const tool = (u, t) => ({
  name: `tool_${t}`,
  title: `Tool ${t} of upstream ${u}`,
  description: `Does thing ${t} for upstream ${u}. `.repeat(8),
  inputSchema: {
    type: 'object',
    properties: { query: { type: 'string', description: 'What to look for' }, limit: { type: 'integer', minimum: 1, maximum: 100 } },
    required: ['query'],
  },
  annotations: { readOnlyHint: true },
});
const upstreams = Array.from({ length: UPSTREAMS }, (_, u) => ({ id: `u${u}`, tenantId: 't', name: `up${u}`, toolPrefix: `up${u}`, transport: 'streamable_http', url: null, headers: {}, command: null, args: [], env: {}, connectTimeoutMs: 1, callTimeoutMs: 1, version: 1 }));
const listings = upstreams.map((_, u) => Array.from({ length: TOOLS_PER_UPSTREAM }, (__, t) => tool(u, t)));
const rows = listings.flatMap((items, u) => items.map((item) => {
  const hash = definitionHash('tool', item);
  return { upstreamId: `u${u}`, kind: 'tool', name: item.name, contentHash: hash, approvedHash: hash, blocked: false };
}));
const pins = new ToolPinIndex();
pins.replace(rows, []);
const ignore = () => undefined;
const silent = { warn: ignore, info: ignore, error: ignore, debug: ignore };
const hooks = toolPinningHooks({ pins, logger: silent });

function time(label, iterations, maxMs, fn) {
  const samples = [];
  const deadline = performance.now() + maxMs;
  for (let i = 0; i < iterations && performance.now() < deadline; i++) {
    const start = performance.now();
    fn(i);
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
  return { label, runs: samples.length, p50: q(0.5), p99: q(0.99) };
}

const results = [];
results.push(time('first listing of 2,000 tools (every definition hashed), ms', 50, 20_000, () => {
  const fresh = toolPinningHooks({ pins, logger: silent });
  for (let u = 0; u < UPSTREAMS; u++) fresh.filter({}, 'tool', upstreams[u], listings[u]);
}));
results.push(time('unchanged listing of 2,000 tools (40 pinned upstreams x 50), ms', 200, 20_000, () => {
  for (let u = 0; u < UPSTREAMS; u++) hooks.filter({}, 'tool', upstreams[u], listings[u]);
}));
const info = (i) => ({ record: {}, method: 'tools/call', requestId: i, traceId: 't', startedAt: 0, target: { upstream: upstreams[i % UPSTREAMS], kind: 'tool', name: `tool_${i % TOOLS_PER_UPSTREAM}` } });
const calls = Array.from({ length: 1_000 }, (_, i) => info(i));
const admitBatch = time('admit, per call (batches of 1,000), µs', 2_000, 20_000, () => {
  for (const call of calls) hooks.admit(call, undefined, undefined, undefined);
});
results.push({ ...admitBatch, p50: admitBatch.p50, p99: admitBatch.p99 });
for (const r of results) {
  const perCall = r.label.includes('µs');
  const f = (v) => (perCall ? ((v * 1000) / calls.length).toFixed(3) : v.toFixed(2));
  console.log(`${r.label}: p50 ${f(r.p50)}, p99 ${f(r.p99)} (${r.runs} runs)`);
}
