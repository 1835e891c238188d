import { describe, expect, it } from 'vitest';
import { GATEWAY_RPC } from '../http/gateway-error';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { GatewayRequestError } from './session-engine';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

describe('completion/complete on a prompt', () => {
  it('is admitted on the arguments it states: its context and the argument being completed', async () => {
    const seen: unknown[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'hr')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { prompts: {}, completions: {} }, handle: async () => ({ completion: { values: ['acme-secret-project'] } }) },
    });
    const engine = makeEngine({
      registry,
      connector,
      // A deny conditioned on the arguments, as a policy might be.
      hooks: {
        admit: (info) => {
          if (info.method !== 'completion/complete') return undefined;
          seen.push(info.arguments);
          if (info.arguments?.['customer'] === 'acme') throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'denied');
          return undefined;
        },
      },
    });
    const { record } = await openSession(engine);
    const complete = (params: Record<string, unknown>) =>
      engine.request(record, req('completion/complete', { ref: { type: 'ref/prompt', name: 'hr__report' }, ...params }), NO_STREAM, 'trace');

    const denied = await complete({ argument: { name: 'project', value: 'x' }, context: { arguments: { customer: 'acme' } } });
    expect(denied).toMatchObject({ error: { code: GATEWAY_RPC.POLICY_DENIED } });
    const completing = await complete({ argument: { name: 'customer', value: 'acme' } });
    expect(completing).toMatchObject({ error: { code: GATEWAY_RPC.POLICY_DENIED } });
    const allowed = await complete({ argument: { name: 'project', value: 'x' }, context: { arguments: { customer: 'other' } } });
    expect(allowed).toHaveProperty('result');
    // MCP: the argument being completed has a name and a value; without one it is refused before the hooks.
    const bare = await complete({ argument: { name: 'project' } });
    expect(bare).toMatchObject({ error: { code: -32602 } });
    expect(seen).toEqual([{ customer: 'acme', project: 'x' }, { customer: 'acme' }, { customer: 'other', project: 'x' }]);
  });
});
