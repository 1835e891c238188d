import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger';

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
});
