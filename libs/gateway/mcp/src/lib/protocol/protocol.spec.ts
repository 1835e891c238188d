import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classify, errorResponse, JSON_RPC } from './json-rpc';
import { MAX_EVENT_ID_CHARS, SseParser, sseFrame } from './sse';
import { allowsBatches, isSupportedVersion, LATEST_PROTOCOL_VERSION, negotiateVersion, primesStreams } from './versions';

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
    [{ jsonrpc: '2.0', id: null, method: 'ping' }, 'id must be a string or an integer within ±(2^53 − 1)'],
    [{ jsonrpc: '2.0', id: { x: 1 }, method: 'ping' }, 'id must be a string or an integer within ±(2^53 − 1)'],
    // 9007199254740993 parses as 2^53: answered, it would carry another id than the agent sent.
    [JSON.parse('{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}'), 'id must be a string or an integer within ±(2^53 − 1)'],
    [{ jsonrpc: '2.0', id: -(2 ** 53), method: 'ping' }, 'id must be a string or an integer within ±(2^53 − 1)'],
    [{ jsonrpc: '2.0', id: 1e300, method: 'ping' }, 'id must be a string or an integer within ±(2^53 − 1)'],
    // MCP's ids are strings or integers (JSON-RPC's fractional ids are not, and the SDK's peers refuse them).
    [{ jsonrpc: '2.0', id: 1.5, method: 'ping' }, 'id must be a string or an integer within ±(2^53 − 1)'],
    [{ jsonrpc: '2.0', id: 1, result: {}, error: { code: 1, message: 'm' } }, 'a response has result or error, not both'],
    [{ jsonrpc: '2.0', id: 1, error: { code: 'x' } }, 'error must have a numeric code and a message'],
    [{ jsonrpc: '2.0', id: 1, result: 5 }, 'result must be an object'],
    [{ jsonrpc: '2.0', id: 1 }, 'not a request, notification or response'],
  ])('rejects %j: %s', (value, reason) => {
    const classified = classify(value);
    expect(classified).toMatchObject({ kind: 'invalid', reason });
  });

  it.each([2 ** 53 - 1, -(2 ** 53 - 1), 0, -0, 'x'.repeat(512)])('takes the id %s', (id) => {
    expect(classify({ jsonrpc: '2.0', id, method: 'ping' })).toMatchObject({ kind: 'request', message: { id } });
  });

  it('marks an invalid message with no method as an answer (to the request of its id), and no other', () => {
    for (const value of [
      { jsonrpc: '2.0', id: 1, result: {}, error: { code: 1, message: 'm' } },
      { jsonrpc: '2.0', id: 1, error: { code: 'x' } },
      { jsonrpc: '2.0', id: 1, result: 5 },
      { jsonrpc: '2.0', id: 1 },
      { jsonrpc: '1.0', id: 1, result: {} },
    ]) {
      expect(classify(value)).toMatchObject({ kind: 'invalid', id: 1, answer: true });
    }
    // A request, and a line of a server's own logging that happens to hold an `id` (found by re-review).
    for (const value of [{ jsonrpc: '2.0', id: 1, method: 'x', params: 'y' }, { jsonrpc: '1.0', id: 1, method: 'ping' }, { id: 1, msg: 'listening' }]) expect(classify(value)).not.toHaveProperty('answer');
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
    expect(primesStreams('2025-11-25')).toBe(true);
    expect(primesStreams('2025-06-18')).toBe(false);
    expect(primesStreams('2024-11-05')).toBe(false);
  });
});

describe('SSE', () => {
  it('keeps the id a stream resumes from, set by an ended event with or without data, and the last retry', () => {
    const parser = new SseParser();
    expect(parser.push('id: prime\nretry: 250\n\n')).toEqual([]);
    expect(parser.lastEventId).toBe('prime');
    expect(parser.reconnectionTime).toBe(250);
    expect(parser.push('id: e1\ndata: {}\n\nid: half')).toHaveLength(1);
    // An event cut off before its blank line does not move the id a client resumes from.
    expect(parser.lastEventId).toBe('e1');
  });

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

  it('drops one byte order mark that opens the stream, alone in its chunk or not, and no other', () => {
    expect(new SseParser().push('\uFEFFevent: endpoint\ndata: /m\n\n')).toEqual([{ event: 'endpoint', data: '/m' }]);
    const split = new SseParser();
    expect(split.push('')).toEqual([]);
    expect(split.push('\uFEFF')).toEqual([]);
    expect(split.push('data: {}\n\n')).toEqual([{ event: 'message', data: '{}' }]);
    // Only at the very start: later, U+FEFF is part of a field name (ignored) or of the data.
    expect(split.push('\uFEFFdata: x\n\ndata: \uFEFFy\n\n')).toEqual([{ event: 'message', data: '\uFEFFy' }]);
  });

  it('accepts CRLF and CR line endings', () => {
    const parser = new SseParser();
    // A CR ends its line at once; an LF opening the next chunk is the rest of that CRLF, not another (empty) line.
    expect(parser.push('data: a\r\n\r\ndata: b\r\r')).toEqual([
      { event: 'message', data: 'a' },
      { event: 'message', data: 'b' },
    ]);
    expect(parser.push('data: c\r')).toEqual([]);
    expect(parser.push('\ndata: d\r')).toEqual([]);
    expect(parser.push('\n\n')).toEqual([{ event: 'message', data: 'c\nd' }]);
  });

  it('parses any split of a stream into chunks as the whole stream', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 8 }).map((text) => `data: ${text.replace(/[\r\n]/g, '')}`),
      fc.constantFrom('', ': comment', 'event: custom', 'id: 7', 'retry: 10', 'data'),
    );
    const ending = fc.constantFrom('\n', '\r', '\r\n');
    const stream = fc.array(fc.tuple(line, ending), { maxLength: 20 }).map((lines) => lines.map(([l, e]) => l + e).join(''));
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 10 }), (text, cuts) => {
        const whole = new SseParser().push(text);
        const points = [...new Set(cuts.map((cut) => cut % (text.length + 1)))].sort((a, b) => a - b);
        const parser = new SseParser();
        const events = [];
        let from = 0;
        for (const point of [...points, text.length]) {
          events.push(...parser.push(text.slice(from, point)));
          from = point;
        }
        expect(events).toEqual(whole);
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuses an event larger than its limit instead of buffering without bound', () => {
    const parser = new SseParser(100);
    expect(() => parser.push(`data: ${'x'.repeat(200)}`)).toThrow('size limit');
  });

  it('counts the limit in UTF-8 bytes, as the event came on the wire, not in string units', () => {
    // 40 characters of three bytes each: 120 bytes in data lines and in an unfinished line alike.
    expect(() => new SseParser(100).push(`data: ${'€'.repeat(40)}\n`)).toThrow('size limit');
    expect(() => new SseParser(100).push(`data: ${'€'.repeat(40)}`)).toThrow('size limit');
    expect(new SseParser(200).push(`data: ${'€'.repeat(40)}\n\n`)).toEqual([{ event: 'message', data: '€'.repeat(40) }]);
  });

  it('refuses an event over the limit that comes whole in one chunk, rather than dispatching it', () => {
    const parser = new SseParser(100);
    expect(() => parser.push(`data: ${'x'.repeat(200)}\n\n`)).toThrow('size limit');
    // The next event starts afresh.
    expect(parser.push('data: ok\n\n')).toEqual([{ event: 'message', data: 'ok' }]);
  });

  it('counts the data lines of an event whose blank line never comes against the limit', () => {
    const parser = new SseParser(1_000);
    // Each line is short and complete; only the event as a whole grows.
    expect(() => {
      for (let i = 0; i < 1_000; i++) parser.push(`data: ${'x'.repeat(50)}\n`);
    }).toThrow('size limit');
    // The parser is usable again afterwards.
    expect(parser.push('data: ok\n\n')).toEqual([{ event: 'message', data: 'ok' }]);
  });

  it('counts the event and id lines of an event against the limit too, and holds them as part of an event', () => {
    const big = 'x'.repeat(600);
    // Each line is under the limit; an event with no data line held both, uncounted, and no stall timer ran for it.
    expect(() => new SseParser(1_000).push(`id: ${big}\nevent: ${big}\n`)).toThrow('size limit');
    expect(() => new SseParser(1_000).push(`id: ${big}\ndata: ${big}\n`)).toThrow('size limit');
    const parser = new SseParser(1_000);
    parser.push('id: 7\n');
    expect(parser.holdsPartialEvent).toBe(true);
    parser.push('\nevent: custom\n');
    expect(parser.holdsPartialEvent).toBe(true);
    expect(parser.push('data: x\n\n')).toEqual([{ id: '7', event: 'custom', data: 'x' }]);
    expect(parser.holdsPartialEvent).toBe(false);
    // Within the limit, the same lines make an event as before.
    expect(new SseParser(2_000).push(`id: ${big}\nevent: e\ndata: ${big}\n\n`)).toEqual([{ id: big, event: 'e', data: big }]);
  });

  it(`ignores an id longer than ${MAX_EVENT_ID_CHARS} characters (it would last the stream's life), as one with a NULL`, () => {
    const parser = new SseParser();
    parser.push('id: short\n\n');
    const long = 'i'.repeat(MAX_EVENT_ID_CHARS + 1);
    expect(parser.push(`id: ${long}\ndata: x\n\n`)).toEqual([{ id: 'short', event: 'message', data: 'x' }]);
    expect(parser.lastEventId).toBe('short');
    const longest = 'i'.repeat(MAX_EVENT_ID_CHARS);
    parser.push(`id: ${longest}\n\n`);
    expect(parser.lastEventId).toBe(longest);
  });

  it('holds an event of many short data lines in memory that follows the bytes counted', () => {
    // 100,000 empty data lines count 100,000 bytes; one array slot and string each cost several times that. Held: at
    // most 1,024 lines as they came, and one string for each 1,024 before them.
    const lines = new SseParser();
    lines.push('data\n'.repeat(100_000));
    expect((lines as unknown as { data: string[] }).data.length).toBeLessThan(1_200);
    expect(lines.push('\n')).toEqual([{ event: 'message', data: '\n'.repeat(99_999) }]);
  });

  it('holds a line trickled in a character at a time in memory that follows the bytes counted', () => {
    const trickled = new SseParser();
    trickled.push('data: ');
    for (let i = 0; i < 100_000; i++) trickled.push(String(i % 10));
    expect((trickled as unknown as { pending: string[] }).pending.length).toBeLessThan(1_200);
    const [event] = trickled.push('\n\n');
    expect(event?.data).toBe(Array.from({ length: 100_000 }, (_, i) => String(i % 10)).join(''));
  });

  it('parses a long line trickled in small chunks in linear time', () => {
    const parser = new SseParser();
    const started = performance.now();
    const piece = 'x'.repeat(256);
    // 2 MiB in 256-character chunks: rescanning the buffer on every chunk took ~30 s here.
    parser.push('data: ');
    for (let i = 0; i < 8_192; i++) parser.push(piece);
    const events = parser.push('\n\n');
    expect(events).toHaveLength(1);
    expect(events[0]?.data.length).toBe(2 * 1024 * 1024);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
