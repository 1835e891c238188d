import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';

export const repoRoot = path.resolve(__dirname, '../..');

/** A free TCP port on 127.0.0.1 (the OS picks; we release it immediately). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

export interface AppProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null if killed). */
  stop(graceMs?: number): Promise<number | null>;
}

export function startProcess(command: string, args: string[], env: Record<string, string>, cwd = repoRoot): AppProcess {
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'test', ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => text,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts a built Node app (`dist/apps/<name>/main.js`). */
export function startBuiltApp(name: string, env: Record<string, string>, entry = 'main.js'): AppProcess {
  return startProcess(process.execPath, [path.join(repoRoot, 'dist/apps', name, entry)], env);
}

/** Polls `url` until it answers 200, or throws with the process output after `timeoutMs`. */
export async function waitForReady(url: string, app: AppProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (app.child.exitCode !== null) throw new Error(`process exited early (${app.child.exitCode}):\n${app.output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms:\n${app.output()}`);
}

export async function waitForExit(app: AppProcess, timeoutMs: number): Promise<number | null> {
  if (app.child.exitCode !== null) return app.child.exitCode;
  const timer = setTimeout(() => app.child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(app.child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}
