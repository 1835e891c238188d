export { compileRedactionPaths, InvalidRedactionPathError, namesQuerySecret, namesSecret, needsNoRedaction, REDACTED, redactSecrets, removedTexts, storableJson, storableText, withoutTexts, withoutTextsIn } from './lib/redact';
export type { PathRedactor } from './lib/redact';
export { credentialArgIndex, credentialArgs, credentialMaskOf, maskListedItem, maskValue, SecretMask, secretMaskOf } from './lib/secret-mask';
export type { UpstreamSecrets } from './lib/secret-mask';
