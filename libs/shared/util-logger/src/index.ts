export { createLogger, REDACTED_PATHS } from './lib/logger';
export type { CreateLoggerOptions, Logger } from './lib/logger';
