import { describe, expect, it } from 'vitest';
import { endSessionEndpointOf, providerSignOutUrl } from './sign-out';

describe('providerSignOutUrl (RP-initiated logout)', () => {
  const base = {
    endSessionEndpoint: 'https://idp.example.test/session/end?tenant=a',
    idToken: 'header.payload.signature',
    clientId: 'portal',
    postLogoutRedirectUri: 'https://portal.example.test/sign-in',
  };

  it('names the ID token, the client and where to come back, keeping the endpoint\'s own query', () => {
    const url = new URL(providerSignOutUrl(base) as string);
    expect(`${url.origin}${url.pathname}`).toBe('https://idp.example.test/session/end');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      tenant: 'a',
      id_token_hint: 'header.payload.signature',
      client_id: 'portal',
      post_logout_redirect_uri: 'https://portal.example.test/sign-in',
    });
  });

  it('is undefined without an endpoint (sign-out is then the portal\'s only)', () => {
    expect(providerSignOutUrl({ ...base, endSessionEndpoint: undefined })).toBeUndefined();
  });

  it('names the client alone when no ID token was kept (too large for the cookie and the URL)', () => {
    for (const idToken of [undefined, '']) {
      const url = new URL(providerSignOutUrl({ ...base, idToken }) as string);
      expect(Object.fromEntries(url.searchParams)).toEqual({ tenant: 'a', client_id: 'portal', post_logout_redirect_uri: 'https://portal.example.test/sign-in' });
    }
  });
});

describe('endSessionEndpointOf (discovery)', () => {
  it('takes an absolute https URL, and http only when allowed (a loopback issuer)', () => {
    expect(endSessionEndpointOf({ end_session_endpoint: 'https://idp.example.test/logout' }, false)).toBe('https://idp.example.test/logout');
    expect(endSessionEndpointOf({ end_session_endpoint: 'http://localhost:3400/session/end' }, true)).toBe('http://localhost:3400/session/end');
    expect(endSessionEndpointOf({ end_session_endpoint: 'http://idp.example.test/logout' }, false)).toBeUndefined();
  });

  it('counts anything else as no endpoint', () => {
    for (const discovery of [
      {},
      null,
      'text',
      { end_session_endpoint: 42 },
      { end_session_endpoint: '/session/end' },
      { end_session_endpoint: 'javascript:alert(1)' },
      { end_session_endpoint: 'data:text/html,hi' },
    ]) {
      expect(endSessionEndpointOf(discovery, true)).toBeUndefined();
    }
  });
});
