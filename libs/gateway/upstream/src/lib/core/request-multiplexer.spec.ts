import { UpstreamRpcError, type JsonRpcNotification } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RequestMultiplexer } from './request-multiplexer';

interface Sent {
  id?: number;
  method?: string;
  params?: Record<string, unknown> & { _meta?: { progressToken?: unknown } };
}

function harness() {
  const sent: Sent[] = [];
  const hooks = {
    write: (text: string) => void sent.push(JSON.parse(text) as Sent),
    onTimeout: vi.fn(),
    onAnswer: vi.fn(),
  };
  return { sent, hooks, mux: new RequestMultiplexer<string>(hooks) };
}

describe('RequestMultiplexer', () => {
  afterEach(() => vi.useRealTimers());

  it('gives every request its own id and maps each response back to its caller', async () => {
    const { sent, mux, hooks } = harness();
    const a = mux.request('session-a', 'tools/call', { name: 'x' }, undefined, 1_000);
    const b = mux.request('session-b', 'tools/call', { name: 'y' }, undefined, 1_000);
    expect(sent.map((m) => m.id)).toEqual([1, 2]);
    // answered out of order
    expect(mux.handleResponse({ jsonrpc: '2.0', id: 2, result: { who: 'b' } })).toBe(true);
    expect(mux.handleResponse({ jsonrpc: '2.0', id: 1, result: { who: 'a' } })).toBe(true);
    await expect(a).resolves.toEqual({ who: 'a' });
    await expect(b).resolves.toEqual({ who: 'b' });
    expect(hooks.onAnswer).toHaveBeenCalledTimes(2);
    expect(mux.handleResponse({ jsonrpc: '2.0', id: 1, result: {} })).toBe(false); // late duplicate
    expect(mux.pending).toBe(0);
  });

  it('turns a JSON-RPC error into UpstreamRpcError with code, message and data', async () => {
    const { mux } = harness();
    const call = mux.request('s', 'foo', undefined, undefined, 1_000);
    mux.handleResponse({
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32601, message: 'Method not found', data: { x: 1 } },
    });
    await expect(call).rejects.toEqual(new UpstreamRpcError(-32601, 'Method not found', { x: 1 }));
  });

  it('rewrites clashing progress tokens and restores each caller token on the way back', async () => {
    const { sent, mux } = harness();
    const seenA: JsonRpcNotification[] = [];
    const seenB: JsonRpcNotification[] = [];
    const params = { name: 'slow', _meta: { progressToken: 'same' } };
    void mux
      .request('a', 'tools/call', params, { onNotification: (n) => seenA.push(n) }, 1_000)
      .catch(() => undefined);
    void mux
      .request('b', 'tools/call', params, { onNotification: (n) => seenB.push(n) }, 1_000)
      .catch(() => undefined);
    expect(sent[0]?.params?._meta?.progressToken).toBe(1);
    expect(sent[1]?.params?._meta?.progressToken).toBe(2);
    expect(params._meta.progressToken).toBe('same'); // the caller's object is untouched
    expect(
      mux.routeNotification({
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: { progressToken: 2, progress: 1 },
      }),
    ).toBeUndefined();
    expect(seenB).toEqual([
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'same', progress: 1 } },
    ]);
    expect(seenA).toEqual([]);
    const other = { jsonrpc: '2.0' as const, method: 'notifications/message', params: { level: 'info' } };
    expect(mux.routeNotification(other)).toBe(other);
    mux.failAll(new Error('done'));
  });

  it('drops progress that names no call in flight that asked for it, instead of passing on its own number', async () => {
    const { mux } = harness();
    const seen: JsonRpcNotification[] = [];
    const progress = (token: unknown) => ({ jsonrpc: '2.0' as const, method: 'notifications/progress', params: { progressToken: token, progress: 1 } });
    const withToken = mux.request('a', 'tools/call', { name: 'slow', _meta: { progressToken: 'mine' } }, { onNotification: (n) => seen.push(n) }, 1_000);
    void mux.request('a', 'tools/call', { name: 'plain' }, undefined, 1_000).catch(() => undefined);
    // Call 2 gave no token; 7 was never issued; a string token is not one of ours.
    expect(mux.routeNotification(progress(2))).toBeUndefined();
    expect(mux.routeNotification(progress(7))).toBeUndefined();
    expect(mux.routeNotification(progress('mine'))).toBeUndefined();
    mux.handleResponse({ jsonrpc: '2.0', id: 1, result: {} });
    await withToken;
    // Late: call 1 has answered.
    expect(mux.routeNotification(progress(1))).toBeUndefined();
    expect(seen).toEqual([]);
    mux.failAll(new Error('done'));
  });

  it('never cancels an initialize it gives up on (MCP forbids it), and still cancels other calls', async () => {
    vi.useFakeTimers();
    const { sent, mux } = harness();
    const init = mux.request('a', 'initialize', { protocolVersion: '2025-11-25' }, undefined, 50);
    const other = mux.request('a', 'tools/list', undefined, undefined, 50);
    const outcomes = Promise.all([expect(init).rejects.toMatchObject({ reason: 'timeout' }), expect(other).rejects.toMatchObject({ reason: 'timeout' })]);
    vi.advanceTimersByTime(50);
    await outcomes;
    const cancelled = sent.filter((m) => m.method === 'notifications/cancelled').map((m) => m.params?.['requestId']);
    expect(cancelled).toEqual([2]);
  });

  it('never sends notifications/cancelled for a task-augmented call it gives up on (MCP 2025-11-25: tasks/cancel is the way)', async () => {
    vi.useFakeTimers();
    const { sent, mux } = harness();
    const controller = new AbortController();
    const timedOut = mux.request('a', 'tools/call', { name: 'slow', task: { ttl: 60_000 } }, undefined, 50);
    const aborted = mux.request('a', 'tools/call', { name: 'slow', task: {} }, { signal: controller.signal }, 1_000);
    const plain = mux.request('a', 'tools/call', { name: 'slow' }, undefined, 50);
    const outcomes = Promise.all([expect(timedOut).rejects.toMatchObject({ reason: 'timeout' }), expect(aborted).rejects.toThrow(), expect(plain).rejects.toMatchObject({ reason: 'timeout' })]);
    controller.abort(new Error('agent cancelled'));
    vi.advanceTimersByTime(50);
    await outcomes;
    expect(sent.filter((m) => m.method === 'notifications/cancelled').map((m) => m.params?.['requestId'])).toEqual([3]);
  });

  it('tells the handler a server request may be of another call of its owner when the owner has several in flight', async () => {
    const { mux } = harness();
    const contexts: unknown[] = [];
    const handler = async (_request: unknown, _signal: AbortSignal, context?: unknown) => {
      contexts.push(context);
      return {};
    };
    const request = { jsonrpc: '2.0' as const, id: 'up-1', method: 'elicitation/create' };
    void mux.request('a', 'tools/call', {}, { onServerRequest: handler }, 1_000).catch(() => undefined);
    const only = mux.routeServerRequest(request);
    if (only.kind !== 'call') throw new Error('not routed');
    await only.handler(request, new AbortController().signal);
    void mux.request('a', 'tools/call', {}, { onServerRequest: handler }, 1_000).catch(() => undefined);
    const either = mux.routeServerRequest(request);
    if (either.kind !== 'call') throw new Error('not routed');
    await either.handler(request, new AbortController().signal);
    expect(contexts).toEqual([undefined, { shared: true }]);
    mux.failAll(new Error('done'));
  });

  it('routes a server request to the only owner with a handler, and refuses when owners are ambiguous', () => {
    const { mux } = harness();
    const handler = async () => ({});
    const request = { jsonrpc: '2.0' as const, id: 'up-1', method: 'sampling/createMessage' };
    expect(mux.routeServerRequest(request)).toEqual({ kind: 'none' });
    void mux.request('a', 'tools/call', {}, { onServerRequest: handler }, 1_000).catch(() => undefined);
    void mux.request('a', 'tools/call', {}, { onServerRequest: handler }, 1_000).catch(() => undefined);
    expect(mux.routeServerRequest(request)).toMatchObject({ kind: 'call', owner: 'a' });
    // Another owner's call without a handler (a listing) may as well have caused it. Before, it did not count: a's
    // call was asked what b's listing had caused.
    void mux.request('b', 'resources/list', {}, undefined, 1_000).catch(() => undefined);
    expect(mux.routeServerRequest(request)).toEqual({ kind: 'ambiguous' });
    // Unless the caller says that owner asks no agent (a connection's own bookkeeping, a session that left).
    for (const standing of ['ignored', 'gone'] as const) expect(mux.routeServerRequest(request, (owner) => (owner === 'b' ? standing : 'asked'))).toMatchObject({ kind: 'call', owner: 'a' });
    void mux.request('c', 'tools/call', {}, { onServerRequest: handler }, 1_000).catch(() => undefined);
    expect(mux.routeServerRequest(request, (owner) => (owner === 'b' ? 'ignored' : 'asked'))).toEqual({ kind: 'ambiguous' });
    mux.failAll(new Error('done'));
  });

  it('refuses a request only a departed owner\'s call could have caused, and ignores the connection\'s own calls', () => {
    const { mux } = harness();
    const request = { jsonrpc: '2.0' as const, id: 'up-1', method: 'sampling/createMessage' };
    const standing = (owner: string) => (owner === 'left' ? 'gone' : owner === 'self' ? 'ignored' : 'asked');
    void mux.request('self', 'logging/setLevel', {}, undefined, 1_000).catch(() => undefined);
    // The connection's own call (restoring a log level after a restart): as if nothing were in flight.
    expect(mux.routeServerRequest(request, standing)).toEqual({ kind: 'none' });
    void mux.request('left', 'resources/subscribe', {}, undefined, 1_000).catch(() => undefined);
    // A departed session's call may have caused it: refused, never put to the session left (the transport's fallback).
    expect(mux.routeServerRequest(request, standing)).toEqual({ kind: 'ambiguous' });
    mux.failAll(new Error('done'));
  });

  it('tells the handler a question may be of another call of its owner, one without a handler of its own too', async () => {
    const { mux } = harness();
    const contexts: unknown[] = [];
    const handler = async (_request: unknown, _signal: AbortSignal, context?: unknown) => {
      contexts.push(context);
      return {};
    };
    const request = { jsonrpc: '2.0' as const, id: 'up-1', method: 'roots/list' };
    // A page of the engine's own route walk (no handler), and the agent's listing page (its handler ends its questions
    // with the page): either may have asked. Before, the first did not count, and the question ended with the second.
    void mux.request('s', 'resources/list', {}, undefined, 1_000).catch(() => undefined);
    void mux.request('s', 'resources/list', {}, { onServerRequest: handler }, 1_000).catch(() => undefined);
    const route = mux.routeServerRequest(request);
    if (route.kind !== 'call') throw new Error(`not routed to a call: ${route.kind}`);
    await route.handler(request, new AbortController().signal);
    expect(contexts).toEqual([{ shared: true }]);
    mux.failAll(new Error('done'));
  });

  it('names the one owner with calls in flight when none has a handler of its own', () => {
    const { mux } = harness();
    const request = { jsonrpc: '2.0' as const, id: 'up-1', method: 'roots/list' };
    void mux.request('b', 'resources/list', {}, undefined, 1_000).catch(() => undefined);
    void mux.request('b', 'prompts/list', {}, undefined, 1_000).catch(() => undefined);
    expect(mux.routeServerRequest(request)).toEqual({ kind: 'owner', owner: 'b' });
    mux.failAll(new Error('done'));
  });

  it('on abort sends notifications/cancelled with its own id and rejects with the abort reason', async () => {
    const { sent, mux } = harness();
    const controller = new AbortController();
    const call = mux.request('a', 'tools/call', {}, { signal: controller.signal }, 1_000);
    controller.abort(new Error('agent cancelled'));
    await expect(call).rejects.toThrow('agent cancelled');
    expect(sent[1]).toEqual({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 1, reason: 'cancelled by the client' },
    });
    expect(mux.pending).toBe(0);
  });

  it('times out with UpstreamUnavailableError(timeout), cancels upstream and reports the timeout', async () => {
    vi.useFakeTimers();
    const { sent, mux, hooks } = harness();
    const call = mux.request('a', 'tools/call', {}, undefined, 50);
    const outcome = expect(call).rejects.toMatchObject({ reason: 'timeout' });
    vi.advanceTimersByTime(50);
    await outcome;
    expect(hooks.onTimeout).toHaveBeenCalledOnce();
    expect(sent[1]?.method).toBe('notifications/cancelled');
  });

  it('fails only the calls of a closing owner, cancelling each upstream (never an initialize)', async () => {
    const { sent, mux, hooks } = harness();
    const init = mux.request('a', 'initialize', {}, undefined, 1_000);
    const a = mux.request('a', 'tools/call', { name: 'slow' }, undefined, 1_000);
    const b = mux.request('b', 'tools/call', { name: 'slow' }, undefined, 1_000);
    mux.cancelOwner('a', 'session closed', new Error('closed'));
    await expect(init).rejects.toThrow('closed');
    await expect(a).rejects.toThrow('closed');
    expect(sent.filter((m) => m.method === 'notifications/cancelled')).toEqual([
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2, reason: 'session closed' } },
    ]);
    // Not a timeout: the breaker is not told of one.
    expect(hooks.onTimeout).not.toHaveBeenCalled();
    mux.handleResponse({ jsonrpc: '2.0', id: 3, result: { ok: true } });
    await expect(b).resolves.toEqual({ ok: true });
  });

  it('cancels a closing owner\'s calls without throwing when the connection is gone', async () => {
    let open = true;
    const mux = new RequestMultiplexer<string>({
      write: () => {
        if (!open) throw new Error('gone');
      },
    });
    const a = mux.request('a', 'tools/call', {}, undefined, 1_000);
    const b = mux.request('a', 'tools/call', {}, undefined, 1_000);
    open = false;
    expect(() => mux.cancelOwner('a', 'session closed', new Error('closed'))).not.toThrow();
    await expect(a).rejects.toThrow('closed');
    await expect(b).rejects.toThrow('closed');
    expect(mux.pending).toBe(0);
  });

  it('a write that throws fails the call instead of leaving it pending', async () => {
    const mux = new RequestMultiplexer<string>({
      write: () => {
        throw new Error('gone');
      },
    });
    await expect(mux.request('a', 'x', undefined, undefined, 1_000)).rejects.toThrow('gone');
    expect(mux.pending).toBe(0);
  });

  it("keeps the token of a call answered with a task for the task's progress: to its owner, until its ttl or the owner goes", async () => {
    vi.useFakeTimers();
    const sent: Sent[] = [];
    const heard: [string, JsonRpcNotification][] = [];
    const mux = new RequestMultiplexer<string>({ write: (text) => void sent.push(JSON.parse(text) as Sent), taskProgress: (owner, n) => void heard.push([owner, n]) });
    const progress = (token: unknown, value: number): JsonRpcNotification => ({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: value } });
    const tasked = mux.request('a', 'tools/call', { name: 't', task: { ttl: 5_000 }, _meta: { progressToken: 'mine' } }, undefined, 1_000);
    const plain = mux.request('b', 'tools/call', { name: 'p', _meta: { progressToken: 'theirs' } }, undefined, 1_000);
    mux.handleResponse({ jsonrpc: '2.0', id: 1, result: { task: { taskId: 'x', status: 'working', ttl: 5_000 } } });
    mux.handleResponse({ jsonrpc: '2.0', id: 2, result: { content: [] } });
    await Promise.all([tasked, plain]);
    expect(mux.routeNotification(progress(1, 1))).toBeUndefined();
    // A plain call's token ends with its answer, as before.
    expect(mux.routeNotification(progress(2, 1))).toBeUndefined();
    expect(heard).toEqual([['a', progress('mine', 1)]]);
    vi.advanceTimersByTime(5_001);
    mux.routeNotification(progress(1, 2));
    expect(heard).toHaveLength(1);
    // Another task, whose owner goes: its token goes with it.
    const again = mux.request('a', 'tools/call', { name: 't', task: {}, _meta: { progressToken: 'mine' } }, undefined, 1_000);
    mux.handleResponse({ jsonrpc: '2.0', id: 3, result: { task: { taskId: 'y', status: 'working' } } });
    await again;
    mux.routeNotification(progress(3, 1));
    // Its task may run on at the server after it went (an hour at most, with no ttl named); another owner left nothing.
    expect(mux.cancelOwner('a', 'session closed', new Error('closed'))).toBe(Date.now() + 60 * 60_000);
    expect(mux.cancelOwner('b', 'session closed', new Error('closed'))).toBe(0);
    mux.routeNotification(progress(3, 2));
    expect(heard.map(([, n]) => n.params?.['progress'])).toEqual([1, 1]);
    expect(sent.filter((m) => m.method === 'notifications/cancelled')).toEqual([]);
  });

  // Found by re-review: the work counted for an owner outlived the connection it ran on, tokenless tasks took the
  // places of tokens, and an owner that had left was noted again by a call outliving it.
  describe('the work an owner leaves behind', () => {
    const taskAnswer = (id: number) => ({ jsonrpc: '2.0' as const, id, result: { task: { taskId: `t${id}`, status: 'working', ttl: 60_000 } } });
    const withTaskProgress = () => {
      const heard: [string, JsonRpcNotification][] = [];
      const mux = new RequestMultiplexer<string>({ write: () => undefined, taskProgress: (owner, n) => void heard.push([owner, n]) });
      return { mux, heard };
    };

    it('is none once the connection died (failAll): its tasks and given-up calls went with it', async () => {
      vi.useFakeTimers();
      const { mux } = withTaskProgress();
      const tasked = mux.request('a', 'tools/call', { name: 't', task: { ttl: 60_000 } }, undefined, 1_000);
      mux.handleResponse(taskAnswer(1));
      await tasked;
      const slow = mux.request('a', 'tools/call', { name: 'slow' }, undefined, 30_000).catch(() => undefined);
      await vi.advanceTimersByTimeAsync(30_000);
      await slow;
      mux.failAll(new Error('closed'));
      expect(mux.cancelOwner('a', 'session closed', new Error('closed'))).toBe(0);
    });

    it('counts a task created without a progress token, which takes no token\'s place', async () => {
      vi.useFakeTimers();
      const { mux, heard } = withTaskProgress();
      void mux.request('b', 'tools/call', { name: 't', task: {}, _meta: { progressToken: 'mine' } }, undefined, 1_000);
      mux.handleResponse(taskAnswer(1));
      for (let i = 0; i < 1_000; i += 1) {
        void mux.request('a', 'tools/call', { name: 't', task: {} }, undefined, 1_000);
        mux.handleResponse(taskAnswer(i + 2));
      }
      mux.routeNotification({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } });
      expect(heard.map(([owner]) => owner)).toEqual(['b']);
      expect(mux.cancelOwner('a', 'session closed', new Error('closed'))).toBe(Date.now() + 60_000);
    });

    it('is not noted again for an owner that left, when its call that outlives it times out', async () => {
      vi.useFakeTimers();
      const { mux } = withTaskProgress();
      const subscribe = mux.request('a', 'resources/subscribe', { uri: 'x' }, undefined, 1_000, true).catch(() => undefined);
      expect(mux.cancelOwner('a', 'session closed', new Error('closed'))).toBe(0);
      await vi.advanceTimersByTimeAsync(1_000);
      await subscribe;
      expect(mux.cancelOwner('a', 'session closed', new Error('closed'))).toBe(0);
    });
  });
});
