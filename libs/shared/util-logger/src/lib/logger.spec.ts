import { Writable } from 'node:stream';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { createLogger, serializeError } from './logger';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, stream };
}

describe('createLogger', () => {
  it('writes JSON lines with service and level label', () => {
    const { lines, stream } = capture();
    createLogger({ service: 'test-svc', level: 'info', destination: stream }).info({ n: 1 }, 'hello');
    const entry = JSON.parse(lines[0] ?? '{}');
    expect(entry).toMatchObject({ service: 'test-svc', level: 'info', msg: 'hello', n: 1 });
  });

  it('redacts credentials wherever they appear in a logged object', () => {
    const { lines, stream } = capture();
    const logger = createLogger({ service: 's', level: 'info', destination: stream });
    logger.info({
      req: { headers: { authorization: 'Bearer pk_live_abc', cookie: 'sid=1' } },
      upstream: { token: 'tok-123', clientSecret: 'cs-456' },
      password: 'hunter2',
    });
    const text = lines.join('');
    for (const secret of ['pk_live_abc', 'sid=1', 'tok-123', 'cs-456', 'hunter2']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('[redacted]');
  });

  it("keeps a failed Redis command's name but not its arguments, and redacts credentials in an error's text", () => {
    const { lines, stream } = capture();
    const logger = createLogger({ service: 's', level: 'info', destination: stream });
    // As ioredis rejects queued commands when Redis refuses the login: the HELLO command, password and all.
    const refused = Object.assign(new Error('WRONGPASS invalid username-password pair or user is disabled.'), {
      command: { name: 'hello', args: ['3', 'AUTH', 'portcullis_app', 'redis-pw-7f3a9c1e5b2d'] },
    });
    logger.warn({ err: refused, check: 'redis' }, 'readiness check failed');
    // A cause is folded into the message and stack, where credential-looking text is redacted.
    logger.warn({ err: new Error('connect failed', { cause: new Error('redis://portcullis_app:url-pw-93c1@10.0.0.5:6379/0 refused') }) }, 'x');
    const text = lines.join('');
    expect(text).not.toContain('redis-pw-7f3a9c1e5b2d');
    expect(text).not.toContain('url-pw-93c1');
    const [first, second] = lines.map((line) => JSON.parse(line) as { err: { message: string; command?: unknown }; check?: string });
    expect(first).toMatchObject({ check: 'redis', err: { command: { name: 'hello' }, message: expect.stringContaining('WRONGPASS') } });
    expect(second?.err.message).toContain('10.0.0.5:6379');
  });

  it('logs an error with a circular property, and one holding a command deep inside, without throwing or its arguments', () => {
    const { lines, stream } = capture();
    const logger = createLogger({ service: 's', level: 'info', destination: stream });
    // A client library's error that refers to its request, which refers back to itself.
    const request: Record<string, unknown> = { url: 'http://10.0.0.5/' };
    request['self'] = request;
    expect(() => logger.warn({ err: Object.assign(new Error('upstream failed'), { request }) }, 'x')).not.toThrow();
    let holder: Record<string, unknown> = { command: { name: 'hello', args: ['3', 'AUTH', 'portcullis_app', 'redis-pw-deep-1'] } };
    for (let i = 0; i < 12; i += 1) holder = { inner: holder };
    logger.warn({ err: Object.assign(new Error('WRONGPASS'), { context: holder }) }, 'y');
    // A property whose getter throws.
    const odd = new Error('odd');
    Object.defineProperty(odd, 'details', { enumerable: true, get: () => { throw new Error('no'); } });
    expect(() => logger.warn({ err: odd }, 'z')).not.toThrow();
    const [circular, deep, thrown] = lines.map((line) => JSON.parse(line) as { err: Record<string, unknown> });
    expect(circular?.err).toMatchObject({ message: 'upstream failed', request: { url: 'http://10.0.0.5/', self: '[Circular]' } });
    expect(lines.join('')).not.toContain('redis-pw-deep-1');
    expect(deep?.err['message']).toBe('WRONGPASS');
    expect(thrown?.err['message']).toBe('odd');
  });

  it('redacts what is logged as an error but is none (a string, an object) or an error of another realm (found by review)', () => {
    const { lines, stream } = capture();
    const logger = createLogger({ service: 's', level: 'info', destination: stream });
    logger.error({ err: 'could not connect to postgres://app:hunter2-secret@db:5432/portcullis' }, 'a string');
    logger.error({ err: { message: 'refused', url: 'redis://:s3cret-r3dis@cache:6379/0', headers: { authorization: 'Bearer abcdefghijklmnop0123' } } }, 'an object');
    const foreign = runInNewContext('new Error("dial redis://:f0reign-pw@cache:6379 failed")') as Error;
    expect(foreign instanceof Error).toBe(false);
    logger.error({ err: foreign }, 'another realm');
    expect(lines).toHaveLength(3);
    expect(lines.join('\n')).not.toMatch(/hunter2-secret|s3cret-r3dis|abcdefghijklmnop0123|f0reign-pw/);
    expect(JSON.parse(lines[0] ?? '{}').err).toContain('could not connect to postgres://app:');
    expect(JSON.parse(lines[1] ?? '{}').err).toMatchObject({ message: 'refused' });
    expect(JSON.parse(lines[2] ?? '{}').err).toMatchObject({ type: 'Error', message: expect.stringContaining('dial redis://:') });
    expect(JSON.parse(lines[2] ?? '{}').err.stack).toContain('dial redis');
  });

  it('never throws on a reason or an error whose reads throw (a strict proxy, a throwing getter; found by re-reviews)', () => {
    const strict = new Proxy({}, {
      get: (_target, key) => {
        throw new Error(`no setting ${String(key)}`);
      },
    });
    const tagged = {
      code: 'E1',
      get [Symbol.toStringTag](): string {
        throw new Error('tag');
      },
    };
    // Errors too: a proxy of one, a `message` getter that throws, a prototype read that throws (found by re-review).
    const strictError = new Proxy(new Error('dial redis://:hunter2@10.0.0.9'), {
      get: (_target, key) => {
        throw new Error(`no setting ${String(key)}`);
      },
    });
    const unreadableMessage = Object.defineProperty(new Error('x'), 'message', {
      get() {
        throw new Error('message');
      },
    });
    const unreadablePrototype = new Proxy({}, {
      getPrototypeOf() {
        throw new Error('prototype');
      },
    });
    for (const reason of [strict, tagged, strictError, unreadableMessage, unreadablePrototype]) {
      expect(() => serializeError(reason)).not.toThrow();
      const { lines, stream } = capture();
      const logger = createLogger({ service: 's', level: 'info', destination: stream });
      expect(() => logger.fatal({ err: reason }, 'exiting')).not.toThrow();
      expect(lines).toHaveLength(1);
    }
  });

  it('keeps the type, stack and fields of a frozen error, and of an error holding one (found by re-review)', () => {
    const frozen = serializeError(Object.freeze(Object.assign(new TypeError('boom'), { code: 'E_BOOM' }))) as Record<string, unknown>;
    expect({ type: frozen['type'], message: frozen['message'], code: frozen['code'], hasStack: typeof frozen['stack'] === 'string' }).toEqual({ type: 'TypeError', message: 'boom', code: 'E_BOOM', hasStack: true });
    const outer = serializeError(new AggregateError([Object.freeze(new Error('inner'))], 'outer')) as Record<string, unknown>;
    expect({ type: outer['type'], hasStack: typeof outer['stack'] === 'string' }).toEqual({ type: 'AggregateError', hasStack: true });
  });
});
