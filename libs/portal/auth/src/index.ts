export { createAuthOptions, OIDC_PROVIDER_ID, SIGN_IN_PATH } from './lib/auth-options';
export type { PortalAuthSettings } from './lib/auth-options';
export { toPortalUser } from './lib/session';
export type { PortalSession, PortalToken, PortalUser } from './lib/session';
export { safeCallbackPath } from './lib/callback-url';
export { portalEnvSchema } from './lib/portal-config';
export type { PortalConfig } from './lib/portal-config';
export { endSessionEndpointOf, providerSignOutUrl } from './lib/sign-out';
export type { EndSessionEndpoint, ProviderSignOut } from './lib/sign-out';
