/**
 * Runs the *built* entry points with plain `node`, as the local stack and the gateway tests do.
 * Needs `npx nx build demo-upstreams` first; `npm test` builds every app before its test stages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

const distDir = path.resolve(__dirname, '../../../dist/apps/demo-upstreams');
const mainJs = path.join(distDir, 'main.js');
const stdioJs = path.join(distDir, 'stdio.js');

function text(result: object): string {
  const content = 'content' in result && Array.isArray(result.content) ? result.content : [];
  const first: unknown = content[0];
  return typeof first === 'object' && first !== null && 'text' in first ? String(first.text) : '';
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

beforeAll(() => {
  for (const file of [mainJs, stdioJs]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`npx nx build demo-upstreams\` first`);
  }
});

describe('stdio.js', () => {
  const clients: Client[] = [];
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((client) => client.close()));
  });

  async function spawnStdio(
    server: string,
    capabilities = {},
  ): Promise<{ client: Client; stderr: string[] }> {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [stdioJs, server],
      env: { PATH: process.env['PATH'] ?? '', LOG_LEVEL: 'info' },
      stderr: 'pipe',
    });
    const stderr: string[] = [];
    transport.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
    const client = new Client({ name: 'stdio-int-test', version: '0.0.0' }, { capabilities });
    clients.push(client);
    return { client, stderr, ...(await client.connect(transport).then(() => ({}))) };
  }

  it.each([
    ['files', 'read_file', { path: '/README.md' }, /^# Acme billing service/],
    ['math', 'multiply', { a: 6, b: 7 }, /^42$/],
    ['tickets', 'search_tickets', { query: 'csv' }, /TCK-1002/],
    ['kitchen-sink', 'echo', { message: 'ping' }, /^ping$/],
  ])('serves %s', async (server, tool, args, expected) => {
    const { client, stderr } = await spawnStdio(server);
    expect(text(await client.callTool({ name: tool, arguments: args }))).toMatch(expected);
    // Logs are JSON lines on stderr; stdout carried only protocol messages (or the client would have failed).
    await expect.poll(() => stderr.join(''), { timeout: 5_000 }).toMatch(/"msg":"serving over stdio"/);
    for (const line of stderr.join('').trim().split('\n'))
      expect(() => JSON.parse(line) as unknown).not.toThrow();
  });

  it('carries sampling requests over stdio', async () => {
    const { client } = await spawnStdio('kitchen-sink', { sampling: {} });
    client.setRequestHandler(CreateMessageRequestSchema, () => ({
      model: 'stub',
      role: 'assistant',
      content: { type: 'text', text: 'short' },
    }));
    expect(text(await client.callTool({ name: 'summarize_with_llm', arguments: { text: 'long' } }))).toBe(
      'short',
    );
  });

  it('returns division by zero as a tool error', async () => {
    const { client } = await spawnStdio('math');
    expect(await client.callTool({ name: 'divide', arguments: { a: 1, b: 0 } })).toMatchObject({
      isError: true,
    });
  });

  it('exits with a usage error for an unknown server', async () => {
    const child = spawn(process.execPath, [stdioJs, 'weather'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(64);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/usage: node stdio\.js <tickets \| files \| math \| kitchen-sink \| shapeshifter \| conformance \| conformance-schema>/);
  });
});

describe('main.js', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    child = undefined;
  });

  async function start(
    env: Record<string, string>,
  ): Promise<{ logs: Record<string, unknown>[]; port: number }> {
    const port = await freePort();
    const proc = spawn(process.execPath, [mainJs], {
      env: { PATH: process.env['PATH'] ?? '', DEMO_UPSTREAMS_PORT: String(port), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    const logs: Record<string, unknown>[] = [];
    const lines = createInterface({ input: proc.stdout });
    await new Promise<void>((resolve, reject) => {
      proc.once('exit', (code) => reject(new Error(`main.js exited early with ${code}`)));
      lines.on('line', (line) => {
        logs.push(JSON.parse(line) as Record<string, unknown>);
        if (logs.at(-1)?.['msg'] === 'demo upstreams listening') resolve();
      });
    });
    return { logs, port };
  }

  it('serves MCP over HTTP, logs JSON to stdout, and stops cleanly on SIGTERM', async () => {
    const { logs, port } = await start({ LOG_LEVEL: 'info', DEMO_UPSTREAMS_SERVERS: 'math' });
    expect(logs[0]).toMatchObject({
      level: 'info',
      service: 'demo-upstreams',
      servers: ['/mcp', '/math/mcp'],
    });
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    const client = new Client({ name: 'main-int-test', version: '0.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/math/mcp`)));
    expect(text(await client.callTool({ name: 'add', arguments: { a: 2, b: 2 } }))).toBe('4');
    expect((await fetch(`http://127.0.0.1:${port}/files/mcp`, { method: 'POST' })).status).toBe(404);

    const exited = new Promise<number | null>((resolve) => child?.once('exit', resolve));
    child?.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(logs.map((log) => log['msg'])).toEqual(expect.arrayContaining(['shutting down', 'stopped']));
    await client.close();
  });

  it('refuses bad configuration with exit code 78, naming the variable', async () => {
    const proc = spawn(process.execPath, [mainJs], {
      env: { PATH: process.env['PATH'] ?? '', DEMO_UPSTREAMS_PORT: 'eighty' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    expect(code).toBe(78);
    expect(stderr).toMatch(/DEMO_UPSTREAMS_PORT/);
  });
});
