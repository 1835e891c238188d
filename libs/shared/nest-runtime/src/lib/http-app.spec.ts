import { Body, Controller, Get, Module, Post } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppError } from '@portcullis/shared/util-errors';
import { createLogger } from '@portcullis/shared/util-logger';
import { EventEmitter } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HealthModule } from './health.module';
import { createHttpApp, DEFAULT_REQUEST_TIMEOUT_MS, exitOnUncaught } from './http-app';

const lines: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    lines.push(chunk.toString('utf8'));
    done();
  },
});
const logger = createLogger({ service: 'spec', level: 'info', destination: sink });

@Controller('things')
class ThingsController {
  @Post()
  create(@Body() body: unknown) {
    return z.object({ name: z.string().min(1) }).parse(body);
  }
  @Post('echo')
  echo(@Body() body: unknown) {
    return body;
  }
  @Get('conflict')
  conflict() {
    throw new AppError('CONFLICT', 'That thing already exists.');
  }
  @Get('boom')
  boom() {
    throw new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2');
  }
}

let dependencyUp = true;

@Module({
  imports: [
    HealthModule.forRoot({
      logger,
      useFactory: () => [
        {
          name: 'postgres',
          check: async () => {
            if (!dependencyUp) throw new Error('connection refused at 10.0.0.7');
          },
        },
      ],
    }),
  ],
  controllers: [ThingsController],
})
class SpecModule {}

describe('createHttpApp', () => {
  let app: NestFastifyApplication;

  beforeAll(async () => {
    app = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024 });
    // A route registered on Fastify itself, as the gateway registers its MCP routes.
    app.getHttpAdapter().getInstance().get('/plain/:id', async () => ({ ok: true }));
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  });
  afterAll(async () => {
    await app.close();
  });

  const inject = (options: object) => app.getHttpAdapter().getInstance().inject(options as never);

  it('answers liveness and readiness, and 503 with the failing dependency named (not its address)', async () => {
    expect((await inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    dependencyUp = false;
    const down = await inject({ method: 'GET', url: '/readyz' });
    expect(down.statusCode).toBe(503);
    expect(down.json()).toEqual({ status: 'unavailable', checks: { postgres: 'unavailable' } });
    expect(down.body).not.toContain('10.0.0.7');
    dependencyUp = true;
    expect((await inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('turns validation errors into 400 problem+json listing the fields', async () => {
    const res = await inject({ method: 'POST', url: '/things', payload: { name: 42 } });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', errors: [{ path: 'name' }] });
    expect(res.json().traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('answers malformed JSON, oversized bodies and wrong media types with 4xx, never 500', async () => {
    const badJson = await inject({
      method: 'POST',
      url: '/things',
      headers: { 'content-type': 'application/json' },
      payload: '{"name":',
    });
    expect(badJson.statusCode).toBe(400);
    expect(badJson.json()).toMatchObject({ code: 'BAD_REQUEST' });
    expect(badJson.json().detail).toMatch(/not valid JSON/);

    const huge = await inject({ method: 'POST', url: '/things', payload: { name: 'x'.repeat(5_000) } });
    expect(huge.statusCode).toBe(413);
    expect(huge.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });

    const wrongType = await inject({
      method: 'POST',
      url: '/things',
      headers: { 'content-type': 'application/x-thing' },
      payload: 'x',
    });
    expect(wrongType.statusCode).toBe(415);
    expect(wrongType.json()).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
  });

  it('refuses a JSON body with a number its parse would change, keeps every other, and answers bad JSON as before', async () => {
    const post = (payload: string, contentType = 'application/json') =>
      inject({ method: 'POST', url: '/things/echo', headers: { 'content-type': contentType }, payload });
    for (const [payload, number] of [
      ['{"account":9007199254740993}', '9007199254740993'],
      ['{"a":{"b":[1,1e-400]}}', '1e-400'],
      ['[1e400]', '1e400'],
    ] as const) {
      const refused = await post(payload);
      expect(refused.statusCode, payload).toBe(400);
      expect(refused.headers['content-type']).toContain('application/problem+json');
      expect(refused.json(), payload).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', detail: expect.stringContaining(`number ${number} `) });
    }
    const kept = await post('{"account":9007199254740991,"ratio":0.5,"big":1e300,"zero":0.0,"text":"9007199254740993"}', 'application/json; charset=utf-8');
    expect(kept.statusCode).toBe(201);
    expect(kept.json()).toEqual({ account: 9007199254740991, ratio: 0.5, big: 1e300, zero: 0, text: '9007199254740993' });
    // The parser's own refusals are Fastify's, as they were: bad JSON (even with such a number in it), an empty body, a
    // poisoned prototype; a +json type is still not accepted.
    for (const [payload, detail] of [
      ['{"account":9007199254740993', /not valid JSON/],
      ['', /cannot be empty/],
      ['{"__proto__":{"admin":true}}', /not valid JSON/],
      ['{"constructor":{"prototype":{"admin":true}}}', /not valid JSON/],
    ] as const) {
      const res = await post(payload);
      expect(res.statusCode, payload).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json(), payload).toMatchObject({ status: 400, code: 'BAD_REQUEST', detail: expect.stringMatching(detail) });
    }
    expect((await post('{"account":1}', 'application/merge-patch+json')).statusCode).toBe(415);
  });

  it('maps AppErrors by code, unknown routes to 404, and keeps a traceparent trace id', async () => {
    const res = await inject({
      method: 'GET',
      url: '/things/conflict',
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ detail: 'That thing already exists.', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
    expect((await inject({ method: 'GET', url: '/nowhere' })).json()).toMatchObject({ status: 404, code: 'NOT_FOUND' });
  });

  it('answers what the router refuses before any route as problem+json, without echoing the path', async () => {
    for (const url of ['/things/%zz', '/plain/%zz', '/%E0%A4%A']) {
      const res = await inject({ method: 'GET', url, headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } });
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ status: 400, code: 'BAD_REQUEST', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
      expect(res.json()).not.toHaveProperty('instance');
      expect(res.body).not.toMatch(/FST_ERR|%zz|%A4/);
    }
    // A parameter over the router's 100 characters: no id is that long, so no such resource (as a malformed id is).
    const long = await inject({ method: 'GET', url: `/plain/${'x'.repeat(101)}` });
    expect(long.statusCode).toBe(404);
    expect(long.headers['content-type']).toContain('application/problem+json');
    expect(long.json()).toMatchObject({ status: 404, code: 'NOT_FOUND', traceId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(long.body).not.toMatch(/FST_ERR|xxxx/);
    expect((await inject({ method: 'GET', url: `/plain/${'x'.repeat(100)}` })).json()).toEqual({ ok: true });
  });

  it('hides unexpected errors behind a 500 with an error id, and logs the original', async () => {
    const res = await inject({ method: 'GET', url: '/things/boom' });
    expect(res.statusCode).toBe(500);
    const body = res.json();
    expect(body.code).toBe('INTERNAL');
    expect(res.body).not.toContain('hunter2');
    expect(res.body).not.toContain('10.0.0.7');
    expect(lines.join('')).toContain(body.errorId);
  });
});

describe('createHttpApp server limits', () => {
  it('bounds the time a client may take to send a request (Fastify leaves it unbounded by default)', async () => {
    const bounded = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024 });
    const custom = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024, requestTimeoutMs: 5_000 });
    try {
      await Promise.all([bounded.init(), custom.init()]);
      expect((bounded.getHttpServer() as { requestTimeout: number }).requestTimeout).toBe(DEFAULT_REQUEST_TIMEOUT_MS);
      expect((custom.getHttpServer() as { requestTimeout: number }).requestTimeout).toBe(5_000);
    } finally {
      await Promise.all([bounded.close(), custom.close()]);
    }
  });

  it('writes Fastify\'s request log lines unless told not to', async () => {
    const quiet = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024, requestLogging: false });
    const chatty = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024 });
    try {
      await Promise.all([quiet.init(), chatty.init()]);
      const completed = () => lines.filter((line) => line.includes('request completed')).length;
      const before = completed();
      await quiet.getHttpAdapter().getInstance().inject({ method: 'GET', url: '/things/conflict' });
      expect(completed()).toBe(before);
      await chatty.getHttpAdapter().getInstance().inject({ method: 'GET', url: '/things/conflict' });
      expect(completed()).toBe(before + 1);
    } finally {
      await Promise.all([quiet.close(), chatty.close()]);
    }
  });

  it('keeps Fastify\'s error line for a request that errored when its info lines are off', async () => {
    const quiet = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024, requestLogging: false });
    try {
      // A failing onResponse hook is how Fastify reports an errored request to its log controller.
      quiet.getHttpAdapter().getInstance().addHook('onResponse', async (request) => {
        if (request.url === '/things/conflict') throw new Error('response hook failed');
      });
      await quiet.init();
      const errored = () => lines.filter((line) => line.includes('request errored'));
      const infoLines = () => lines.filter((line) => line.includes('incoming request') || line.includes('request completed')).length;
      const before = errored().length;
      const infoBefore = infoLines();
      await quiet.getHttpAdapter().getInstance().inject({ method: 'GET', url: '/healthz' });
      expect(errored()).toHaveLength(before);
      await quiet.getHttpAdapter().getInstance().inject({ method: 'GET', url: '/things/conflict' });
      await new Promise((resolve) => setImmediate(resolve));
      expect(errored()).toHaveLength(before + 1);
      expect(errored().at(-1)).toContain('response hook failed');
      expect(infoLines()).toBe(infoBefore);
    } finally {
      await quiet.close();
    }
  });

  it('answers 408 and closes the socket of a client that stops sending its body, about when the timeout says', async () => {
    const app = await createHttpApp(SpecModule, { logger, bodyLimitBytes: 1_024, requestTimeoutMs: 400 });
    try {
      await app.listen(0, '127.0.0.1');
      const { port } = (app.getHttpServer() as { address(): AddressInfo }).address();
      const socket = connect(port, '127.0.0.1');
      const started = Date.now();
      const answer = await new Promise<{ text: string; afterMs: number }>((resolve, reject) => {
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
        socket.on('close', () => resolve({ text, afterMs: Date.now() - started }));
        socket.on('error', reject);
        // Headers and a fifth of the promised body, then nothing.
        socket.write('POST /things HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":"x"');
        setTimeout(() => reject(new Error('the server kept the socket open')), 10_000).unref();
      });
      expect(answer.text).toMatch(/^HTTP\/1\.1 408 /);
      // Node checks at a quarter of the timeout here, so the socket goes within about 1.25× of it (generous bound).
      expect(answer.afterMs).toBeGreaterThanOrEqual(350);
      expect(answer.afterMs).toBeLessThan(5_000);
    } finally {
      await app.close();
    }
  });
});

describe('exitOnUncaught', () => {
  /** A logger writing to `said`, and a process stand-in recording its exits, with the handlers installed on it. */
  const crashing = () => {
    const said: string[] = [];
    const crashLogger = createLogger({
      service: 'spec',
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          said.push(chunk.toString('utf8'));
          done();
        },
      }),
    });
    const target = Object.assign(new EventEmitter(), {
      exits: [] as number[],
      exitCode: undefined as number | string | undefined,
      exit(code: number) {
        this.exits.push(code);
      },
    });
    exitOnUncaught(crashLogger, target);
    return { said, target };
  };

  it('says an unhandled rejection through the logger, secrets redacted, then exits with 1 (once, however many follow)', async () => {
    const { said, target } = crashing();
    target.emit('unhandledRejection', new Error('connect refused to redis://:hunter2-secret@10.0.0.9:6379'));
    target.emit('uncaughtException', new Error('a second one'));
    expect(target.exitCode).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(target.exits).toEqual([1]);
    expect(said).toHaveLength(1);
    const line = JSON.parse(said[0] ?? '{}') as { level: string; msg: string; err?: { message?: string } };
    expect(line.level).toBe('fatal');
    expect(line.msg).toBe('a promise was rejected and nothing handled it: exiting');
    expect(line.err?.message).toContain('connect refused');
    expect(said[0]).not.toContain('hunter2-secret');
  });

  it('says an uncaught exception the same way, and a rejection with a string (no Error) redacted too', async () => {
    const thrown = crashing();
    thrown.target.emit('uncaughtException', new TypeError('boom'));
    const rejected = crashing();
    rejected.target.emit('unhandledRejection', 'could not connect to postgres://app:hunter2-secret@db:5432/portcullis');
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect([thrown.target.exits, rejected.target.exits]).toEqual([[1], [1]]);
    expect(JSON.parse(thrown.said[0] ?? '{}')).toMatchObject({ level: 'fatal', msg: 'an exception was thrown and nothing caught it: exiting', err: { message: 'boom' } });
    expect(rejected.said[0]).toContain('could not connect to postgres://app:');
    expect(rejected.said[0]).not.toContain('hunter2-secret');
  });

  it('still ends the process with 1 when the reason cannot even be read (a strict proxy; found by re-review)', async () => {
    const { said, target } = crashing();
    const strict = new Proxy({}, {
      get: (_target, key) => {
        throw new Error(`no setting ${String(key)}`);
      },
    });
    // As Node does: what an 'unhandledRejection' listener throws is an uncaught exception.
    try {
      target.emit('unhandledRejection', strict);
    } catch (thrown) {
      target.emit('uncaughtException', thrown);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(target.exitCode).toBe(1);
    expect(target.exits).toEqual([1]);
    expect(said).toHaveLength(1);
  });
});
