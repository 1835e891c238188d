import { JSON_RPC, UpstreamRpcError, type JsonRpcId } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { answerServerRequest } from './wire';

/** An object nested `depth` levels (JSON.parse takes any depth; serialising it again overflows the stack). */
const nested = (depth: number): Record<string, unknown> => JSON.parse(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`) as Record<string, unknown>;

/** Runs one upstream request through answerServerRequest and resolves with what was written back. */
function answerWith(outcome: () => Promise<Record<string, unknown>>): Promise<string> {
  return new Promise((resolve) => {
    const inFlight = new Map<JsonRpcId, AbortController>();
    answerServerRequest({ jsonrpc: '2.0', id: 'up-1', method: 'sampling/createMessage' }, () => outcome(), resolve, inFlight);
  });
}

describe('answerServerRequest', () => {
  it('writes the handler\'s result, or its JSON-RPC error', async () => {
    expect(JSON.parse(await answerWith(async () => ({ role: 'assistant' })))).toEqual({ jsonrpc: '2.0', id: 'up-1', result: { role: 'assistant' } });
    expect(JSON.parse(await answerWith(async () => Promise.reject(new UpstreamRpcError(-32600, 'declined', { why: 'no' }))))).toEqual({
      jsonrpc: '2.0',
      id: 'up-1',
      error: { code: -32600, message: 'declined', data: { why: 'no' } },
    });
  });

  it('answers an internal error, and keeps the process up, when the agent\'s answer is too deep to serialise', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const fromResult = JSON.parse(await answerWith(async () => nested(200_000)));
      const fromError = JSON.parse(await answerWith(async () => Promise.reject(new UpstreamRpcError(-32600, 'declined', nested(200_000)))));
      for (const answer of [fromResult, fromError]) {
        expect(answer).toEqual({ jsonrpc: '2.0', id: 'up-1', error: { code: JSON_RPC.INTERNAL_ERROR, message: 'The answer could not be relayed' } });
      }
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
