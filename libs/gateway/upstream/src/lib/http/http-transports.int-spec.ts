import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
// Spec-only: the gateway may not depend on the dev-scoped demo servers, but its integration tests run
// against them in-process (real Streamable HTTP and SSE servers on 127.0.0.1, port 0).
// eslint-disable-next-line @nx/enforce-module-boundaries
import {
  createDemoServer,
  startDemoHttpHost,
  type DemoHttpHost,
  type DemoServerName,
} from '@portcullis/demo/mcp-servers';
import {
  UpstreamRpcError,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type UpstreamConnector,
  type UpstreamSession,
} from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { identity, recordingLogger, textOf, upstreamConfig, waitFor } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

type Received = {
  readonly method?: string;
  readonly id?: unknown;
  readonly params?: Record<string, unknown>;
};

describe('HTTP upstreams against the demo servers', () => {
  let host: DemoHttpHost;
  const received: Received[] = [];
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];

  function newConnector(): UpstreamConnector {
    const connector = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      allowPrivateNetworks: true,
    });
    connectors.push(connector);
    return connector;
  }

  beforeAll(async () => {
    host = await startDemoHttpHost({
      host: '127.0.0.1',
      port: 0,
      defaultServer: 'tickets',
      mountedServers: ['math', 'kitchen-sink'],
      sessionIdleTimeoutMs: 60_000,
      logger: createLogger({ service: 'upstream-int-test', level: 'silent' }),
      // Record what each server receives, to see the cancellations the connector sends.
      createServer: (name: DemoServerName): McpServer => {
        const server = createDemoServer(name);
        const connect = server.connect.bind(server);
        server.connect = async (transport) => {
          await connect(transport);
          const deliver = transport.onmessage;
          transport.onmessage = (message, extra) => {
            received.push(message as Received);
            deliver?.(message, extra);
          };
        };
        return server;
      },
    });
  });
  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((session) => session.close()));
  });
  afterAll(async () => {
    await Promise.allSettled(connectors.map((connector) => connector.shutdown()));
    await host.close(1_000);
  });

  const streamable = (path: string, overrides = {}) =>
    upstreamConfig('streamable_http', { url: `${host.url}${path}/mcp`, ...overrides });
  const legacy = (path: string, overrides = {}) =>
    upstreamConfig('sse', { url: `${host.url}${path}/sse`, ...overrides });

  async function open(
    config = streamable('/kitchen-sink'),
    connector = newConnector(),
  ): Promise<UpstreamSession> {
    const session = await connector.connect(config, identity);
    sessions.push(session);
    return session;
  }

  it('keeps calls flowing when more sessions hold standalone streams than the pool has sockets', async () => {
    const connector = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      allowPrivateNetworks: true,
      maxSocketsPerOrigin: 2,
    });
    connectors.push(connector);
    const opened = await Promise.all([1, 2, 3].map(() => open(streamable('/math'), connector)));
    // Listening for session-level messages opens each session's standalone GET stream.
    for (const session of opened) {
      session.onNotification(() => undefined);
      session.listen?.(true);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const results = await Promise.all(
      opened.map((session) => session.request('tools/call', { name: 'add', arguments: { a: 1, b: 2 } }, { timeoutMs: 5_000 })),
    );
    expect(results.map((result) => result['structuredContent'])).toEqual([{ result: 3 }, { result: 3 }, { result: 3 }]);
  });

  it('logs where an upstream is, never its whole URL (paths and query strings may carry tokens)', async () => {
    const logger = recordingLogger();
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, logger });
    connectors.push(connector);
    for (const config of [streamable('/math', { url: `${host.url}/math/mcp?api_key=url-token-1234` }), legacy('/math', { url: `${host.url}/math/sse?api_key=url-token-1234` })]) {
      sessions.push(await connector.connect(config, identity));
    }
    const opened = logger.entries.filter((entry) => entry.message === 'upstream session opened');
    expect(opened).toHaveLength(2);
    expect(opened[0]?.fields).toMatchObject({ origin: host.url });
    expect(JSON.stringify(logger.entries)).not.toContain('url-token-1234');
  });

  describe.each([
    ['Streamable HTTP', streamable],
    ['legacy HTTP+SSE', legacy],
  ] as const)('%s', (_name, configFor) => {
    it('initialises and reports serverInfo and capabilities', async () => {
      const session = await open(configFor('/kitchen-sink'));
      expect(session.info.serverInfo.name).toBe('portcullis-demo-kitchen-sink');
      expect(session.info.capabilities).toHaveProperty('tools');
      expect(session.info.instructions).toContain('Protocol test server');
      expect(session.info.protocolVersion).toBe('2025-11-25');
    });

    it('lists and calls tools', async () => {
      const session = await open(configFor('/math'));
      const { tools } = (await session.request('tools/list', {})) as { tools: { name: string }[] };
      expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['add', 'divide']));
      const result = await session.request('tools/call', { name: 'add', arguments: { a: 2, b: 3 } });
      expect(result['structuredContent']).toEqual({ result: 5 });
    });

    it('passes an upstream JSON-RPC error through', async () => {
      const session = await open(configFor('/math'));
      const error = await session.request('no/such-method', {}).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UpstreamRpcError);
      expect((error as UpstreamRpcError).code).toBe(-32601);
    });

    it('returns a tool error result as a result', async () => {
      const session = await open(configFor('/math'));
      const result = await session.request('tools/call', { name: 'divide', arguments: { a: 1, b: 0 } });
      expect(result['isError']).toBe(true);
      expect(textOf(result)).toContain('divide by zero');
    });

    it('delivers progress notifications to the call', async () => {
      const session = await open(configFor('/kitchen-sink'));
      const progress: JsonRpcNotification[] = [];
      const result = await session.request(
        'tools/call',
        {
          name: 'slow_count',
          arguments: { steps: 3, interval_ms: 5 },
          _meta: { progressToken: 'agent-token' },
        },
        {
          onNotification: (n) => (n.method === 'notifications/progress' ? void progress.push(n) : undefined),
        },
      );
      expect(textOf(result)).toBe('Counted to 3.');
      expect(progress.map((n) => n.params)).toEqual(
        [1, 2, 3].map((step) =>
          expect.objectContaining({ progressToken: 'agent-token', progress: step, total: 3 }),
        ),
      );
    });

    it('cancels mid-call: the upstream receives notifications/cancelled with our request id', async () => {
      const session = await open(configFor('/kitchen-sink'));
      const controller = new AbortController();
      const call = session.request(
        'tools/call',
        { name: 'slow_count', arguments: { steps: 100, interval_ms: 20 }, _meta: { progressToken: 'c' } },
        { signal: controller.signal, onNotification: () => controller.abort(new Error('agent cancelled')) },
      );
      await expect(call).rejects.toThrow('agent cancelled');
      const sent = received
        .filter(
          (m) => m.method === 'tools/call' && (m.params?.['arguments'] as { steps?: number })?.steps === 100,
        )
        .at(-1);
      expect(sent).toBeDefined();
      const cancel = await waitFor(() =>
        received.find((m) => m.method === 'notifications/cancelled' && m.params?.['requestId'] === sent?.id),
      );
      expect(cancel.params?.['reason']).toBe('cancelled by the client');
      // the session still works
      await expect(
        session.request('tools/call', { name: 'echo', arguments: { message: 'after' } }),
      ).resolves.toMatchObject({ content: [{ text: 'after' }] });
    });

    it('round-trips sampling and elicitation through onServerRequest', async () => {
      const session = await open(configFor('/kitchen-sink'));
      const asked: JsonRpcRequest[] = [];
      const onServerRequest = async (request: JsonRpcRequest): Promise<Record<string, unknown>> => {
        asked.push(request);
        return request.method === 'sampling/createMessage'
          ? { role: 'assistant', content: { type: 'text', text: 'A short summary.' }, model: 'test-model' }
          : { action: 'accept', content: { confirm: true, note: 'fine' } };
      };
      const summary = await session.request(
        'tools/call',
        { name: 'summarize_with_llm', arguments: { text: 'long text' } },
        { onServerRequest },
      );
      expect(summary['structuredContent']).toEqual({ summary: 'A short summary.', model: 'test-model' });
      const confirmed = await session.request(
        'tools/call',
        { name: 'confirm_action', arguments: { action: 'deploy' } },
        { onServerRequest },
      );
      expect(confirmed['structuredContent']).toEqual({
        action: 'deploy',
        outcome: 'confirmed',
        note: 'fine',
      });
      expect(asked.map((r) => r.method)).toEqual(['sampling/createMessage', 'elicitation/create']);
    });

    it('passes an UpstreamRpcError from onServerRequest back as a JSON-RPC error', async () => {
      const session = await open(configFor('/kitchen-sink'));
      const result = await session
        .request(
          'tools/call',
          { name: 'summarize_with_llm', arguments: { text: 'x' } },
          {
            onServerRequest: async () => {
              throw new UpstreamRpcError(-1, 'User rejected sampling');
            },
          },
        )
        .catch((error: unknown) => error);
      // The SDK tool handler turns the failed sampling into a tool error or an RPC error.
      const text =
        result instanceof UpstreamRpcError ? result.message : textOf(result as Record<string, unknown>);
      expect(text).toContain('User rejected sampling');
    });

    it('times out a call that takes longer than its timeout', async () => {
      const session = await open(configFor('/kitchen-sink'));
      const call = session.request(
        'tools/call',
        { name: 'slow_count', arguments: { steps: 10, interval_ms: 100 } },
        { timeoutMs: 150 },
      );
      await expect(call).rejects.toMatchObject({ name: 'UpstreamUnavailableError', reason: 'timeout' });
    });
  });

  describe('Streamable HTTP sessions', () => {
    it('continues a session on another connector (replica) from its state, without initialising again', async () => {
      const config = streamable('/kitchen-sink');
      const first = await open(config);
      const state = first.state();
      expect(state.sessionId).toEqual(expect.any(String));
      const initialisations = received.filter((m) => m.method === 'initialize').length;
      const resumed = await newConnector().resume(config, identity, state);
      sessions.push(resumed);
      const result = await resumed.request('tools/call', {
        name: 'echo',
        arguments: { message: 'from replica 2' },
      });
      expect(textOf(result)).toBe('from replica 2');
      expect(resumed.state()).toEqual(state);
      expect(received.filter((m) => m.method === 'initialize')).toHaveLength(initialisations);
    });

    it('names the endpoint the session was opened at, and will not continue it at another (an upstream repointed)', async () => {
      const config = streamable('/kitchen-sink');
      const session = await open(config);
      const state = session.state();
      expect(state.endpoint).toBe(`${new URL(config.url ?? '').origin}/kitchen-sink/mcp`);
      const requestsBefore = received.length;
      // The same upstream, now at another path of the host (another server): the old session id must not go there.
      const moved = { ...config, url: (config.url ?? '').replace('/kitchen-sink/', '/tickets/'), version: config.version + 1 };
      await expect(newConnector().resume(moved, identity, state)).rejects.toMatchObject({ reason: 'session_expired' });
      expect(received.length).toBe(requestsBefore);
      // Another query (where a credential may sit) is another identity at the same server: not continued either.
      const withQuery = { ...config, url: `${config.url ?? ''}?api_key=k`, version: config.version + 1 };
      await expect(newConnector().resume(withQuery, identity, state)).rejects.toMatchObject({ reason: 'session_expired' });
      expect(received.length).toBe(requestsBefore);
      // The same configuration again (another replica, a new connector): continued, under the same id.
      const resumed = await newConnector().resume({ ...config, version: config.version + 1 }, identity, state);
      sessions.push(resumed);
      expect(resumed.state().sessionId).toBe(state.sessionId);
    });

    it('answers session_expired once the upstream forgot the session (closed with DELETE)', async () => {
      const config = streamable('/kitchen-sink');
      const session = await open(config);
      const state = session.state();
      const before = host.sessionCount().streamableHttp;
      await session.close();
      await waitFor(() => host.sessionCount().streamableHttp === before - 1);
      const resumed = await newConnector().resume(config, identity, state);
      await expect(resumed.request('tools/list', {})).rejects.toMatchObject({ reason: 'session_expired' });
      await expect(resumed.request('tools/list', {})).rejects.toMatchObject({ reason: 'session_expired' });
      await resumed.close();
    });

    it('delivers unsolicited messages from the standalone GET stream to the session handler', async () => {
      const session = await open(streamable('/kitchen-sink'));
      const updates: JsonRpcNotification[] = [];
      session.listen?.(true);
      session.onNotification((n) => {
        if (n.method === 'notifications/resources/updated') updates.push(n);
      });
      await session.request('resources/subscribe', { uri: 'demo://counter' });
      await waitFor(async () => {
        await session.request('tools/call', { name: 'increment_counter', arguments: { by: 1 } });
        return updates.length > 0;
      });
      expect(updates[0]?.params).toEqual({ uri: 'demo://counter' });
    });

    it('uses its own request ids toward the upstream, never the caller’s', async () => {
      const session = await open(streamable('/math'));
      const from = received.length;
      await session.request('tools/list', {});
      await session.request('tools/list', {});
      const ids = received
        .slice(from)
        .filter((m) => m.method === 'tools/list')
        .map((m) => m.id);
      expect(ids).toHaveLength(2);
      expect(ids[1]).toBe((ids[0] as number) + 1);
      expect(ids.every((id) => typeof id === 'number' && id > 1_000_000)).toBe(true);
    });
  });
});
