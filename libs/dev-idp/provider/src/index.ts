export { devIdpClientListSchema, devIdpClientSchema } from './lib/clients';
export type { DevIdpClient } from './lib/clients';
export { parseIdentities, readIdentitiesFile, UserDirectory } from './lib/identities';
export type { DevIdpIdentities, DevIdpUser } from './lib/identities';
export { startDevIdp } from './lib/server';
export type { DevIdpOptions, RunningDevIdp } from './lib/server';
