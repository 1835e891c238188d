import { describe, expect, it } from 'vitest';
import { classify, errorResponse, JSON_RPC } from './json-rpc';
import { SseParser, sseFrame } from './sse';
import { allowsBatches, isSupportedVersion, LATEST_PROTOCOL_VERSION, negotiateVersion } from './versions';

describe('JSON-RPC classification', () => {
  it('sorts requests, notifications and responses', () => {
    expect(classify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }).kind).toBe('request');
    expect(classify({ jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'x' } }).kind).toBe('request');
    expect(classify({ jsonrpc: '2.0', method: 'notifications/initialized' }).kind).toBe('notification');
    expect(classify({ jsonrpc: '2.0', id: 7, result: {} }).kind).toBe('response');
    expect(classify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'x' } }).kind).toBe('response');
  });

  it.each([
    [null, 'a JSON-RPC message must be an object'],
    [[], 'a JSON-RPC message must be an object'],
    [{ id: 1, method: 'ping' }, 'jsonrpc must be "2.0"'],
    [{ jsonrpc: '1.0', id: 1, method: 'ping' }, 'jsonrpc must be "2.0"'],
    [{ jsonrpc: '2.0', id: 1, method: '' }, 'method must be a non-empty string'],
    [{ jsonrpc: '2.0', id: 1, method: 42 }, 'method must be a non-empty string'],
    [{ jsonrpc: '2.0', id: 1, method: 'ping', params: [1] }, 'params must be an object'],
    [{ jsonrpc: '2.0', id: null, method: 'ping' }, 'id must be a string or a number'],
    [{ jsonrpc: '2.0', id: { x: 1 }, method: 'ping' }, 'id must be a string or a number'],
    [{ jsonrpc: '2.0', id: 1, result: {}, error: { code: 1, message: 'm' } }, 'a response has result or error, not both'],
    [{ jsonrpc: '2.0', id: 1, error: { code: 'x' } }, 'error must have a numeric code and a message'],
    [{ jsonrpc: '2.0', id: 1, result: 5 }, 'result must be an object'],
    [{ jsonrpc: '2.0', id: 1 }, 'not a request, notification or response'],
  ])('rejects %j: %s', (value, reason) => {
    const classified = classify(value);
    expect(classified).toMatchObject({ kind: 'invalid', reason });
  });

  it('keeps the id of an invalid message when it is usable, for the error response', () => {
    expect(classify({ jsonrpc: '2.0', id: 9, method: 'x', params: 'y' })).toMatchObject({ id: 9 });
    expect(errorResponse(9, JSON_RPC.INVALID_REQUEST, 'bad')).toEqual({
      jsonrpc: '2.0',
      id: 9,
      error: { code: -32600, message: 'bad' },
    });
  });
});

describe('protocol versions', () => {
  it('negotiates the client version when supported, else the latest', () => {
    expect(negotiateVersion('2024-11-05')).toBe('2024-11-05');
    expect(negotiateVersion('2025-06-18')).toBe('2025-06-18');
    expect(negotiateVersion('1999-01-01')).toBe(LATEST_PROTOCOL_VERSION);
    expect(negotiateVersion(undefined)).toBe(LATEST_PROTOCOL_VERSION);
    expect(isSupportedVersion('not-a-version')).toBe(false);
    expect(allowsBatches('2025-03-26')).toBe(true);
    expect(allowsBatches('2025-11-25')).toBe(false);
  });
});

describe('SSE', () => {
  it('round-trips frames through the parser, across arbitrary chunk boundaries', () => {
    const stream =
      sseFrame('{"a":1}', 'e1') + ': keep-alive comment\n\n' + sseFrame('line1\nline2', 'e2', 'custom') + 'retry: 500\ndata: x\n\n';
    for (const size of [1, 2, 3, 7, 1000]) {
      const parser = new SseParser();
      const events = [];
      for (let i = 0; i < stream.length; i += size) events.push(...parser.push(stream.slice(i, i + size)));
      expect(events).toEqual([
        { id: 'e1', event: 'message', data: '{"a":1}' },
        { id: 'e2', event: 'custom', data: 'line1\nline2' },
        { id: 'e2', event: 'message', data: 'x', retry: 500 },
      ]);
    }
  });

  it('accepts CRLF and CR line endings', () => {
    const parser = new SseParser();
    // A CR at the very end of a chunk may be the first half of CRLF, so that line waits for more input.
    expect(parser.push('data: a\r\n\r\ndata: b\r\r')).toEqual([{ event: 'message', data: 'a' }]);
    expect(parser.push('data: c\n\n')).toEqual([
      { event: 'message', data: 'b' },
      { event: 'message', data: 'c' },
    ]);
  });

  it('refuses an event larger than its limit instead of buffering without bound', () => {
    const parser = new SseParser(100);
    expect(() => parser.push(`data: ${'x'.repeat(200)}`)).toThrow('size limit');
  });
});
