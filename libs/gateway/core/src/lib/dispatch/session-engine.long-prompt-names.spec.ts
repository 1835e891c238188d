/**
 * Prompt names have no length rule in MCP 2025-11-25 (only tool names are bounded to 128 characters), and the gateway
 * serves exposed prompt names of up to MAX_PROMPT_NAME_LENGTH (512) characters. Prompts whose own names were over 128
 * characters were served by prompts/get but dropped from prompts/list (found by review).
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

describe('a prompt whose name is longer than a tool name may be', () => {
  it('is listed, as it is served by prompts/get', async () => {
    const longName = `summarise the quarterly report for ${'the regional sales team '.repeat(5)}`.trim();
    expect(longName.length).toBeGreaterThan(128);
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { prompts: {} },
        handle: async (method) => (method === 'prompts/list' ? { prompts: [{ name: 'short' }, { name: longName }] } : { messages: [] }),
      },
    });
    const engine = makeEngine({ registry, connector });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    // The gateway serves it by its exposed name…
    const got = await engine.request(record, req('prompts/get', { name: `docs__${longName}` }), NO_STREAM, 'trace');
    expect(got).toHaveProperty('result');
    // …but never lists it.
    const listed = (await engine.request(record, req('prompts/list'), NO_STREAM, 'trace')) as unknown as { result: { prompts: { name: string }[] } };
    expect(listed.result.prompts.map((prompt) => prompt.name)).toEqual(['docs__short', `docs__${longName}`]);
  });
});
