import { withoutTrailingSlashes } from '@portcullis/shared/util-config';

/**
 * Issuers are compared as providers write them, with or without a trailing slash. (A provider's issuer of 40,000
 * slashes and a letter held the portal for seconds while a regular expression trimmed them: found by a review.)
 */
export function normalizeIssuer(value: string): string {
  return withoutTrailingSlashes(value);
}

/**
 * Why no sign-in can succeed against this discovery document, or undefined. The provider signs its ID tokens with the
 * `issuer` its discovery document names, and the portal accepts only tokens of the configured issuer: when the two
 * differ (a typo, http behind a proxy that speaks https, another host name for the same provider), every sign-in is
 * refused after the person has typed their password, although the provider answers. The reason names no URL: anyone
 * may read it on /readyz.
 */
export function discoveryIssuerProblem(discovery: unknown, configuredIssuer: string): string | undefined {
  const named = typeof discovery === 'object' && discovery !== null ? (discovery as Record<string, unknown>)['issuer'] : undefined;
  if (typeof named !== 'string') return 'identity provider discovery names no issuer: no sign-in can succeed';
  if (normalizeIssuer(named) !== normalizeIssuer(configuredIssuer)) {
    return 'identity provider discovery names another issuer than PORTAL_OIDC_ISSUER: no sign-in can succeed';
  }
  return undefined;
}
