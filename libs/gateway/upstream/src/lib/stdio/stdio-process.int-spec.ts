import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UpstreamRpcError, type UpstreamConnector, type UpstreamSession } from '@portcullis/gateway/mcp';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { jsonLinesServer } from '@portcullis/shared/util-testing';
import { identity, recordingLogger, upstreamConfig, waitFor, type RecordingLogger } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector, type UpstreamConnectorOptions } from '../upstream-connector';

const fixture = fileURLToPath(new URL('../../test-fixtures/stdio-fixture-server.mjs', import.meta.url));
const scripts = mkdtempSync(path.join(tmpdir(), 'pcs-stdio-process-'));

/** Writes a Node script for a stdio server into the temporary directory; returns its path. */
function script(name: string, source: string): string {
  const file = path.join(scripts, name);
  writeFileSync(file, source);
  return file;
}

/** A server that refuses every initialize, and that SIGTERM and the end of its stdin do not stop. */
const refusing = script(
  'refusing.mjs',
  `import { createInterface } from 'node:readline';
process.on('SIGTERM', () => undefined);
setInterval(() => undefined, 60_000);
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id } = JSON.parse(line);
  if (id !== undefined) process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32603, message: 'not today' } }) + '\\n');
});
`,
);

const GITHUB_TOKEN = `ghp_${'Zq9'.repeat(12)}`;
/** The fixture server, after telling stderr its configured credential, a GitHub token, and its whole environment. */
const leaking = script(
  'leaking.mjs',
  `process.stderr.write('401 for token ' + process.env.API_TOKEN + '\\n');
process.stderr.write('retrying with ${GITHUB_TOKEN}\\n');
process.stderr.write(JSON.stringify(process.env) + '\\n');
await import(${JSON.stringify(fixture)});
`,
);

/**
 * A server that answers every call with its pid, and runs on whatever becomes of its pipes: after answering
 * `close_stdin` it closes its stdin (the gateway's writes then meet EPIPE), after `close_stdout` its stdout; it tells
 * stderr when it has.
 */
const pipeCloser = script(
  'pipe-closer.mjs',
  `import { closeSync } from 'node:fs';
import { createInterface } from 'node:readline';
setInterval(() => undefined, 60_000);
const send = (message, then) => process.stdout.write(JSON.stringify(message) + '\\n', then);
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, params } = JSON.parse(line);
  if (id === undefined) return;
  if (method === 'initialize') {
    send({ jsonrpc: '2.0', id, result: { protocolVersion: params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'pipe-closer', version: '1.0.0' } } });
    return;
  }
  const answer = { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: String(process.pid) }], structuredContent: { pid: process.pid } } };
  const closed = (fd, name) => () => {
    if (fd === 0) process.stdin.destroy();
    closeSync(fd);
    process.stderr.write(name + ' closed\\n');
  };
  if (params?.name === 'close_stdin') send(answer, closed(0, 'stdin'));
  else if (params?.name === 'close_stdout') send(answer, closed(1, 'stdout'));
  else send(answer);
});
`,
);

/**
 * A server that exits as soon as it is called, its answer written after its exit: by a process it started (in a group
 * of its own, so it outlives the server's), which holds its stdout and stderr. For `hold` that process writes its pid to
 * stderr and nothing more, and runs on; otherwise, 300 ms later, a last stderr line without a newline, then the answer.
 */
const answersAfterExit = script(
  'answers-after-exit.mjs',
  `import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, params } = JSON.parse(line);
  if (id === undefined) return;
  if (method === 'initialize') {
    process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id, result: { protocolVersion: params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'answers-after-exit', version: '1.0.0' } } }) + '\\n');
    return;
  }
  const answer = JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'answered after exit' }] } });
  const late = params?.name === 'hold'
    ? "process.stderr.write('holder ' + process.pid + '\\\\n'); setInterval(() => undefined, 60_000)"
    : "setTimeout(() => { process.stderr.write('last words'); process.stdout.write(process.env.ANSWER + '\\\\n', () => process.exit(0)); }, 300)";
  spawn(process.execPath, ['-e', late], { stdio: ['ignore', 'inherit', 'inherit'], detached: true, env: { ...process.env, ANSWER: answer } }).unref();
  process.exit(0);
});
`,
);

/** A server that exits as it is initialized, its error answer to initialize written after its exit (as above). */
const refusesAfterExit = script(
  'refuses-after-exit.mjs',
  `import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id } = JSON.parse(line);
  const answer = JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32603, message: 'cannot start' } });
  spawn(process.execPath, ['-e', "setTimeout(() => process.stdout.write(process.env.ANSWER + '\\\\n', () => process.exit(0)), 300)"], { stdio: ['ignore', 'inherit', 'inherit'], detached: true, env: { ...process.env, ANSWER: answer } }).unref();
  process.exit(0);
});
`,
);

const DB_PASSWORD = 'reporting/pw-4242';
const ARG_PASSWORD = 'arg-pass-90210';
/** The fixture server, after quoting the passwords of the connection strings in its environment and its arguments. */
const quotingDsn = script(
  'quoting-dsn.mjs',
  `process.stderr.write('login refused for app with ' + decodeURIComponent(new URL(process.env.DATABASE_URL).password) + '\\n');
process.stderr.write('login refused for etl with ' + new URL(process.argv[2]).password + '\\n');
process.stderr.write('GET /login?user=app&pw=' + encodeURIComponent(${JSON.stringify(DB_PASSWORD)}) + '\\n');
await import(${JSON.stringify(fixture)});
`,
);

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
};

/**
 * A server that answers `pid` with its pid, and on `wedge` stops reading its stdin while it writes pings as fast as the
 * pipe takes them (their answers then fill its stdin).
 */
const wedging = script(
  'wedging.mjs',
  jsonLinesServer(`
    if (message.method === 'initialize') {
      send({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'wedging', version: '1' } } });
    } else if (message.method === 'tools/call' && message.params.name === 'pid') {
      send({ jsonrpc: '2.0', id: message.id, result: { content: [], structuredContent: { pid: process.pid } } });
    } else if (message.method === 'tools/call') {
      process.stdin.pause();
      let id = 1;
      const block = () => { let text = ''; for (let i = 0; i < 2000; i++) text += '{"jsonrpc":"2.0","id":' + (id++) + ',"method":"ping"}\\n'; return text; };
      const more = () => { while (process.stdout.write(block())); process.stdout.once('drain', more); };
      more();
    }`),
);

/** The pid of the process serving `session` (its server's `pid` tool). */
const pidOf = async (session: UpstreamSession) =>
  ((await session.request('tools/call', { name: 'pid' }, { timeoutMs: 1_000 }))['structuredContent'] as { pid: number }).pid;

/** The pids of every process the connector started. */
const startedPids = (logger: RecordingLogger): number[] =>
  logger.entries.filter((entry) => entry.message === 'upstream process started').map((entry) => entry.fields['pid'] as number);

describe('stdio processes', () => {
  const connectors: UpstreamConnector[] = [];
  const loggers: RecordingLogger[] = [];
  const connector = (options: Partial<UpstreamConnectorOptions> = {}) => {
    const logger = recordingLogger();
    loggers.push(logger);
    const created = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      stdioRestartBackoffMs: { initial: 20, max: 200 },
      stdioKillGraceMs: 300,
      logger,
      ...options,
    });
    connectors.push(created);
    return { connector: created, logger };
  };

  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    // What a failing spec left running goes, so that it fails alone.
    for (const pid of loggers.splice(0).flatMap(startedPids)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  });
  afterAll(() => rmSync(scripts, { recursive: true, force: true }));

  it('leaves no process running after shutdown when starts keep failing and the servers ignore SIGTERM', async () => {
    const { connector: c, logger } = connector();
    const config = upstreamConfig('stdio', { command: process.execPath, args: [refusing] });
    // Each failed initialize stops its child, which takes the grace period to die; the next start comes meanwhile.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await expect(c.connect(config, identity)).rejects.toBeInstanceOf(UpstreamRpcError);
    }
    const pids = startedPids(logger);
    expect(pids).toHaveLength(3);
    await c.shutdown();
    expect(pids.filter(isAlive)).toEqual([]);
  });

  // Only root starts processes as other users: the start then awaits the server's private home before it spawns.
  it.runIf(process.getuid?.() === 0)('starts no process when shutdown comes while a start awaits the server\u2019s home', async () => {
    const range = { first: 200_120, last: 200_120 };
    const { connector: c, logger } = connector({ stdioUidRange: range });
    try {
      const connecting = c.connect(upstreamConfig('stdio', { command: process.execPath, args: [fixture] }), identity);
      const stopped = c.shutdown();
      await expect(connecting).rejects.toMatchObject({ reason: 'closed' });
      await stopped;
      // Whatever a late start would have spawned has had time to be logged.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(startedPids(logger)).toEqual([]);
    } finally {
      rmSync(path.join(tmpdir(), `pcs-stdio-${range.first}-${range.last}`), { recursive: true, force: true });
    }
  });

  it('waits at shutdown for the processes of a pool that a configuration change retired', async () => {
    // The old process ignores SIGTERM: only the SIGKILL after the grace period (1 s) stops it.
    const { connector: c } = connector({ stdioKillGraceMs: 1_000 });
    const v1 = upstreamConfig('stdio', { command: process.execPath, args: [fixture], env: { FIXTURE_IGNORE_SIGTERM: '1' } });
    const kept = (await c.connect(v1, identity)) as { pid?: number };
    const old = kept.pid as number;
    // Another environment: a new pool and process; the old one goes on serving the session kept on it.
    const replaced = (await c.connect({ ...v1, env: {}, version: 2 }, identity)) as { pid?: number };
    expect(replaced.pid).not.toBe(old);
    expect(isAlive(old)).toBe(true);
    await c.shutdown();
    expect(isAlive(old)).toBe(false);
  });

  it('masks the configured credentials and credential-looking tokens in what a server writes to stderr', async () => {
    const { connector: c, logger } = connector();
    const secret = 'sk_live_configured-credential-42';
    await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [leaking], env: { API_TOKEN: secret } }), identity);
    const lines = () => logger.entries.filter((entry) => entry.message === 'upstream stderr').map((entry) => String(entry.fields['stderr']));
    // Its three lines, then the fixture's own.
    await waitFor(() => lines().includes('fixture started'));
    expect(lines().slice(0, 2)).toEqual(['401 for token [redacted]', 'retrying with [redacted]']);
    expect(lines()[2]).toContain('"API_TOKEN":"[redacted]"');
    for (const line of lines()) {
      expect(line).not.toContain(secret);
      expect(line).not.toContain(GITHUB_TOKEN);
    }
  });

  it('masks in stderr what errors are masked of: the passwords of connection strings in the environment and arguments, URL-encoded too', async () => {
    const { connector: c, logger } = connector();
    const config = upstreamConfig('stdio', {
      command: process.execPath,
      args: [quotingDsn, `postgres://etl:${ARG_PASSWORD}@db.internal/warehouse`],
      env: { DATABASE_URL: `postgres://app:${encodeURIComponent(DB_PASSWORD)}@db.internal/reports` },
    });
    await c.connect(config, identity);
    const lines = () => logger.entries.filter((entry) => entry.message === 'upstream stderr').map((entry) => String(entry.fields['stderr']));
    await waitFor(() => lines().includes('fixture started'));
    expect(lines().slice(0, 3)).toEqual([
      'login refused for app with [redacted]',
      'login refused for etl with [redacted]',
      'GET /login?user=app&pw=[redacted]',
    ]);
  });

  describe('a server that exits right after it answers', () => {
    const stderrLines = (logger: RecordingLogger) =>
      logger.entries.filter((entry) => entry.message === 'upstream stderr').map((entry) => String(entry.fields['stderr']));

    it('delivers the answer and the last stderr line it wrote before its output ended, though its exit came first', async () => {
      const { connector: c, logger } = connector();
      const session = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [answersAfterExit] }), identity);
      const result = await session.request('tools/call', { name: 'answer' });
      expect(result['content']).toEqual([{ type: 'text', text: 'answered after exit' }]);
      // Logged once its output has ended (a last line without a newline may yet go on).
      await waitFor(() => stderrLines(logger).includes('last words'));
    });

    it('fails the calls as closed about a second after its exit when something it left holds its output open', async () => {
      const { connector: c, logger } = connector();
      const session = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [answersAfterExit] }), identity);
      const started = Date.now();
      const failed = session.request('tools/call', { name: 'hold' }).catch((error: unknown) => error);
      const holder = Number((await waitFor(() => stderrLines(logger).find((line) => line.startsWith('holder ')))).split(' ')[1]);
      try {
        // Not at once (its output is still read), and not only at the call's timeout (10 s).
        expect(await failed).toMatchObject({ reason: 'closed' });
        expect(Date.now() - started).toBeGreaterThanOrEqual(900);
        expect(Date.now() - started).toBeLessThan(5_000);
      } finally {
        process.kill(holder, 'SIGKILL');
      }
    });
  });

  it('counts a server that exits while it is initialized as a crash, though its answer (an error) is read after the exit', async () => {
    const { connector: c, logger } = connector();
    const failed = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [refusesAfterExit] }), identity).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    // Before, the failed initialize stopped the child while its output was still read, and its exit then passed for
    // that stop: no crash counted, no backoff before the next start.
    await waitFor(() => logger.entries.find((entry) => entry.message === 'upstream process exited'));
    expect(logger.entries.find((entry) => entry.message === 'upstream process exited')?.fields).toMatchObject({ crashes: 1 });
  });

  describe('a server that closes a pipe but runs on', () => {
    const said = (logger: RecordingLogger, line: string) => logger.entries.some((entry) => entry.message === 'upstream stderr' && entry.fields['stderr'] === line);
    const killed = (logger: RecordingLogger) =>
      logger.entries.some((entry) => entry.message === 'upstream process closed its stdin or stdout but runs on; killing it for a restart');

    it('is killed and restarted once its stdin is found closed, rather than failing every call at once for good', async () => {
      const { connector: c, logger } = connector();
      const session = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [pipeCloser] }), identity);
      const first = await pidOf(session);
      await session.request('tools/call', { name: 'close_stdin' });
      // A request written before the pipe closed would be lost unread, and time out (as before).
      await waitFor(() => said(logger, 'stdin closed'));
      // The next write meets the closed pipe: that call fails (when the process is killed, after the 300 ms grace).
      await expect(pidOf(session)).rejects.toMatchObject({ reason: 'closed' });
      await waitFor(() => !isAlive(first), 3_000);
      expect(killed(logger)).toBe(true);
      // Restarted (with backoff) for the session: calls are served again, by a new process.
      const next = await waitFor(() => pidOf(session).catch(() => undefined), 3_000);
      expect(next).not.toBe(first);
    });

    it('is killed and restarted once its stdout ends, without any call having to time out first', async () => {
      const { connector: c, logger } = connector();
      const session = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [pipeCloser] }), identity);
      const first = await pidOf(session);
      await session.request('tools/call', { name: 'close_stdout' });
      await waitFor(() => said(logger, 'stdout closed'));
      // No call is made: nothing times out, and only the end of its stdout tells.
      await waitFor(() => !isAlive(first), 3_000);
      expect(killed(logger)).toBe(true);
      const next = await waitFor(() => pidOf(session).catch(() => undefined), 3_000);
      expect(next).not.toBe(first);
    });
  });

  describe('a server that stops reading its stdin but runs on', () => {
    it('is killed and restarted once its stdin has stayed full for a call timeout, rather than refusing every call as overloaded (found by a review)', async () => {
      const { connector: c, logger } = connector();
      const session = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [wedging], callTimeoutMs: 300 }), identity);
      const first = await pidOf(session);
      await session.request('tools/call', { name: 'wedge' }, { timeoutMs: 300 }).catch(() => undefined);
      // An agent calling every 100 ms: refused at once while the stdin is full (the answers to its pings, which the
      // gateway writes, fill it too), until the process is taken for hung.
      const next = await waitFor(async () => {
        const pid = await pidOf(session).catch(() => undefined);
        if (pid === undefined || pid === first) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          return undefined;
        }
        return pid;
      }, 10_000);
      expect(next).not.toBe(first);
      expect(logger.entries.some((entry) => entry.message === 'upstream process stopped reading its stdin; killing it for a restart')).toBe(true);
      expect(isAlive(first)).toBe(false);
    }, 20_000);
  });

  describe('the circuit breaker and the crash count', () => {
    it('counts a start whose initialize times out once toward the circuit, not twice', async () => {
      // A server that never answers its initialize: the circuit opens after three such starts, not after two.
      const { connector: c } = connector({ breaker: { failureThreshold: 3, cooldownMs: 60_000 } });
      const config = upstreamConfig('stdio', { command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], connectTimeoutMs: 200 });
      const reasons: unknown[] = [];
      for (let i = 0; i < 3; i += 1) reasons.push(await c.connect(config, identity).then(() => 'connected', (error: { reason?: unknown }) => error.reason));
      expect(reasons).toEqual(['timeout', 'timeout', 'timeout']);
      expect(c.circuits?.().find((circuit) => circuit.upstreamId === config.id)?.state).toBe('open');
    }, 20_000);

    it('starts a fresh crash count after a process that served stableMs and was stopped cleanly (idle)', async () => {
      const { connector: c } = connector({ stdioMaxRestarts: 1, stdioStableMs: 300, stdioIdleMs: 700 });
      const session = await c.connect(upstreamConfig('stdio', { command: process.execPath, args: [fixture] }), identity);
      const call = (name: string) => session.request('tools/call', { name, arguments: {} });
      // A first crash right after the start: one crash in a row.
      await expect(call('crash')).rejects.toMatchObject({ reason: 'closed' });
      // The restarted process serves beyond stableMs, then is stopped for idleness (not a crash).
      const pid = await waitFor(async () => pidOf(session).catch(() => undefined));
      await waitFor(() => !isAlive(pid), 5_000);
      // Later a process crashes once: the first crash of a new row, so the server is started again (with one crash
      // allowed, a second in the same row would open the circuit).
      await expect(call('crash')).rejects.toMatchObject({ reason: 'closed' });
      await expect(waitFor(async () => pidOf(session).catch((error: { reason?: string }) => (error.reason === 'circuit_open' ? 'circuit_open' : undefined)))).resolves.toEqual(expect.any(Number));
      await session.close();
    }, 20_000);
  });
});
