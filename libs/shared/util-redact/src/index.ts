export { compileRedactionPaths, InvalidRedactionPathError, namesSecret, REDACTED, redactSecrets, storableJson, storableText } from './lib/redact';
export type { PathRedactor } from './lib/redact';
