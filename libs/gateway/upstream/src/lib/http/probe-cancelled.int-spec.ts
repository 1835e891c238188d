import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const dir = mkdtempSync(path.join(tmpdir(), 'probe-cancelled-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** A stdio server whose `hang` tool never answers; any other tool answers at once. */
const hanging = path.join(dir, 'hanging.mjs');
writeFileSync(
  hanging,
  `import { createInterface } from 'node:readline';
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, params } = JSON.parse(line);
  if (id === undefined) return;
  if (method === 'initialize') {
    process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id, result: ${JSON.stringify({ protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'hanging', version: '1' } })} }) + '\\n');
    return;
  }
  if (params?.name === 'hang') return;
  process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [] } }) + '\\n');
});
`,
);

const initializeResult = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } };

/**
 * A Streamable HTTP half-open probe that its agent gives up on (cancels) reports no verdict on the upstream's health,
 * and leaves the probe slot to the next call. It used to hold it: every call of every agent to the recovered upstream
 * was refused `circuit_open` for another whole cool-down (found by review). Nor does a request that could not even be
 * written take the slot.
 */
describe('a half-open probe cancelled by its agent', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.all(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('Streamable HTTP: lets the next call probe once the probe was cancelled', async () => {
    let mode: 'fail' | 'hang-once' | 'ok' = 'ok';
    const server = await rawServer((req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (text += c));
      req.on('end', () => {
        const message = text === '' ? {} : (JSON.parse(text) as { id?: number; method?: string });
        if (message.id === undefined) return void res.writeHead(202).end();
        if (message.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
          return void res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
        }
        if (mode === 'fail') return void res.writeHead(503).end();
        if (mode === 'hang-once') {
          mode = 'ok';
          return; // the probe: slow, its agent gives up
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [] } }));
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      allowPrivateNetworks: true,
      breaker: { failureThreshold: 1, cooldownMs: 2_000 },
    });
    connectors.push(connector);
    const config = upstreamConfig('streamable_http', { url: `${server.url}/mcp` });
    const session = await connector.connect(config, identity);
    mode = 'fail';
    await expect(session.request('tools/call', { name: 'x' })).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(connector.circuits?.()[0]?.state).toBe('open');
    mode = 'hang-once';
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    // The probe: the agent cancels it after 100 ms.
    const controller = new AbortController();
    const probe = session.request('tools/call', { name: 'x' }, { signal: controller.signal }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 100));
    controller.abort();
    await probe;
    // The upstream is healthy now; another agent's call.
    const next = await session.request('tools/call', { name: 'x' }).then(
      (result) => result,
      (error: unknown) => ({ refused: (error as { reason?: string }).reason }),
    );
    expect(next).toEqual({ content: [] });
  }, 15_000);

  // Found by review: the slot was taken before the request was written, and a request that could not be written left
  // before anything could give it back.
  it('Streamable HTTP: a request whose params cannot be written (the agent\'s own fault) does not take the probe slot', async () => {
    let healthy = false;
    const server = await rawServer((req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (text += c));
      req.on('end', () => {
        const message = text === '' ? {} : (JSON.parse(text) as { id?: number; method?: string });
        if (message.id === undefined) return void res.writeHead(202).end();
        if (message.method !== 'initialize' && !healthy) return void res.writeHead(503).end();
        const result = message.method === 'initialize' ? initializeResult : { content: [] };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, breaker: { failureThreshold: 1, cooldownMs: 300 } });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp` }), identity);
    await expect(session.request('tools/call', { name: 'x' })).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(connector.circuits?.()[0]?.state).toBe('open');
    healthy = true;
    await new Promise((resolve) => setTimeout(resolve, 350));
    // Nested past what JSON.stringify can write (JSON.parse takes it): refused as it is written, before anything went.
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) deep = { a: deep };
    expect(() => session.request('tools/call', { name: 'x', arguments: deep })).toThrow(RangeError);
    // The next call is the probe, and the upstream answers it.
    await expect(session.request('tools/call', { name: 'x' })).resolves.toEqual({ content: [] });
    expect(connector.circuits?.()[0]?.state).toBe('closed');
  });

  it('stdio: lets the next call probe once the probe was cancelled', async () => {
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, breaker: { failureThreshold: 1, cooldownMs: 1_000 } });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('stdio', { command: process.execPath, args: [hanging] }), identity);
    await expect(session.request('tools/call', { name: 'hang' }, { timeoutMs: 200 })).rejects.toMatchObject({ reason: 'timeout' });
    expect(connector.circuits?.()[0]?.state).toBe('open');
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const controller = new AbortController();
    const probe = session.request('tools/call', { name: 'hang' }, { signal: controller.signal }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 100));
    controller.abort();
    await probe;
    const next = await session.request('tools/call', { name: 'ok' }).then(
      (result) => result,
      (error: unknown) => ({ refused: (error as { reason?: string }).reason }),
    );
    expect(next).toEqual({ content: [] });
  }, 15_000);
});
