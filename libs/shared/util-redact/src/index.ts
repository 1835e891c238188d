export { compileRedactionPaths, InvalidRedactionPathError, REDACTED, redactSecrets } from './lib/redact';
export type { PathRedactor } from './lib/redact';
