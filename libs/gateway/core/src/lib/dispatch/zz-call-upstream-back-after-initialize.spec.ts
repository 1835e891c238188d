import { createLogger } from '@portcullis/shared/util-logger';
import { type JsonRpcRequest, type Principal } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, type FakeUpstream, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { SessionEngine } from './session-engine';
import { NO_STREAM } from './sinks';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines: SessionEngine[] = [];
afterEach(async () => void (await Promise.all(engines.splice(0).map((e) => e.shutdown()))));
let nextId = 1;
const req = (method: string, params?: Record<string, unknown>): JsonRpcRequest => ({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) });
const tools = (prefix: string): FakeUpstream & { prefix: string } => ({
  prefix,
  capabilities: { tools: {} },
  handle: async (method) => {
    if (method === 'tools/list') return { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] };
    if (method === 'tools/call') return { content: [{ type: 'text', text: `from ${prefix}` }] };
    return {};
  },
});

describe('a call to a configured upstream the session lacks', () => {
  it('joins the upstream (down at initialize, back since) instead of answering "Unknown tool"', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('ua', 'a'), fakeConfig('ub', 'b')], () => undefined);
    const connector = new FakeConnector({ ua: tools('a'), ub: tools('b') });
    const engine = new SessionEngine({
      registry, connector, sessions: new MemorySessionStore(), logger,
      options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200, joinRetryMs: 10 },
    });
    engines.push(engine);
    connector.down.add('ub'); // b is down when the agent initializes
    const { sessionId } = await engine.initialize(principal, req('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = (await engine.session(sessionId ?? '', principal))!;
    connector.down.delete('ub'); // and back a moment later
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The agent calls b's tool by the name it knows (from its previous session, or its configuration) without listing.
    const answer = await engine.request(record, req('tools/call', { name: 'b__echo', arguments: {} }), NO_STREAM, 'trace');
    expect(answer).toMatchObject({ result: { content: [{ text: 'from b' }] } });
  });
});
