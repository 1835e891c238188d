/**
 * An upstream renamed (a name-only edit: same URL, same credentials) keeps its open upstream sessions. Policy names
 * upstreams by name, so whatever the upstream sends outside a call (log messages, sampling / elicitation / roots
 * requests on the standalone stream) must be judged under the name it has now, as calls and listings are.
 */
import { GATEWAY_RPC } from '../http/gateway-error';
import { UpstreamRpcError } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, type FakeUpstream } from '../testing/fake-upstreams';
import { GatewayRequestError } from './session-engine';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

describe('SessionEngine: an upstream renamed while its sessions are open', () => {
  it.each([
    ['with a call after the edit', true],
    ['with nothing but the reload after it', false],
  ])('judges its messages outside a call under its new name, not the name it had when the session opened (%s)', async (_, callAfter) => {
    const registry = new UpstreamRegistry('__');
    const before = { ...fakeConfig('u1', 'pay'), name: 'payments' };
    registry.replace([before], () => undefined);
    const upstream: FakeUpstream = { capabilities: { tools: {}, logging: {} }, handle: async () => ({ tools: [] }) };
    const connector = new FakeConnector({ u1: upstream });
    const asked: string[] = [];
    const engine = makeEngine({
      registry,
      connector,
      hooks: {
        // The policy in force: nothing on "billing" is this client's to use.
        upstreamMessage: (_record, config, method) => {
          asked.push(`${config.name} ${method}`);
          if (config.name === 'billing') throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'nothing there is yours', undefined, 'denied');
        },
      },
    });
    const { record } = await openSession(engine, { capabilities: { sampling: {}, elicitation: {} } });
    const toAgent: string[] = [];
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        toAgent.push('method' in message ? message.method : 'answer');
        if ('id' in message && 'method' in message) queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { action: 'accept' } }));
        return true;
      },
    });

    // An admin renames it "billing" (the control plane bumps the version; URL and credentials unchanged).
    registry.replace([{ ...before, name: 'billing', version: 2 }], () => undefined);
    engine.retireDeparted('t1');
    engine.listsChangedFor('t1');
    // A call after the edit, or none: either way the session is judged under the new configuration.
    if (callAfter) await engine.request(record, req('tools/list'), NO_STREAM, 'trace');

    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: 'from billing' } });
    const outcome = await connector.ask('u1', { jsonrpc: '2.0', id: 'e1', method: 'elicitation/create', params: { message: 'your card number?', requestedSchema: { type: 'object', properties: {} } } }).then(
      () => 'answered',
      (error: unknown) => (error instanceof UpstreamRpcError ? error.code : String(error)),
    );
    // Judged under the old name, the log line and the elicitation reached the agent.
    expect(toAgent.filter((method) => !method.endsWith('/list_changed'))).toEqual([]);
    expect(outcome).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(asked.filter((line) => line.startsWith('payments'))).toEqual([]);
  });
});
