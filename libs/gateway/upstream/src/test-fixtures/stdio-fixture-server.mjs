// A minimal MCP server over stdio (newline-delimited JSON-RPC) for the connector's integration tests.
// It exposes what the demo servers cannot: its pid, its environment, the notifications it received,
// crashing on request, and sampling from a tool. Plain Node, no dependencies.
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const seen = [];
const subscribed = new Set(); // resource URIs the client subscribed to
const calls = []; // subscribe / unsubscribe / setLevel requests received, in order
let logLevel = null;
const waiting = new Map(); // our requests to the client, by id
const cancelled = new Set();
let nextId = 1;
let lastRoots = null;

const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const result = (id, value) => send({ jsonrpc: '2.0', id, result: value });
const text = (value, structured) => ({
  content: [{ type: 'text', text: String(value) }],
  ...(structured ? { structuredContent: structured } : {}),
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A stubborn server: ignores SIGTERM and the end of stdin, so only SIGKILL stops it.
const stubborn = process.env.FIXTURE_IGNORE_SIGTERM === '1';
if (stubborn) {
  process.on('SIGTERM', () => undefined);
  setInterval(() => undefined, 60_000);
}
// SIGUSR2: every subscribed resource changed, without a call (a call would count as activity).
process.on('SIGUSR2', () => {
  for (const uri of subscribed) send({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri } });
});
process.stderr.write(`fixture started\n`);
// Each start appends its pid here: a spec sees restarts without calling the process (a call would start it).
if (process.env.FIXTURE_STARTS_FILE) appendFileSync(process.env.FIXTURE_STARTS_FILE, `${process.pid}\n`);

const tools = {
  pid: () => text(process.pid, { pid: process.pid }),
  env: () => text('env', { env: { ...process.env } }),
  // Whether this process can read the environment of its parent (the gateway's, with its secrets), or of `pid`.
  peek: (args) => {
    let readable = true;
    try {
      readFileSync(`/proc/${args?.pid ?? process.ppid}/environ`);
    } catch {
      readable = false;
    }
    return text('peek', { uid: process.getuid(), readable });
  },
  seen: () => text('seen', { notifications: seen }),
  // What the client answered when this server last asked for its roots (after a roots/list_changed).
  roots: () => text('roots', { roots: lastRoots }),
  // What the shared session state looks like from this side.
  state: () => text('state', { subscribed: [...subscribed].sort(), logLevel, calls }),
  // A resource changed: the update goes out whether anyone subscribed (the gateway decides who sees it).
  touch: (args) => {
    send({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: args.uri } });
    return text('touched');
  },
  log: (args) => {
    send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: args.level, data: args.data } });
    return text('logged');
  },
  // Any notification tied to no call (a vendor's own, an elicitation's completion, a list change).
  notify: (args) => {
    send({ jsonrpc: '2.0', method: args.method, params: args.params ?? {} });
    return text('notified');
  },
  crash: () => process.exit(3),
  // One stdout line of 64 KiB, never ended by a newline (over a small message limit).
  huge: () => {
    process.stdout.write('x'.repeat(64 * 1024));
    return new Promise(() => undefined);
  },
  // Answers at once, then reports progress on the finished call (a late or stray notification).
  late: (_args, _id, meta) => {
    setTimeout(() => send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: meta?.progressToken, progress: 1, message: 'secret detail of this call' } }), 50);
    return text('answered');
  },
  // Works on for `ms` whatever becomes of the call (a cancellation is ignored, as servers may), logs what it did with
  // its argument, then answers.
  worklog: async (args) => {
    await sleep(args.ms ?? 300);
    send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `looked up ${args.query}` } });
    return text('done');
  },
  // Answers a task-augmented call with its task at once, then works on it for `ms` and logs what it did.
  taskedlog: (args) => {
    setTimeout(() => send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `task looked up ${args.query}` } }), args.ms ?? 300);
    const now = new Date().toISOString();
    return { task: { taskId: 'task-log', status: 'working', createdAt: now, lastUpdatedAt: now, ttl: 60_000 } };
  },
  // Answers a task-augmented call with its task at once (MCP 2025-11-25), then reports the task's progress under the
  // call's token, as a task's token stays valid for the task's lifetime.
  tasked: (_args, _id, meta) => {
    for (let step = 1; step <= 3; step += 1) {
      setTimeout(() => send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: meta?.progressToken, progress: step, total: 3 } }), 40 * step);
    }
    const now = new Date().toISOString();
    return { task: { taskId: 'task-1', status: 'working', createdAt: now, lastUpdatedAt: now, ttl: 60_000 } };
  },
  // A server that leaves things behind: a daemon in a session of its own (out of the server's process group) and files
  // in the shared temporary directories.
  daemonize: () => {
    const daemon = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); process.on('SIGHUP', () => {}); setInterval(() => {}, 1000)"], {
      stdio: 'ignore',
      detached: true,
    });
    daemon.unref();
    const files = [`/tmp/pcs-fixture-${process.pid}`, `/dev/shm/pcs-fixture-${process.pid}`];
    for (const file of files) writeFileSync(file, 'left behind');
    // A secret in directories it closed (0500): its owner cannot delete into them before opening them again.
    const closed = `/var/tmp/pcs-fixture-dir-${process.pid}`;
    mkdirSync(`${closed}/inner`, { recursive: true });
    writeFileSync(`${closed}/inner/secret`, 'for the next holder of this id');
    chmodSync(`${closed}/inner`, 0o500);
    chmodSync(closed, 0o500);
    // And its home, closed too, with something in it.
    const home = process.env.HOME;
    if (home) {
      writeFileSync(`${home}/note`, 'mine');
      chmodSync(home, 0o500);
    }
    return text(daemon.pid, { pid: daemon.pid, files: [...files, closed], home });
  },
  // What a wrapper (npx, a script) does: the real work in a process of its own, here one that ignores SIGTERM.
  grandchild: () => {
    const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: 'ignore' });
    return text(child.pid, { pid: child.pid });
  },
  // Deadlocked for good: alive, but answering nothing ever again.
  freeze: () => {
    for (;;);
  },
  noisy: () => {
    for (let i = 0; i < 100; i += 1) process.stderr.write(`noise ${i} ${'x'.repeat(2_000)}\n`);
    return text('noisy');
  },
  sleep: async (args, id) => {
    await sleep(args.ms ?? 1_000);
    return cancelled.has(id) ? undefined : text('slept');
  },
  progress: async (args, id, meta) => {
    for (let step = 1; step <= (args.steps ?? 3); step += 1) {
      await sleep(5);
      if (meta?.progressToken !== undefined) {
        send({
          jsonrpc: '2.0',
          method: 'notifications/progress',
          params: { progressToken: meta.progressToken, progress: step, total: args.steps },
        });
      }
    }
    return text('done');
  },
  ping_client: async () => {
    const id = `fixture-${nextId++}`;
    const answer = new Promise((resolve) => waiting.set(id, resolve));
    send({ jsonrpc: '2.0', id, method: 'ping' });
    const response = await answer;
    return response.error ? text(`error ${response.error.code}`) : text('pong');
  },
  ask: async (args) => {
    const id = `fixture-${nextId++}`;
    const answer = new Promise((resolve) => waiting.set(id, resolve));
    send({
      jsonrpc: '2.0',
      id,
      method: 'sampling/createMessage',
      params: {
        messages: [{ role: 'user', content: { type: 'text', text: args.question ?? '?' } }],
        maxTokens: 10,
      },
    });
    const response = await answer;
    return response.error ? text(`error ${response.error.code}`) : text(response.result.content.text);
  },
};

async function handle(message) {
  const { id, method, params = {} } = message;
  if (method === 'initialize') {
    return result(id, {
      protocolVersion: params.protocolVersion,
      capabilities: { tools: {}, resources: { subscribe: true }, logging: {} },
      serverInfo: { name: 'stdio-fixture', version: '1.0.0' },
    });
  }
  if (method === 'resources/subscribe' || method === 'resources/unsubscribe') {
    calls.push(`${method.slice('resources/'.length)} ${params.uri}`);
    // A process slow to take subscriptions (the restart replay then takes this long).
    const slowMs = Number(process.env.FIXTURE_SLOW_SUBSCRIBE_MS ?? 0);
    if (method === 'resources/subscribe' && slowMs > 0) await new Promise((resolve) => setTimeout(resolve, slowMs));
    // While this file exists, the next subscribe crashes the process (once: the file goes with it, unless
    // FIXTURE_CRASH_SUBSCRIBE_KEEP=1 keeps it, and every subscribe crashes).
    const crashFile = process.env.FIXTURE_CRASH_SUBSCRIBE_FILE;
    if (method === 'resources/subscribe' && crashFile && existsSync(crashFile)) {
      if (process.env.FIXTURE_CRASH_SUBSCRIBE_KEEP !== '1') rmSync(crashFile);
      process.exit(3);
    }
    // Once this file exists, mem://gone is refused as not found and mem://flaky fails with an internal error.
    const refuseFile = process.env.FIXTURE_REFUSE_FILE;
    if (method === 'resources/subscribe' && refuseFile && existsSync(refuseFile)) {
      if (params.uri === 'mem://gone') return send({ jsonrpc: '2.0', id, error: { code: -32002, message: 'Resource not found' } });
      if (params.uri === 'mem://flaky') return send({ jsonrpc: '2.0', id, error: { code: -32603, message: 'still starting' } });
    }
    if (method === 'resources/subscribe') subscribed.add(params.uri);
    else subscribed.delete(params.uri);
    return result(id, {});
  }
  if (method === 'logging/setLevel') {
    calls.push(`setLevel ${params.level}`);
    logLevel = params.level;
    return result(id, {});
  }
  if (method === 'tools/list')
    return result(id, {
      tools: Object.keys(tools).map((name) => ({ name, inputSchema: { type: 'object' } })),
    });
  if (method === 'tools/call') {
    const tool = tools[params.name];
    if (!tool)
      return send({ jsonrpc: '2.0', id, error: { code: -32602, message: `Unknown tool: ${params.name}` } });
    const value = await tool(params.arguments ?? {}, id, params._meta);
    if (value !== undefined) result(id, value);
    return;
  }
  send({ jsonrpc: '2.0', id, error: { code: -32601, message: `Method not found: ${method}` } });
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const message = JSON.parse(line);
    if (message.method === undefined) {
      waiting.get(message.id)?.(message);
      waiting.delete(message.id);
      return;
    }
    if (message.id === undefined) {
      seen.push(message);
      if (message.method === 'notifications/cancelled') cancelled.add(message.params.requestId);
      // As servers do: a client whose roots changed is asked for them.
      if (message.method === 'notifications/roots/list_changed') {
        const id = `fixture-${nextId++}`;
        waiting.set(id, (response) => {
          lastRoots = response.error ? { error: response.error.code } : response.result;
        });
        send({ jsonrpc: '2.0', id, method: 'roots/list' });
      }
      return;
    }
    void handle(message);
  })
  .on('close', () => {
    if (!stubborn) process.exit(0);
  });
