import { UpstreamRpcError, type JsonRpcNotification, type JsonRpcRequest } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { CallResponse } from './call-response';

/** Stands in for the abort function undici hands a handler: records whether the handler dropped the request. */
function fakeController(): { abort: (reason?: Error) => void; readonly aborted: boolean } {
  const aborts: (Error | undefined)[] = [];
  return {
    abort: (reason) => aborts.push(reason),
    get aborted() {
      return aborts.length > 0;
    },
  };
}

/** Header lines as undici hands them over: name, value, name, value... as bytes. */
const rawHeaders = (headers: Record<string, string> | [string, string][]): Buffer[] =>
  (Array.isArray(headers) ? headers : Object.entries(headers)).flatMap(([name, value]) => [Buffer.from(name), Buffer.from(value, 'latin1')]);

function run(hasSession = true, maxBytes = 1024 * 1024, resumedFrom?: string) {
  const notifications: JsonRpcNotification[] = [];
  const requests: JsonRpcRequest[] = [];
  const health: boolean[] = [];
  const failures: unknown[] = [];
  const sessionIds: string[] = [];
  let expired = false;
  let abandoned = 0;
  let call!: CallResponse;
  const outcome = new Promise<Record<string, unknown>>((resolve, reject) => {
    call = new CallResponse(7, {
      maxBytes,
      hasSession,
      sessionId: (sessionId) => sessionIds.push(sessionId),
      notification: (n) => notifications.push(n),
      serverRequest: (r) => requests.push(r),
      expired: () => {
        expired = true;
      },
      reachable: (healthy) => health.push(healthy),
      failed: (error) => {
        failures.push(error);
        reject(error);
      },
      settle: (error, result) => (error === null && result ? resolve(result) : reject(error)),
      abandoned: () => void (abandoned += 1),
    }, resumedFrom);
  });
  const controller = fakeController();
  call.onConnect(controller.abort);
  /** Delivers a response the way undici does: head, body chunks, end. */
  const respond = (
    status: number,
    headers: Record<string, string> | [string, string][],
    chunks: string[] = [],
    end = true,
  ): void => {
    call.onHeaders(status, rawHeaders(headers));
    for (const chunk of chunks) call.onData(Buffer.from(chunk));
    if (end) call.onComplete();
  };
  return {
    call,
    controller,
    respond,
    outcome,
    notifications,
    requests,
    health,
    failures,
    sessionIds,
    expired: () => expired,
    abandoned: () => abandoned,
  };
}

const frame = (message: unknown, id?: string) =>
  `${id ? `id: ${id}\n` : ''}data: ${JSON.stringify(message)}\n\n`;

describe('CallResponse', () => {
  it('delivers notifications and server requests from an SSE stream and resolves on the final response', async () => {
    const { respond, outcome, notifications, requests } = run();
    const progress = {
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { progressToken: 't', progress: 1 },
    };
    const sampling = { jsonrpc: '2.0', id: 0, method: 'sampling/createMessage', params: {} };
    const stream =
      'id: prime\ndata:\n\n' + // 2025-11-25 priming event (empty data)
      frame(progress, 'e1') +
      ': keep-alive comment\n\n' +
      frame(sampling, 'e2') +
      frame({ jsonrpc: '2.0', id: 99, result: { other: true } }) + // not ours
      frame({ jsonrpc: '2.0', id: 7, result: { content: [] } });
    // split at awkward places, including inside a CRLF-free frame
    const chunks: string[] = [];
    for (let i = 0; i < stream.length; i += 13) chunks.push(stream.slice(i, i + 13));
    respond(200, { 'content-type': 'text/event-stream; charset=utf-8' }, chunks);
    await expect(outcome).resolves.toEqual({ content: [] });
    expect(notifications).toEqual([progress]);
    expect(requests).toEqual([sampling]);
  });

  it('passes on no progress that comes after the answer on the same stream (a log message still goes)', async () => {
    const { respond, outcome, notifications } = run();
    const progress = (value: number) => ({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: value } });
    const log = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'after' } };
    respond(200, { 'content-type': 'text/event-stream' }, [frame(progress(1)) + frame({ jsonrpc: '2.0', id: 7, result: {} }) + frame(progress(2)) + frame(log)]);
    await expect(outcome).resolves.toEqual({});
    expect(notifications).toEqual([progress(1), log]);
  });

  it('passes on progress after an answer that created a task (its token holds for the task)', async () => {
    const { respond, outcome, notifications } = run();
    const progress = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 2 } };
    const task = { taskId: 'x', status: 'working', createdAt: 'x', lastUpdatedAt: 'x', ttl: 1_000 };
    respond(200, { 'content-type': 'text/event-stream' }, [frame({ jsonrpc: '2.0', id: 7, result: { task } }) + frame(progress)]);
    await expect(outcome).resolves.toEqual({ task });
    expect(notifications).toEqual([progress]);
  });

  it('decodes a multi-byte character split across chunks', async () => {
    const { call, outcome } = run();
    const bytes = Buffer.from(frame({ jsonrpc: '2.0', id: 7, result: { text: 'héllo ✓' } }));
    const cut = bytes.indexOf(Buffer.from('✓')) + 1;
    call.onHeaders(200, rawHeaders({ 'content-type': 'text/event-stream' }));
    call.onData(bytes.subarray(0, cut));
    call.onData(bytes.subarray(cut));
    call.onComplete();
    await expect(outcome).resolves.toEqual({ text: 'héllo ✓' });
  });

  it('resolves from a JSON body in several chunks and adopts the session id', async () => {
    const { respond, outcome, sessionIds } = run(false);
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, result: { ok: true } });
    respond(200, { 'content-type': 'application/json', 'mcp-session-id': 'abc' }, [
      body.slice(0, 10),
      body.slice(10),
    ]);
    await expect(outcome).resolves.toEqual({ ok: true });
    expect(sessionIds).toEqual(['abc']);
  });

  it('reads header names in any case, and takes a repeated session id or content type as none', async () => {
    const mixed = run(false);
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, result: { ok: true } });
    mixed.respond(200, [['Content-Type', 'Application/JSON; charset=utf-8'], ['MCP-Session-Id', 'xyz']], [body]);
    await expect(mixed.outcome).resolves.toEqual({ ok: true });
    expect(mixed.sessionIds).toEqual(['xyz']);

    const twoIds = run(false);
    twoIds.respond(200, [['content-type', 'application/json'], ['mcp-session-id', 'a'], ['Mcp-Session-Id', 'b']], [body]);
    await expect(twoIds.outcome).resolves.toEqual({ ok: true });
    expect(twoIds.sessionIds).toEqual([]);

    const twoTypes = run(false);
    twoTypes.respond(200, [['content-type', 'application/json'], ['content-type', 'text/event-stream']], [body]);
    await expect(twoTypes.outcome).rejects.toMatchObject({ reason: 'protocol_error', message: expect.stringContaining('unexpected content type') });
  });

  it('rejects with the upstream JSON-RPC error from a JSON body', async () => {
    const { respond, outcome } = run();
    respond(200, { 'content-type': 'application/json' }, [
      JSON.stringify({ jsonrpc: '2.0', id: 7, error: { code: -32601, message: 'Method not found' } }),
    ]);
    await expect(outcome).rejects.toEqual(new UpstreamRpcError(-32601, 'Method not found'));
  });

  it('a stream that ends without the answer is a protocol error', async () => {
    const { respond, outcome } = run();
    respond(200, { 'content-type': 'text/event-stream' }, [
      frame({ jsonrpc: '2.0', method: 'notifications/message', params: {} }),
    ]);
    await expect(outcome).rejects.toMatchObject({ reason: 'protocol_error' });
  });

  it('a stream that breaks mid-way is a protocol error, not a connect failure', async () => {
    const { call, respond, outcome, failures } = run();
    respond(200, { 'content-type': 'text/event-stream' }, [], false);
    call.onError(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
    await expect(outcome).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(failures).toEqual([]);
  });

  it('an error before any response is reported as a failed request', async () => {
    const { call, outcome, failures } = run();
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    call.onError(refused);
    await expect(outcome).rejects.toBe(refused);
    expect(failures).toEqual([refused]);
  });

  it('404 on a known session is session_expired', async () => {
    const r = run(true);
    r.respond(404, { 'content-type': 'application/json' }, ['{}']);
    await expect(r.outcome).rejects.toMatchObject({ reason: 'session_expired' });
    expect(r.expired()).toBe(true);
  });

  it('404 to a GET resuming a call\'s stream fails the call as protocol_error: the upstream took it, it must not be sent again', async () => {
    // session_expired says nothing ran: the gateway then opens a new upstream session and sends the call again.
    const r = run(true, 1024 * 1024, 'p1');
    r.respond(404, { 'content-type': 'application/json' }, ['{}']);
    await expect(r.outcome).rejects.toMatchObject({ reason: 'protocol_error' });
    // The session is gone all the same: the next call starts a new one.
    expect(r.expired()).toBe(true);
  });

  it('tells the breaker the upstream is healthy when the answer comes, not on a 200 alone', async () => {
    // An SDK server sends 200 and its SSE headers before the tool runs: a tool that hangs must still count as a failure.
    const sse = run();
    sse.respond(200, { 'content-type': 'text/event-stream' }, [': working\n\n'], false);
    expect(sse.health).toEqual([]);
    sse.call.onData(Buffer.from(frame({ jsonrpc: '2.0', id: 7, result: {} })));
    await expect(sse.outcome).resolves.toEqual({});
    expect(sse.health).toEqual([true]);

    const json = run();
    json.respond(200, { 'content-type': 'application/json' }, [], false);
    expect(json.health).toEqual([]);
    json.call.onData(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 7, error: { code: -32603, message: 'failed' } })));
    json.call.onComplete();
    await expect(json.outcome).rejects.toBeInstanceOf(UpstreamRpcError);
    expect(json.health).toEqual([true]);
  });

  it('a 200 of another content type is a protocol error the upstream is told of, like any answer that cannot be read', async () => {
    const r = run();
    r.respond(200, { 'content-type': 'text/plain' }, ['{}']);
    await expect(r.outcome).rejects.toMatchObject({ reason: 'protocol_error', message: expect.stringContaining('unexpected content type') });
    expect(r.abandoned()).toBe(1);
    // No MCP server's answer: a failure for the upstream's circuit (before, nothing, and such an upstream never left).
    expect(r.health).toEqual([false]);
  });

  it('refuses an Mcp-Session-Id that is not visible ASCII or longer than 1,024 characters, adopting none', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, result: { ok: true } });
    for (const bad of ['a b', 'ab\u00e9', 'tab\there', 'x'.repeat(1_025)]) {
      const r = run(false);
      r.respond(200, { 'content-type': 'application/json', 'mcp-session-id': bad }, [body]);
      await expect(r.outcome).rejects.toMatchObject({ reason: 'protocol_error', message: expect.stringContaining('session id') });
      expect(r.sessionIds).toEqual([]);
      expect(r.controller.aborted).toBe(true);
    }
    for (const good of ['!~', 'x'.repeat(1_024)]) {
      const r = run(false);
      r.respond(200, { 'content-type': 'application/json', 'mcp-session-id': good }, [body]);
      await expect(r.outcome).resolves.toEqual({ ok: true });
      expect(r.sessionIds).toEqual([good]);
    }
  });

  it('5xx counts against the upstream, 4xx does not', async () => {
    const r1 = run();
    r1.respond(503, { 'content-type': 'text/plain' }, ['down']);
    await expect(r1.outcome).rejects.toMatchObject({
      reason: 'protocol_error',
      message: expect.stringContaining('HTTP 503'),
    });
    expect(r1.health).toEqual([false]);
    const r2 = run(false);
    r2.respond(400, { 'content-type': 'application/json' }, ['{}']);
    await expect(r2.outcome).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(r2.health).toEqual([true]);
  });

  it('an oversized SSE event breaks the stream and drops the request', async () => {
    const { respond, outcome, controller } = run(true, 64);
    respond(200, { 'content-type': 'text/event-stream' }, [`data: ${'x'.repeat(100)}`], false);
    await expect(outcome).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(controller.aborted).toBe(true);
  });

  it('an oversized JSON body breaks the call and drops the request', async () => {
    const { respond, outcome, controller } = run(true, 64);
    respond(200, { 'content-type': 'application/json' }, ['{"a":"', 'x'.repeat(100)], false);
    await expect(outcome).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(controller.aborted).toBe(true);
  });

  it('abort before the request reached a socket drops it once it does, and settles with the given error', async () => {
    const notifications: unknown[] = [];
    let outcome: unknown;
    const call = new CallResponse(7, {
      maxBytes: 1024,
      hasSession: true,
      notification: (n) => notifications.push(n),
      serverRequest: () => undefined,
      expired: () => undefined,
      reachable: () => undefined,
      failed: (error) => (outcome = error),
      settle: (error) => (outcome = error),
    });
    const closed = new Error('closed');
    call.abort(closed);
    expect(outcome).toBe(closed);
    const controller = fakeController();
    call.onConnect(controller.abort);
    expect(controller.aborted).toBe(true);
    // undici reports the abort back; it must not be counted as a failure.
    call.onError(new Error('request aborted'));
    expect(outcome).toBe(closed);
  });
});
