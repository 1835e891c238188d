import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const initializeResult = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } };

/**
 * A slow upstream must never block the others, also where they share an origin (an MCP hub serving /slow and /fast).
 * Sharing one keep-alive pool (keyed by tenant and origin), the slow upstream's calls held every socket; the fast
 * upstream's calls queued behind them, timed out, and opened its circuit (found by review). Each upstream now has a
 * pool of its own.
 */
describe('upstreams of one tenant on one origin', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.all(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('a slow upstream does not starve a fast one that shares its origin', async () => {
    const server = await rawServer((req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (text += c));
      req.on('end', () => {
        const message = text === '' ? {} : (JSON.parse(text) as { id?: number; method?: string });
        if (message.id === undefined) return void res.writeHead(202).end();
        if (message.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `s-${req.url}` });
          return void res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
        }
        if (req.url === '/slow') return; // hangs: a slow upstream
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [] } }));
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin: 4 });
    connectors.push(connector);
    const slow = await connector.connect(upstreamConfig('streamable_http', { url: `${server.url}/slow`, callTimeoutMs: 30_000 }), identity);
    const fastConfig = upstreamConfig('streamable_http', { url: `${server.url}/fast`, callTimeoutMs: 1_500 });
    const fast = await connector.connect(fastConfig, identity);
    expect(await fast.request('tools/call', { name: 'x', arguments: {} })).toEqual({ content: [] });
    // Four agents' calls to the slow upstream, each well within its own timeout.
    const pending = [1, 2, 3, 4].map(() => slow.request('tools/call', { name: 'x', arguments: {} }).catch(() => undefined));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    const outcome = await fast.request('tools/call', { name: 'x', arguments: {} }).then(
      (result) => ({ result }),
      (error: unknown) => ({ error: (error as { reason?: string }).reason, afterMs: Date.now() - started }),
    );
    // Nor do a few more of them, queued behind the slow upstream's calls, open its circuit.
    await Promise.all([1, 2, 3, 4].map(() => fast.request('tools/call', { name: 'x', arguments: {} }).catch(() => undefined)));
    const circuit = connector.circuits?.().find((c) => c.upstreamId === fastConfig.id)?.state;
    expect({ outcome, circuit }).toEqual({ outcome: { result: { content: [] } }, circuit: 'closed' });
    await connector.shutdown();
    await Promise.all(pending);
  }, 15_000);
});
