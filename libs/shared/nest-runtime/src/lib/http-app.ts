import type { DynamicModule, INestApplication, Type } from '@nestjs/common';
import { listenNaming } from '@portcullis/shared/util-config';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppError } from '@portcullis/shared/util-errors';
import { inexactNumberIn } from '@portcullis/shared/util-json';
import type { Logger } from '@portcullis/shared/util-logger';
import { LogController, type FastifyBodyParser, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { PinoNestLogger } from './pino-nest-logger';
import { sendRouterProblem } from './problem-details';
import { ProblemDetailsFilter } from './problem-details.filter';

export interface HttpAppOptions {
  readonly logger: Logger;
  /** Largest accepted request body; larger bodies get 413 before any handler runs. */
  readonly bodyLimitBytes: number;
  /**
   * Trust X-Forwarded-* from proxies in front (only when they are really there): `true` trusts every hop, a number
   * the nearest N, a list those addresses/CIDRs.
   */
  readonly trustProxy?: boolean | number | readonly string[];
  /**
   * Longest a client may take to send a whole request, headers and body (Node's `requestTimeout`; Fastify turns it
   * off by default). Default 30 s: a client trickling a body cannot hold a socket and its buffered bytes for ever.
   * Responses are not bounded by it (SSE streams, long calls).
   */
  readonly requestTimeoutMs?: number;
  /**
   * Fastify's two info lines per request ("incoming request", "request completed"; default true). The gateway turns
   * them off: its MCP routes log what goes wrong themselves, and a line pair per legacy-transport message, with the
   * session id in its URL, is noise at best. Fastify's error lines (a request that errored, a 5xx of its default
   * error handler, a stream error) stay either way.
   */
  readonly requestLogging?: boolean;
}

/** Fastify's request log without its two info lines per request; its error lines are kept. */
class ErrorsOnlyRequestLog extends LogController {
  override incomingRequest(): void {
    // Not logged: one line per request.
  }

  override requestCompleted(...args: Parameters<LogController['requestCompleted']>): void {
    if (args[0]) super.requestCompleted(...args);
  }
}

/** Default of `HttpAppOptions.requestTimeoutMs`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Fastify's form of the setting: a number of hops as proxy-addr's hop predicate, a list as an array. */
function fastifyTrustProxy(trust: boolean | number | readonly string[]): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof trust === 'number') return (_address, hop) => hop < trust;
  return typeof trust === 'boolean' ? trust : [...trust];
}

/**
 * The JSON body parser: the one Nest registers for `application/json` (Fastify's own, with its `onProtoPoisoning` and
 * `onConstructorPoisoning` settings, over the body read as UTF-8 whatever its charset says), and one check more. A
 * body with a number `JSON.parse` would change (an integer past 2^53, `1e-400`, `1e400`; see
 * `@portcullis/shared/util-json`) is refused 400 VALIDATION_FAILED naming the number: parsed, it would be stored or
 * passed on as a value the caller never wrote (an approver's edited arguments, say), and nobody could tell afterwards.
 * The parser's own errors (empty body, bad JSON, a poisoned prototype) are Fastify's, as before.
 */
function exactJsonBodyParser(fastify: FastifyInstance): FastifyBodyParser<Buffer> {
  const { onProtoPoisoning, onConstructorPoisoning } = fastify.initialConfig;
  const parse = fastify.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'error');
  return (request, body, done) => {
    const text = body.toString('utf8');
    parse(request, text, (error, parsed) => {
      if (error) {
        done(error, undefined);
        return;
      }
      const inexact = inexactNumberIn(text);
      if (inexact === undefined) done(null, parsed);
      else done(new AppError('VALIDATION_FAILED', `The request body is not valid: ${inexact}.`), undefined);
    });
  };
}

/**
 * A Nest application on Fastify with the house rules: pino request logs, request ids, problem+json for
 * every error (Fastify's own parse errors and unknown routes reach the same filter, and what its router refuses before
 * any route is answered alike), JSON bodies refused when their parse would change a number. Pair it with
 * `installGracefulShutdown`.
 */
export async function createHttpApp(
  module: Type<unknown> | DynamicModule,
  options: HttpAppOptions): Promise<NestFastifyApplication> {
  const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const adapter = new FastifyAdapter({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    trustProxy: fastifyTrustProxy(options.trustProxy ?? false),
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    ...(options.requestLogging === false ? { logController: new ErrorsOnlyRequestLog() } : {}),
    // What the router refuses before any route (a malformed escape, an over-long parameter) never reaches Nest's
    // filter: Nest's own handler (which this replaces) sent Fastify's JSON, echoing the path. Problem+json instead.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => void sendRouterProblem(error, request, reply, options.logger),
    requestTimeout,
    // Also given to Node's server at creation: Fastify sets `requestTimeout` only afterwards, when Node has already
    // derived its headers timeout from the default (60 s), and a trickling client was then cut off only after that.
    // Node checks its connections every 30 s by default (a socket lived up to that much past its timeout): here at a
    // quarter of the timeout, at most every 5 s. Node derives the headers timeout from this one (the lesser of it and
    // 60 s), and from 0 would take 0: without a request timeout, headers still have Node's 60 s.
    http: {
      requestTimeout,
      headersTimeout: requestTimeout > 0 ? Math.min(requestTimeout, 60_000) : 60_000,
      connectionsCheckingInterval: requestTimeout > 0 ? Math.min(5_000, Math.max(50, Math.floor(requestTimeout / 4))) : 30_000,
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(module, adapter, {
    logger: new PinoNestLogger(options.logger),
    bufferLogs: false,
  });
  app.useGlobalFilters(new ProblemDetailsFilter(options.logger));
  // In place of the one Nest would register at init (only `application/json`: `+json` types stay 415), same limit.
  app.useBodyParser('application/json', { bodyLimit: options.bodyLimitBytes }, exactJsonBodyParser(app.getHttpAdapter().getInstance()));
  return app;
}

/**
 * On SIGTERM or SIGINT: stop taking work, run `close` (Nest's `app.close()` runs every shutdown hook:
 * HTTP server, queues, Redis, Postgres), then exit 0. If that takes longer than `graceMs`, exit 1 so a
 * stuck connection cannot keep a replica alive. A second signal while closing is ignored.
 */
export function installGracefulShutdown(options: {
  logger: Logger;
  graceMs: number;
  close: () => Promise<void>;
}): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    options.logger.info({ signal }, 'shutting down');
    setTimeout(() => {
      options.logger.error({ graceMs: options.graceMs }, 'graceful shutdown took too long; exiting');
      process.exit(1);
    }, options.graceMs).unref();
    options
      .close()
      .then(() => {
        options.logger.info('stopped');
        process.exit(0);
      })
      .catch((error: unknown) => {
        options.logger.error({ err: error }, 'error during shutdown');
        process.exit(1);
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * `app.listen` on `host:port`, failing with one sentence that names the variables that chose them (`settings`, e.g.
 * `GATEWAY_HOST/GATEWAY_PORT`) and Node's code (EADDRINUSE, EACCES, ENOTFOUND) rather than Node's bare error.
 */
export async function listenOrExplain(app: NestFastifyApplication, host: string, port: number, settings: string): Promise<void> {
  await listenNaming(settings, host, port, () => app.listen({ host, port }));
}

/** What `exitOnUncaught` needs of the process: its events and its exit. */
export type CrashTarget = Pick<NodeJS.EventEmitter, 'on'> & { exit(code: number): void; exitCode?: number | string | undefined };

/**
 * A rejection no one handles, or an exception no one catches, still ends the process, as Node's default does; but it
 * is said through the logger first. Node's default printed the error and its stack raw on stderr: past the redaction of
 * secrets the logger applies (an error's message may carry a URL with its password or a header's value), and as no
 * JSON line a log collector reads, so the reason a replica went away was found nowhere it looked. The exit waits
 * 100 ms for the line to be written (as a failed boot does); whatever else is pending then is not awaited.
 */
export function exitOnUncaught(logger: Logger, target: CrashTarget = process): void {
  let ending = false;
  const end = (kind: string, error: unknown): void => {
    if (ending) return;
    ending = true;
    // The exit is settled first: a logger that throws (a reason no serializer can read) must not leave the process up.
    target.exitCode = 1;
    setTimeout(() => target.exit(1), 100).unref();
    try {
      logger.fatal({ err: error }, `${kind}: exiting`);
    } catch {
      // Nothing more to say it with.
    }
  };
  target.on('unhandledRejection', (reason: unknown) => end('a promise was rejected and nothing handled it', reason));
  target.on('uncaughtException', (error: unknown) => end('an exception was thrown and nothing caught it', error));
}

/**
 * Logs and exits when boot fails (a dependency refused, a port was taken...): no half-started app. From here on an
 * unhandled rejection or an uncaught exception is logged before the process ends (`exitOnUncaught`).
 */
export async function runOrExit(logger: Logger, boot: () => Promise<INestApplication | unknown>): Promise<void> {
  exitOnUncaught(logger);
  try {
    await boot();
  } catch (error) {
    logger.fatal({ err: error }, 'failed to start');
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
  }
}
