#!/usr/bin/env node
// Summarises a V8 .cpuprofile (as written by `npm run bench:gateway -- --cpu-prof`) by self time:
// the top functions, the top modules (files / node internals), and idle/GC/program shares.
//
//   node tools/bench/gateway-profile.mjs [tmp/prof/<file>.cpuprofile] [--top 40] [--concurrency 16] [--all]
// Without a file it reads the newest .cpuprofile in tmp/prof/. Only samples inside the bench's load
// windows (tmp/prof/windows.json, written by the bench) count unless --all is given.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../scripts/lib/run.mjs';

const args = process.argv.slice(2);
const topIndex = args.indexOf('--top');
const TOP = topIndex === -1 ? 40 : Number(args[topIndex + 1]);
const positional = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--top' && args[i - 1] !== '--concurrency' && args[i - 1] !== '--callers' && args[i - 1] !== '--depth');

function newestProfile() {
  const dir = path.join(repoRoot, 'tmp/prof');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  return files[0];
}

const file = positional[0] ?? newestProfile();
const profile = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));

// The bench's load windows (same monotonic clock as the profile): keep only samples taken under load,
// so start-up (module loading, Prisma) and shutdown do not dilute the picture. --all keeps everything.
let windows = [];
const windowsFile = path.join(path.dirname(file), 'windows.json');
if (!args.includes('--all')) {
  try {
    windows = JSON.parse(readFileSync(windowsFile, 'utf8'));
  } catch {
    windows = [];
  }
}
const concurrencyIndex = args.indexOf('--concurrency');
if (concurrencyIndex !== -1) windows = windows.filter((w) => w.concurrency === Number(args[concurrencyIndex + 1]));
const inWindow = (t) => windows.length === 0 || windows.some((w) => t >= w.startUs && t <= w.endUs);

// Self time per node: the time deltas of the samples that landed on it.
const selfMicros = new Map();
let t = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  const delta = profile.timeDeltas[i] ?? 0;
  t += delta;
  if (!inWindow(t)) continue;
  const id = profile.samples[i];
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + delta);
}
const total = [...selfMicros.values()].reduce((a, b) => a + b, 0);

const moduleOf = (url) => {
  if (!url) return '(native / builtin)';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return `npm:${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  return url.replace(/^file:\/\//, '').replace(`${repoRoot}/`, '');
};

const byFunction = new Map();
const byModule = new Map();
for (const [id, micros] of selfMicros) {
  const node = nodes.get(id);
  const frame = node.callFrame;
  const mod = moduleOf(frame.url);
  const name = `${frame.functionName || '(anonymous)'}  ${mod}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
  const key = ['(idle)', '(garbage collector)', '(program)'].includes(frame.functionName) ? frame.functionName : mod;
  byModule.set(key, (byModule.get(key) ?? 0) + micros);
}

const pct = (v) => `${((100 * v) / total).toFixed(1).padStart(5)}%`;
const busy = total - (byModule.get('(idle)') ?? 0);
const print = (title, map, limit) => {
  console.log(`\n${title}`);
  for (const [name, micros] of [...map].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    console.log(`${pct(micros)}  ${((100 * micros) / busy).toFixed(1).padStart(5)}% busy  ${name}`);
  }
};
console.log(
  `${path.relative(repoRoot, file)}: ${(total / 1e6).toFixed(2)} s sampled${windows.length > 0 ? ` in ${windows.length} load window(s)` : ''}, busy ${((100 * busy) / total).toFixed(1)}%`,
);
print('by module (self time; % of all samples, % of busy samples)', byModule, 25);
print('by function (self time)', byFunction, TOP);

// --callers <function>: where that function's self time comes from (call stacks, --depth frames deep (default 6)).
const callersIndex = args.indexOf('--callers');
if (callersIndex !== -1) {
  const wanted = args[callersIndex + 1];
  const depthIndex = args.indexOf('--depth');
  const depth = depthIndex === -1 ? 6 : Number(args[depthIndex + 1]);
  const parents = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const stacks = new Map();
  for (const [id, micros] of selfMicros) {
    if (nodes.get(id).callFrame.functionName !== wanted) continue;
    const frames = [];
    for (let p = parents.get(id); p !== undefined && frames.length < depth; p = parents.get(p)) {
      const f = nodes.get(p).callFrame;
      frames.push(`${f.functionName || '(anonymous)'}@${moduleOf(f.url).replace(/^node:/, '')}:${f.lineNumber + 1}`);
    }
    const key = frames.join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + micros);
  }
  print(`callers of ${wanted}`, stacks, 15);
}

// --inclusive: total time per function (self + callees), each sample counted once per function.
if (args.includes('--inclusive')) {
  const parents = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const inclusive = new Map();
  for (const [id, micros] of selfMicros) {
    const seen = new Set();
    for (let p = id; p !== undefined; p = parents.get(p)) {
      const f = nodes.get(p).callFrame;
      const name = `${f.functionName || '(anonymous)'}  ${moduleOf(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + micros);
    }
  }
  print('inclusive time (self + callees)', inclusive, TOP);
}
