/**
 * Signing out of the portal also ends the session at the identity provider (OpenID Connect RP-Initiated Logout 1.0):
 * otherwise the next "Sign in with SSO" on the same browser would be let straight back in by the provider's own
 * session, without a password, which is not what a person who signed out expects (a shared computer).
 */

/** What the provider's discovery document says about signing out; `undefined` when it offers no way to. */
export type EndSessionEndpoint = string | undefined;

export interface ProviderSignOut {
  readonly endSessionEndpoint: EndSessionEndpoint;
  /**
   * The ID token the portal was given at sign-in (the provider's hint of whose session and which client); undefined
   * when it was too large to keep: the client id alone then names the portal.
   */
  readonly idToken: string | undefined;
  readonly clientId: string;
  /** Registered at the provider; it sends the browser back there afterwards. */
  readonly postLogoutRedirectUri: string;
}

/** The provider's end-session URL for this person, or undefined when the provider has none (sign-out is then local). */
export function providerSignOutUrl(options: ProviderSignOut): string | undefined {
  const { endSessionEndpoint, idToken } = options;
  if (endSessionEndpoint === undefined) return undefined;
  const url = new URL(endSessionEndpoint);
  if (idToken !== undefined && idToken !== '') url.searchParams.set('id_token_hint', idToken);
  url.searchParams.set('client_id', options.clientId);
  url.searchParams.set('post_logout_redirect_uri', options.postLogoutRedirectUri);
  return url.toString();
}

/**
 * `end_session_endpoint` from a discovery document, if it is an absolute http(s) URL (https unless `allowHttp`, which
 * the caller gives only when the issuer itself is plain http on this machine); anything else counts as none.
 */
export function endSessionEndpointOf(discovery: unknown, allowHttp: boolean): EndSessionEndpoint {
  const value = (discovery as { end_session_endpoint?: unknown } | null)?.end_session_endpoint;
  if (typeof value !== 'string') return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol === 'https:' || (allowHttp && url.protocol === 'http:')) return url.toString();
  return undefined;
}
