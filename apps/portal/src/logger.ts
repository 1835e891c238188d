import 'server-only';
import { createLogger, type Logger } from '@portcullis/shared/util-logger';
import { portalConfig } from './config';

let logger: Logger | undefined;

/** The portal's structured log (pino, one JSON line per event on stdout), as the other apps write theirs. */
export function portalLogger(): Logger {
  logger ??= createLogger({ service: 'portal', level: portalConfig().logLevel });
  return logger;
}
