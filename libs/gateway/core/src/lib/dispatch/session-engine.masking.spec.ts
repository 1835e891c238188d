/**
 * The hooks judge an upstream's listing and instructions as the upstream wrote them; the agent is shown them with the
 * upstream's configured values masked. Tool pinning compares what it is given with what the control plane's test
 * connection hashed for approval (unmasked): before, the hooks were given the masked text, so an approved tool (or
 * approved instructions) mentioning a configured value was held as "changed" for good.
 */
import type { JsonRpcResponse, UpstreamConfig } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

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
