import { JSON_RPC, UpstreamRpcError, type JsonRpcId } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { answerServerRequest, cancelServerRequest } from './wire';

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

describe('answerServerRequest with an id already in flight', () => {
  it('refuses the second request and leaves the first one cancellable and answered', async () => {
    const inFlight = new Map<JsonRpcId, AbortController>();
    const written: string[] = [];
    const signals: AbortSignal[] = [];
    let finish = (): void => undefined;
    const handler = (_request: unknown, signal: AbortSignal) => {
      signals.push(signal);
      return new Promise<Record<string, unknown>>((resolve) => {
        finish = () => resolve({ action: 'accept' });
      });
    };
    answerServerRequest({ jsonrpc: '2.0', id: 7, method: 'elicitation/create' }, handler, (text) => written.push(text), inFlight);
    answerServerRequest({ jsonrpc: '2.0', id: 7, method: 'elicitation/create' }, handler, (text) => written.push(text), inFlight);
    expect(signals).toHaveLength(1);
    expect(written.map((text) => JSON.parse(text) as unknown)).toEqual([
      { jsonrpc: '2.0', id: 7, error: { code: JSON_RPC.INVALID_REQUEST, message: 'Request id is already in use by a request still in flight' } },
    ]);
    cancelServerRequest({ requestId: 7 }, inFlight);
    expect(signals[0]?.aborted).toBe(true);
    finish();
    await new Promise((resolve) => setImmediate(resolve));
    expect(written).toHaveLength(1);
  });

  it('keeps a later request of a cancelled id in flight when the cancelled one settles', async () => {
    const inFlight = new Map<JsonRpcId, AbortController>();
    const written: string[] = [];
    const finishers: Array<() => void> = [];
    const handler = () => new Promise<Record<string, unknown>>((resolve) => finishers.push(() => resolve({ roots: [] })));
    answerServerRequest({ jsonrpc: '2.0', id: 'r', method: 'roots/list' }, handler, (text) => written.push(text), inFlight);
    cancelServerRequest({ requestId: 'r' }, inFlight);
    answerServerRequest({ jsonrpc: '2.0', id: 'r', method: 'roots/list' }, handler, (text) => written.push(text), inFlight);
    finishers[0]?.();
    await new Promise((resolve) => setImmediate(resolve));
    // The first was cancelled: no answer. The second is still in flight, so a cancellation reaches it.
    expect(written).toEqual([]);
    expect(inFlight.has('r')).toBe(true);
    finishers[1]?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect(written.map((text) => JSON.parse(text) as unknown)).toEqual([{ jsonrpc: '2.0', id: 'r', result: { roots: [] } }]);
    expect(inFlight.size).toBe(0);
  });
});
