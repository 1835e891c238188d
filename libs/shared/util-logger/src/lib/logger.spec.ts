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
});
