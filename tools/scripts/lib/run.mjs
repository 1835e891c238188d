// Small process helpers for the repo's scripts.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Environment every script and child process gets: no telemetry, caches inside the repo. */
export function baseEnv(extra = {}) {
  return {
    ...process.env,
    NX_DAEMON: 'false',
    NX_NO_CLOUD: 'true',
    NX_TUI: 'false',
    NEXT_TELEMETRY_DISABLED: '1',
    CHECKPOINT_DISABLE: '1',
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
    XDG_CACHE_HOME: process.env.XDG_CACHE_HOME ?? path.join(repoRoot, 'tmp/xdg-cache'),
    XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME ?? path.join(repoRoot, 'tmp/xdg-config'),
    ...extra,
  };
}

/** Runs a command to completion with inherited output; resolves with its exit code. */
export function run(command, args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: repoRoot, stdio: 'inherit', env: baseEnv(options.env), ...options.spawn });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    child.once('error', (error) => {
      console.error(`could not run ${command}: ${error.message}`);
      resolve(127);
    });
  });
}

export const bin = (name) => path.join(repoRoot, 'node_modules/.bin', name);
