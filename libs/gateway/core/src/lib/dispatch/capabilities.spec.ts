import { describe, expect, it } from 'vitest';
import { clientCapabilityGap, relayableClientCapabilities, relayedSamplingParams } from './capabilities';

describe('clientCapabilityGap', () => {
  const elicit = (params: Record<string, unknown>) => ({ message: 'Which?', ...params });

  it('refuses a request whose whole area the agent did not declare with -32601', () => {
    expect(clientCapabilityGap('sampling/createMessage', { messages: [], maxTokens: 1 }, { elicitation: {} })).toEqual({ code: -32601, message: expect.stringContaining('sampling/createMessage') });
    expect(clientCapabilityGap('roots/list', undefined, {})).toMatchObject({ code: -32601 });
    expect(clientCapabilityGap('elicitation/create', elicit({}), undefined)).toMatchObject({ code: -32601 });
    // A declared area must be an object: `true` is not a capability.
    expect(clientCapabilityGap('roots/list', undefined, { roots: true })).toMatchObject({ code: -32601 });
  });

  it('passes requests no client capability gates', () => {
    expect(clientCapabilityGap('ping', undefined, {})).toBeUndefined();
    expect(clientCapabilityGap('roots/list', undefined, { roots: {} })).toBeUndefined();
  });

  it('refuses a method MCP defines for no client area (-32601), whatever the agent declared', () => {
    const everything = { sampling: {}, elicitation: {}, roots: {}, experimental: { 'acme/openUrl': {} } };
    expect(clientCapabilityGap('acme/openUrl', { url: 'https://example.test' }, everything)).toEqual({ code: -32601, message: 'Method not found: acme/openUrl' });
    expect(clientCapabilityGap('__proto__', undefined, everything)).toMatchObject({ code: -32601 });
    expect(clientCapabilityGap('toString', undefined, everything)).toMatchObject({ code: -32601 });
  });

  it('takes an empty elicitation capability as form mode only, as MCP keeps it for older clients', () => {
    expect(clientCapabilityGap('elicitation/create', elicit({ requestedSchema: { type: 'object', properties: {} } }), { elicitation: {} })).toBeUndefined();
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 'form' }), { elicitation: {} })).toBeUndefined();
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 'url', url: 'https://example.test/x', elicitationId: 'e1' }), { elicitation: {} })).toEqual({
      code: -32602,
      message: 'The client does not support url-mode elicitation',
    });
  });

  it('checks the mode against what the agent declared inside elicitation', () => {
    const urlOnly = { elicitation: { url: {} } };
    const both = { elicitation: { form: {}, url: {} } };
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 'url' }), urlOnly)).toBeUndefined();
    expect(clientCapabilityGap('elicitation/create', elicit({}), urlOnly)).toMatchObject({ code: -32602, message: expect.stringContaining('form-mode') });
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 'form' }), both)).toBeUndefined();
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 'url' }), both)).toBeUndefined();
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 'url' }), { elicitation: { form: {} } })).toMatchObject({ code: -32602 });
  });

  it('refuses a mode MCP does not define, naming no more than a short part of it', () => {
    const gap = clientCapabilityGap('elicitation/create', elicit({ mode: 'x'.repeat(10_000) }), { elicitation: { form: {}, url: {} } });
    expect(gap?.code).toBe(-32602);
    expect(gap?.message.length).toBeLessThan(100);
    expect(clientCapabilityGap('elicitation/create', elicit({ mode: 7 }), { elicitation: { form: {}, url: {} } })).toMatchObject({ code: -32602 });
  });

  it('refuses sampling with tools or toolChoice unless the agent declared sampling.tools', () => {
    const withTools = { messages: [], maxTokens: 10, tools: [{ name: 'search', inputSchema: { type: 'object' } }] };
    expect(clientCapabilityGap('sampling/createMessage', withTools, { sampling: {} })).toEqual({ code: -32602, message: 'The client does not support tool use in sampling' });
    expect(clientCapabilityGap('sampling/createMessage', { messages: [], maxTokens: 10, toolChoice: { mode: 'none' } }, { sampling: {} })).toMatchObject({ code: -32602 });
    expect(clientCapabilityGap('sampling/createMessage', withTools, { sampling: { tools: {} } })).toBeUndefined();
    expect(clientCapabilityGap('sampling/createMessage', { messages: [], maxTokens: 10 }, { sampling: {} })).toBeUndefined();
  });
});

describe('relayableClientCapabilities', () => {
  it('passes sampling, elicitation and roots as the agent declared them, but never sampling.context', () => {
    const agent = { sampling: { context: {}, tools: {} }, elicitation: { form: {}, url: {} }, roots: { listChanged: true }, tasks: { list: {} }, experimental: { x: {} } };
    expect(relayableClientCapabilities(agent)).toEqual({ sampling: { tools: {} }, elicitation: { form: {}, url: {} }, roots: { listChanged: true } });
    expect(relayableClientCapabilities({ sampling: { context: {} } })).toEqual({ sampling: {} });
    expect(relayableClientCapabilities({ sampling: {} })).toEqual({ sampling: {} });
    // The agent's declaration is left as it was.
    expect(agent.sampling).toEqual({ context: {}, tools: {} });
  });
});

describe('relayedSamplingParams', () => {
  it('asks the agent for no context of servers (the gateway is one server to it, every upstream behind it)', () => {
    const base = { messages: [], maxTokens: 10 };
    expect(relayedSamplingParams({ ...base, includeContext: 'thisServer' })).toEqual({ ...base, includeContext: 'none' });
    expect(relayedSamplingParams({ ...base, includeContext: 'allServers' })).toEqual({ ...base, includeContext: 'none' });
    for (const params of [{ ...base, includeContext: 'none' }, base, { ...base, includeContext: 7 }]) expect(relayedSamplingParams(params)).toBe(params);
  });
});
