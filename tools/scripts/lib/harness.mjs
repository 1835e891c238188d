// @ts-check
// Scaffolding shared by the benchmarks (tools/bench) and the repo's scripts (tools/scripts): loading the workspace's
// TypeScript sources, command-line options, and starting built apps on free ports and waiting until they are ready.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { repoRoot } from './run.mjs';

/** @type {Promise<import('jiti').Jiti> | undefined} */
let jiti;
/** @type {Map<string, Promise<any>>} */
const imported = new Map();

/**
 * Imports a TypeScript source of the workspace (path relative to the repo root, e.g.
 * 'libs/policy/engine/src/index.ts') through jiti (a devDependency) with the path aliases of tsconfig.base.json, so
 * it runs as the apps run it, with no build step. jiti is loaded on first use only; each module is imported once.
 * @param {string} relativePath
 * @returns {Promise<any>}
 */
export function importSource(relativePath) {
  const known = imported.get(relativePath);
  if (known) return known;
  jiti ??= import('jiti').then(({ createJiti }) => {
    const { compilerOptions } = JSON.parse(readFileSync(path.join(repoRoot, 'tsconfig.base.json'), 'utf8'));
    /** @type {Record<string, string>} */
    const alias = {};
    for (const [name, [target]] of Object.entries(compilerOptions.paths ?? {}))
      alias[name] = path.join(repoRoot, target);
    // @prisma/client with Node's own require: its runtime is bundled CommonJS whose interop reads `default` of Node's
    // builtins, which jiti's interopDefault proxy leaves undefined. Through jiti, a query that failed (the database out
    // of reach) threw a TypeError from inside Prisma's error formatting instead of Prisma's own error. interopDefault
    // itself stays on: the sources default-import ESM-only packages (canonicalize).
    return createJiti(import.meta.url, { alias, interopDefault: true, nativeModules: ['@prisma/client'] });
  });
  const module = jiti.then((loader) => loader.import(path.join(repoRoot, relativePath)));
  imported.set(relativePath, module);
  return module;
}

/**
 * The value after `--<name>` on the command line, or `fallback` when the option is absent.
 * @param {string} name
 * @param {string} fallback
 */
export function argValue(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : process.argv[index + 1];
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
 * @returns {Promise<number>}
 */
export function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the built app dist/apps/<name>/<entry> with Node, from the repo root, in production mode with a minimal
 * environment (PATH, NODE_ENV=production, LOG_LEVEL=warn, then `env`, which may override them).
 * @param {string} name
 * @param {{ env?: Record<string, string | undefined>, entry?: string, nodeArgs?: string[],
 *   stdio?: import('node:child_process').StdioOptions }} [options]
 *   nodeArgs: Node flags before the entry (e.g. --cpu-prof); stdio: default stdout ignored, stderr inherited.
 */
export function startBuiltApp(
  name,
  { env = {}, entry = 'main.js', nodeArgs = [], stdio = ['ignore', 'ignore', 'inherit'] } = {},
) {
  return spawn(process.execPath, [...nodeArgs, path.join(repoRoot, 'dist/apps', name, entry)], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', LOG_LEVEL: 'warn', ...env },
    stdio,
  });
}

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `url` (GET) until it answers with a 2xx status. Resolves 'ready'; 'exited' as soon as `child` (if given) has
 * exited; 'timeout' after `timeoutMs`; 'stopped' once `stop()` returns true. Never throws.
 * @param {string} url
 * @param {{ timeoutMs: number, child?: import('node:child_process').ChildProcess, intervalMs?: number,
 *   requestTimeoutMs?: number | null, stop?: () => boolean }} options
 *   intervalMs: pause between attempts; requestTimeoutMs: limit per request (null: none).
 * @returns {Promise<'ready' | 'exited' | 'timeout' | 'stopped'>}
 */
export async function pollReady(
  url,
  { timeoutMs, child, intervalMs = 200, requestTimeoutMs = 1_000, stop = () => false },
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (stop()) return 'stopped';
    if (child && child.exitCode !== null) return 'exited';
    try {
      const res = await fetch(
        url,
        requestTimeoutMs === null ? {} : { signal: AbortSignal.timeout(requestTimeoutMs) },
      );
      if (res.ok) return 'ready';
    } catch {
      // not up yet
    }
    await sleep(intervalMs);
  }
  return stop() ? 'stopped' : 'timeout';
}

/**
 * Waits until `url` answers 2xx; throws if `child` exits first or `timeoutMs` passes.
 * @param {string} url
 * @param {import('node:child_process').ChildProcess} child the process that serves `url`
 * @param {number} [timeoutMs]
 */
export async function waitReady(url, child, timeoutMs = 30_000) {
  const state = await pollReady(url, { child, timeoutMs });
  if (state === 'exited') throw new Error(`${url}: process exited (${child.exitCode})`);
  if (state !== 'ready') throw new Error(`${url} not ready after ${timeoutMs} ms`);
}
