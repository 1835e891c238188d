import { PassThrough } from 'node:stream';
import { UpstreamRpcError, type JsonRpcNotification, type JsonRpcRequest } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { handleCallResponse } from './call-response';
import type { ResponseLike } from './event-stream';

function fakeResponse(statusCode: number, contentType: string): PassThrough & ResponseLike {
  return Object.assign(new PassThrough(), { statusCode, headers: { 'content-type': contentType } });
}

function run(res: ResponseLike, hasSession = true) {
  const notifications: JsonRpcNotification[] = [];
  const requests: JsonRpcRequest[] = [];
  const health: boolean[] = [];
  let expired = false;
  const outcome = new Promise<Record<string, unknown>>((resolve, reject) => {
    handleCallResponse(res, 7, {
      maxBytes: 1024 * 1024,
      hasSession,
      notification: (n) => notifications.push(n),
      serverRequest: (r) => requests.push(r),
      expired: () => {
        expired = true;
      },
      reachable: (healthy) => health.push(healthy),
      settle: (error, result) => (error === null && result ? resolve(result) : reject(error)),
    });
  });
  return { outcome, notifications, requests, health, expired: () => expired };
}

const frame = (message: unknown, id?: string) =>
  `${id ? `id: ${id}\n` : ''}data: ${JSON.stringify(message)}\n\n`;

describe('handleCallResponse', () => {
  it('delivers notifications and server requests from an SSE stream and resolves on the final response', async () => {
    const res = fakeResponse(200, 'text/event-stream; charset=utf-8');
    const { outcome, notifications, requests } = run(res);
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
    for (let i = 0; i < stream.length; i += 13) res.write(stream.slice(i, i + 13));
    await expect(outcome).resolves.toEqual({ content: [] });
    expect(notifications).toEqual([progress]);
    expect(requests).toEqual([sampling]);
    res.end();
  });

  it('rejects with the upstream JSON-RPC error from a JSON body', async () => {
    const res = fakeResponse(200, 'application/json');
    const { outcome } = run(res);
    res.end(JSON.stringify({ jsonrpc: '2.0', id: 7, error: { code: -32601, message: 'Method not found' } }));
    await expect(outcome).rejects.toEqual(new UpstreamRpcError(-32601, 'Method not found'));
  });

  it('a stream that ends without the answer is a protocol error', async () => {
    const res = fakeResponse(200, 'text/event-stream');
    const { outcome } = run(res);
    res.end(frame({ jsonrpc: '2.0', method: 'notifications/message', params: {} }));
    await expect(outcome).rejects.toMatchObject({ reason: 'protocol_error' });
  });

  it('404 on a known session is session_expired', async () => {
    const res = fakeResponse(404, 'application/json');
    const run404 = run(res, true);
    res.end('{}');
    await expect(run404.outcome).rejects.toMatchObject({ reason: 'session_expired' });
    expect(run404.expired()).toBe(true);
  });

  it('5xx counts against the upstream, 4xx does not', async () => {
    const bad = fakeResponse(503, 'text/plain');
    const r1 = run(bad);
    bad.end('down');
    await expect(r1.outcome).rejects.toMatchObject({
      reason: 'protocol_error',
      message: expect.stringContaining('HTTP 503'),
    });
    expect(r1.health).toEqual([false]);
    const teapot = fakeResponse(400, 'application/json');
    const r2 = run(teapot, false);
    teapot.end('{}');
    await expect(r2.outcome).rejects.toMatchObject({ reason: 'protocol_error' });
    expect(r2.health).toEqual([true]);
  });

  it('an oversized SSE event breaks the stream', async () => {
    const res = Object.assign(new PassThrough(), {
      statusCode: 200,
      headers: { 'content-type': 'text/event-stream' },
    });
    const errors: unknown[] = [];
    handleCallResponse(res, 1, {
      maxBytes: 64,
      hasSession: true,
      notification: () => undefined,
      serverRequest: () => undefined,
      expired: () => undefined,
      reachable: () => undefined,
      settle: (error) => errors.push(error),
    });
    res.write(`data: ${'x'.repeat(100)}`);
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ reason: 'protocol_error' });
  });
});
