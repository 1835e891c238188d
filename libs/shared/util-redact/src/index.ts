export { compileRedactionPaths, InvalidRedactionPathError, namesSecret, REDACTED, redactSecrets } from './lib/redact';
export type { PathRedactor } from './lib/redact';
