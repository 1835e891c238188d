export { keyringSpecField } from './lib/keyring-config';
export { open, openJson, parseKeyring, seal, sealJson, SecretBoxError, upstreamSecretContext } from './lib/secret-box';
export type { Keyring, SealedSecret } from './lib/secret-box';
