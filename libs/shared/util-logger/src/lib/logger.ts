import { redactSecrets } from '@portcullis/shared/util-redact';
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths whose values never reach a log line. Pino redacts them before serialisation, so a secret that
 * slips into a logged object is replaced, not written.
 */
export const REDACTED_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.secret',
  '*.clientSecret',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  '*.apiKey',
  '*.authorization',
  'password',
  'secret',
  'token',
  'apiKey',
];

export interface CreateLoggerOptions {
  readonly service: string;
  readonly level: string;
  /** Destination stream; defaults to stdout. */
  readonly destination?: pino.DestinationStream;
}

/** What is logged of a value that cannot be read at all. */
const NOT_SERIALISABLE = '[not serialisable]';

/**
 * A logged error, as pino's own serializer copies it (message, stack, every enumerable property, causes), with what a
 * client library attaches to its errors made safe: ioredis puts the failed command on the error, arguments and all,
 * and when Redis refuses the credentials every queued command fails with the HELLO/AUTH one (`args: [3, 'AUTH', user,
 * password]`). Commands keep their name only; credential-looking text (a URL's password, a bearer token) and values
 * under credential-named keys are redacted anywhere in it. What is logged as an error but is none (a promise rejected
 * with a string or an object, an abort reason) is copied and redacted the same way; an error of another realm (a VM
 * context, a worker) is one too, though `instanceof Error` says no (found by a review of the crash log).
 */
export function serializeError(error: unknown): unknown {
  // Never throws: pino does not catch a serializer, and a log call that throws loses the line (a crash then went
  // unrecorded). Any read may throw on a proxy or a getter, `instanceof` and the tag read included (found by reviews).
  try {
    if (!(error instanceof Error)) {
      if (Object.prototype.toString.call(error) === '[object Error]') return serializeForeignError(error as Error);
      return redactSecrets(plainCopy(error, 0, new WeakSet()));
    }
  } catch {
    return NOT_SERIALISABLE;
  }
  try {
    return redactSecrets(plainCopy(pino.stdSerializers.err(error), 0, new WeakSet()));
  } catch {
    // pino's serializer writes a mark on the error (and on those it holds): a frozen one refuses it. Read only, then:
    // its type, message, stack and own fields (found by re-review). Past that (a getter that throws), the message alone.
    const readOnly = serializeForeignError(error);
    if (readOnly !== NOT_SERIALISABLE) return readOnly;
    try {
      return { type: 'Error', message: redactSecrets(String(error.message)) };
    } catch {
      return { type: 'Error', message: NOT_SERIALISABLE };
    }
  }
}

/**
 * An error read without writing to it (one of another realm, a frozen one): its type, message and stack (not
 * enumerable, so no plain copy has them) and its own fields, redacted.
 */
function serializeForeignError(error: Error): unknown {
  try {
    const copy = plainCopy({ ...error }, 0, new WeakSet()) as Record<string, unknown>;
    return redactSecrets({ ...copy, type: String(error.name), message: String(error.message), stack: String(error.stack) });
  } catch {
    return NOT_SERIALISABLE;
  }
}

/** How deep a logged error's properties are copied; past it, `[too deep]` (no walk may recurse without end). */
const MAX_ERROR_DEPTH = 8;

/** A plain copy, a command reduced to its name, cycles cut (`[Circular]`) and depth bounded (`[too deep]`). */
function plainCopy(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth > MAX_ERROR_DEPTH) return '[too deep]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((item) => plainCopy(item, depth + 1, seen));
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (key === 'command' && item !== null && typeof item === 'object') {
      const name = (item as { name?: unknown }).name;
      copy[key] = typeof name === 'string' ? { name } : '[redacted]';
    } else {
      copy[key] = plainCopy(item, depth + 1, seen);
    }
  }
  return copy;
}

export function createLogger(options: CreateLoggerOptions): Logger {
  const config: LoggerOptions = {
    level: options.level,
    base: { service: options.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
    serializers: { err: serializeError },
    formatters: { level: (label) => ({ level: label }) },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}
