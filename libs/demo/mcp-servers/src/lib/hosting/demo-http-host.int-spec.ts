import { Client, type ClientOptions } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type Progress,
} from '@modelcontextprotocol/sdk/types.js';
import { connect as connectSocket } from 'node:net';
import { createLogger } from '@portcullis/shared/util-logger';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { toolResultText } from '../testing/result-text';
import { startDemoHttpHost, type DemoHttpHost, type DemoHttpHostOptions } from './demo-http-host';

/** The host's log lines at error and above. */
const errorLines: string[] = [];
const logger = createLogger({ service: 'demo-http-host-test', level: 'error', destination: { write: (line: string) => errorLines.push(line) } });
const hostOptions: DemoHttpHostOptions = {
  host: '127.0.0.1',
  port: 0,
  defaultServer: 'tickets',
  mountedServers: ['files', 'math', 'kitchen-sink'],
  sessionIdleTimeoutMs: 60_000,
  maxBodyBytes: 64 * 1024,
  logger,
};
const fullCapabilities: ClientOptions = {
  capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } },
};

type TransportKind = 'streamable-http' | 'sse';

describe('demo HTTP host', () => {
  let host: DemoHttpHost;
  const clients: Client[] = [];

  beforeAll(async () => {
    host = await startDemoHttpHost(hostOptions);
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((client) => client.close()));
  });
  afterAll(() => host.close(1_000));

  function transportFor(kind: TransportKind, prefix: string): Transport {
    return kind === 'streamable-http'
      ? new StreamableHTTPClientTransport(new URL(`${host.url}${prefix}/mcp`))
      : new SSEClientTransport(new URL(`${host.url}${prefix}/sse`));
  }

  async function connect(
    kind: TransportKind,
    prefix = '',
    configure?: (client: Client) => void,
    options: ClientOptions = fullCapabilities,
  ): Promise<Client> {
    const client = new Client({ name: 'int-test', version: '0.0.0' }, options);
    configure?.(client);
    await client.connect(transportFor(kind, prefix));
    clients.push(client);
    return client;
  }

  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${host.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body,
    });

  describe('probes', () => {
    it('answers /healthz and /readyz', async () => {
      const health = await fetch(`${host.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${host.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready' });
    });
  });

  describe.each<TransportKind>(['streamable-http', 'sse'])('over %s', (kind) => {
    it('serves the tickets server at the root path', async () => {
      const client = await connect(kind);
      expect(client.getServerVersion()?.name).toBe('portcullis-demo-tickets');
      const created = await client.callTool({
        name: 'create_ticket',
        arguments: { title: 'VPN down', body: 'Nobody can connect', priority: 'high' },
      });
      expect(created.structuredContent).toMatchObject({ ticket: { id: 'TCK-1004', status: 'open' } });
      const found = await client.callTool({ name: 'search_tickets', arguments: { query: 'vpn' } });
      expect(found.structuredContent).toMatchObject({ total: 1, tickets: [{ id: 'TCK-1004' }] });
    });

    it('gives every session its own server instance', async () => {
      const first = await connect(kind);
      const second = await connect(kind);
      await first.callTool({ name: 'create_ticket', arguments: { title: 'only in first', body: '' } });
      const inSecond = await second.callTool({
        name: 'search_tickets',
        arguments: { query: 'only in first' },
      });
      expect(inSecond.structuredContent).toMatchObject({ total: 0 });
    });

    it('serves the mounted servers under /<name>', async () => {
      const math = await connect(kind, '/math');
      const divided = await math.callTool({ name: 'divide', arguments: { a: 1, b: 0 } });
      expect(divided).toMatchObject({ isError: true });
      const files = await connect(kind, '/files');
      expect(
        toolResultText(await files.callTool({ name: 'read_file', arguments: { path: '/README.md' } })),
      ).toMatch(/^# Acme/);
    });

    it('carries sampling, elicitation and roots requests back to the client', async () => {
      const client = await connect(kind, '/kitchen-sink', (c) => {
        c.setRequestHandler(CreateMessageRequestSchema, (request) => ({
          model: 'stub-llm',
          role: 'assistant',
          content: { type: 'text', text: `summary of ${request.params.messages.length} message(s)` },
        }));
        c.setRequestHandler(ElicitRequestSchema, () => ({ action: 'accept', content: { confirm: true } }));
        c.setRequestHandler(ListRootsRequestSchema, () => ({
          roots: [{ uri: 'file:///repo', name: 'repo' }],
        }));
      });
      const summary = await client.callTool({ name: 'summarize_with_llm', arguments: { text: 'long text' } });
      expect(summary.structuredContent).toEqual({ summary: 'summary of 1 message(s)', model: 'stub-llm' });
      const confirmed = await client.callTool({ name: 'confirm_action', arguments: { action: 'restart' } });
      expect(confirmed.structuredContent).toEqual({ action: 'restart', outcome: 'confirmed' });
      const roots = await client.callTool({ name: 'list_roots', arguments: {} });
      expect(toolResultText(roots)).toBe('repo: file:///repo');
    });

    it('streams progress and log messages, and stops on cancellation', async () => {
      const client = await connect(kind, '/kitchen-sink');
      const steps: number[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
        steps.push((notification.params.data as { step: number }).step);
      });
      await client.setLoggingLevel('debug');

      const progress: Progress[] = [];
      const done = await client.callTool(
        { name: 'slow_count', arguments: { steps: 3, interval_ms: 5 } },
        undefined,
        {
          onprogress: (update) => progress.push(update),
        },
      );
      expect(toolResultText(done)).toBe('Counted to 3.');
      // The server sends all three before the result (the log lines prove it), but the SDK client runs
      // notification handlers a microtask late and drops the progress callback as soon as the result is
      // in: when the last progress and the result arrive in one chunk (SSE, often), step 3 is lost.
      expect(steps).toEqual([1, 2, 3]);
      expect([
        [1, 2],
        [1, 2, 3],
      ]).toContainEqual(progress.map((update) => update.progress));

      steps.length = 0;
      const controller = new AbortController();
      // Steps far enough apart that the cancellation's round trip fits before step 4 (two intervals after step 2).
      const cancelled = client.callTool(
        { name: 'slow_count', arguments: { steps: 100, interval_ms: 250 } },
        undefined,
        {
          signal: controller.signal,
          onprogress: (update) => {
            if (update.progress === 2) controller.abort('user pressed stop');
          },
        },
      );
      await expect(cancelled).rejects.toThrow();
      // Several intervals: an uncancelled count would have logged steps 4 to 6 or so by then.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(Math.max(...steps)).toBeLessThanOrEqual(3);
      // The session still works after a cancellation.
      expect(
        toolResultText(await client.callTool({ name: 'echo', arguments: { message: 'still here' } })),
      ).toBe('still here');
    });

    it('notifies resource subscribers', async () => {
      const client = await connect(kind, '/kitchen-sink');
      const updated: string[] = [];
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
        updated.push(notification.params.uri);
      });
      await client.subscribeResource({ uri: 'demo://counter' });
      await client.callTool({ name: 'increment_counter', arguments: { by: 2 } });
      await expect.poll(() => updated).toEqual(['demo://counter']);
    });
  });

  describe('Streamable HTTP sessions', () => {
    it('ends a session on DELETE', async () => {
      const transport = new StreamableHTTPClientTransport(new URL(`${host.url}/math/mcp`));
      const client = new Client({ name: 'int-test', version: '0.0.0' });
      await client.connect(transport);
      const sessionId = transport.sessionId ?? '';
      const before = host.sessionCount().streamableHttp;
      await transport.terminateSession();
      expect(host.sessionCount().streamableHttp).toBe(before - 1);
      const after = await post('/math/mcp', '{"jsonrpc":"2.0","id":9,"method":"tools/list"}', {
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-11-25',
      });
      expect(after.status).toBe(404);
      await client.close();
    });

    it('refuses a session id used on another server path', async () => {
      const transport = new StreamableHTTPClientTransport(new URL(`${host.url}/mcp`));
      const client = new Client({ name: 'int-test', version: '0.0.0' });
      await client.connect(transport);
      clients.push(client);
      const response = await post('/math/mcp', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {
        'mcp-session-id': transport.sessionId ?? '',
      });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: -32001, message: 'Session not found' } });
    });
  });

  describe('HTTP errors', () => {
    it('requires initialize before anything else', async () => {
      const response = await post('/mcp', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}');
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 }, id: null });
    });

    it('answers an unknown session with 404', async () => {
      const response = await post('/mcp', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {
        'mcp-session-id': 'no-such-session',
      });
      expect(response.status).toBe(404);
    });

    it('answers malformed JSON with a parse error', async () => {
      const response = await post('/mcp', '{"jsonrpc":');
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: { code: -32700 } });
    });

    it('refuses bodies over the limit', async () => {
      const response = await post('/mcp', JSON.stringify({ padding: 'x'.repeat(70 * 1024) }));
      expect(response.status).toBe(413);
    });

    it('404s unknown paths and servers that are not mounted', async () => {
      expect((await fetch(`${host.url}/nope`)).status).toBe(404);
      expect((await post('/weather/mcp', '{}')).status).toBe(404);
    });

    it('405s the wrong method', async () => {
      const response = await fetch(`${host.url}/mcp`, { method: 'PUT' });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, POST, DELETE');
      expect((await fetch(`${host.url}/sse`, { method: 'POST' })).status).toBe(405);
    });

    it('404s an SSE message for an unknown session', async () => {
      expect((await post('/messages?sessionId=nope', '{}')).status).toBe(404);
    });

    // `new URL(req.url, base)` threw for `//[` (a host that does not parse): answered 500 and logged as a server fault.
    it('answers a request target that is not a URL with 400, logging no error', async () => {
      const logged = errorLines.length;
      for (const target of ['//[', '//a b', '//:99999']) {
        const status = await new Promise<string>((resolve) => {
          const socket = connectSocket(host.port, '127.0.0.1', () =>
            socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
          );
          let data = '';
          socket.setTimeout(2_000, () => socket.destroy());
          socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
          socket.on('close', () => resolve(data.split('\r\n')[0] || 'connection closed without an answer'));
          socket.on('error', (error) => resolve(`socket error: ${error.message}`));
        });
        expect({ target, status }).toEqual({ target, status: expect.stringMatching(/^HTTP\/1\.1 400/) });
      }
      expect(errorLines.slice(logged)).toEqual([]);
      expect((await fetch(`${host.url}/healthz`)).status).toBe(200);
    });
  });
});

describe('demo HTTP host lifecycle', () => {
  it('closes idle sessions', async () => {
    const host = await startDemoHttpHost({ ...hostOptions, sessionIdleTimeoutMs: 200 });
    try {
      const client = new Client({ name: 'int-test', version: '0.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${host.url}/mcp`)));
      expect(host.sessionCount().streamableHttp).toBe(1);
      await expect.poll(() => host.sessionCount().streamableHttp, { timeout: 3_000, interval: 100 }).toBe(0);
      await expect(client.listTools()).rejects.toThrow();
      await client.close();
    } finally {
      await host.close(100);
    }
  });

  it('shuts down promptly with open streams, then refuses connections', async () => {
    const host = await startDemoHttpHost(hostOptions);
    const sse = new Client({ name: 'int-test', version: '0.0.0' });
    await sse.connect(new SSEClientTransport(new URL(`${host.url}/sse`)));
    const streamable = new Client({ name: 'int-test', version: '0.0.0' });
    await streamable.connect(new StreamableHTTPClientTransport(new URL(`${host.url}/kitchen-sink/mcp`)));
    expect(host.sessionCount()).toEqual({ streamableHttp: 1, sse: 1 });

    const started = Date.now();
    await host.close(2_000);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(host.sessionCount()).toEqual({ streamableHttp: 0, sse: 0 });
    await expect(fetch(`${host.url}/healthz`)).rejects.toThrow();
    await Promise.allSettled([sse.close(), streamable.close()]);
  });
});
