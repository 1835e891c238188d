/**
 * The hooks judge an upstream's listing and instructions as the upstream wrote them; the agent is shown them with the
 * upstream's configured values masked. Tool pinning compares what it is given with what the control plane's test
 * connection hashed for approval (unmasked): before, the hooks were given the masked text, so an approved tool (or
 * approved instructions) mentioning a configured value was held as "changed" for good.
 */
import type { JsonRpcMessage, JsonRpcResponse, UpstreamConfig } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { type MessageSink, NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

// An ordinary configured value (the organisation the server works for), 8 characters or more: masked for the agent.
const ORG = 'acme-widgets';
const TOOL = { name: 'repos', description: `Lists the repositories of the ${ORG} organisation`, inputSchema: { type: 'object' } };
const INSTRUCTIONS = `This server works on the ${ORG} organisation only.`;

describe('an upstream whose listing and instructions mention a configured value', () => {
  it('has the hooks judge them as written, and the agent shown them masked', async () => {
    const config: UpstreamConfig = { ...fakeConfig('u1', 'gh'), env: { GITHUB_OWNER: ORG } };
    const registry = new UpstreamRegistry('__');
    registry.replace([config], () => undefined);
    const judged: string[] = [];
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({
        u1: { capabilities: { tools: {} }, instructions: INSTRUCTIONS, handle: async (method) => (method === 'tools/list' ? { tools: [TOOL] } : {}) },
      }),
      hooks: {
        instructions: (_record, _config, text) => (judged.push(text), text),
        filter: (_record, _kind, _config, items) => {
          for (const item of items) judged.push(String(item['description']));
          return items;
        },
      },
      options: { listTimeoutMs: 500 },
    });
    const { record, response } = await openSession(engine);
    const listed = (await engine.request(record, req('tools/list'), NO_STREAM, 'trace')) as JsonRpcResponse & { result?: { tools: { name: string; description: string }[] } };
    expect(judged).toEqual([INSTRUCTIONS, TOOL.description]);
    expect((response as { result?: { instructions?: string } }).result?.instructions).toBe(`gh: ${INSTRUCTIONS.replace(ORG, '[redacted]')}`);
    expect(listed.result?.tools).toEqual([expect.objectContaining({ name: 'gh__repos', description: TOOL.description.replace(ORG, '[redacted]') })]);
  });
});

// A log message's `logger` is free text (MCP's LoggingMessageNotification) and every message's `_meta` is the upstream's
// to fill: both were relayed as written, so a logger named after its request's header, or the request itself in
// `_meta`, handed the agent the credential the gateway injects (found in review). What routes a message stays as is.
describe('an upstream message quoting its credentials outside the fields known as text', () => {
  it('reaches the agent with them masked in the logger name and _meta', async () => {
    const token = 'upstream-token-0123456789';
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'web'), headers: { authorization: `Bearer ${token}` } }], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {}, logging: {} },
        handle: async (method, _params, options) => {
          if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
          // A method MCP does not define, named like an object's own property (the masking looked its fields up in a
          // plain object): which of its fields route it is unknown, so all of them are masked.
          options?.onNotification?.({ jsonrpc: '2.0', method: 'constructor', params: { note: `Bearer ${token}` } });
          options?.onNotification?.({
            jsonrpc: '2.0',
            method: 'notifications/message',
            params: { level: 'error', logger: `http-client(Bearer ${token})`, data: 'request refused', _meta: { request: { authorization: `Bearer ${token}` }, attempt: 2 } },
          });
          return { content: [] };
        },
      },
    });
    const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore() });
    const { record } = await openSession(engine, {});
    const relayed: JsonRpcMessage[] = [];
    const sink: MessageSink = { canStream: true, send: (message) => relayed.push(message) > 0 };
    await engine.request(record, req('tools/call', { name: 'web__run', arguments: {} }), sink, 'trace');
    expect(relayed.map((message) => ('method' in message ? message.method : undefined))).toEqual(['constructor', 'notifications/message']);
    expect(JSON.stringify(relayed)).not.toContain(token);
    expect(relayed[1]).toMatchObject({ params: { logger: expect.stringContaining('http-client('), data: 'request refused', _meta: { request: { authorization: expect.any(String) }, attempt: 2 } } });
  });
});
