export { compileRedactionPaths, InvalidRedactionPathError, namesSecret, REDACTED, redactSecrets, storableText } from './lib/redact';
export type { PathRedactor } from './lib/redact';
