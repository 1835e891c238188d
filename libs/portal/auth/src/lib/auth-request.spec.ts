import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { authBodyRefusal, authErrorCode, cleanAuthRoute, cleanCallbackCookie, GENERIC_AUTH_ERROR } from './auth-request';

const PORTAL = 'http://localhost:3000';
const route = (pathAndQuery: string) => {
  const url = new URL(pathAndQuery, PORTAL);
  return { url, segments: url.pathname.split('/').slice(3).map(decodeURIComponent) };
};

describe('authErrorCode', () => {
  it('keeps next-auth’s own codes', () => {
    for (const code of ['AccessDenied', 'OAuthCallback', 'OAuthSignin', 'SessionRequired', 'Configuration', 'Verification', 'Default']) {
      expect(authErrorCode(code)).toBe(code);
    }
  });

  it('turns anything a Location header cannot carry, or that is not a code, into the generic code', () => {
    // Before, `?error=%E2%9C%93` and `?error=%0d%0aX-Injected:%201` reached next-auth's redirect unencoded: a 500.
    for (const value of ['✓', '\r\nX-Injected: 1', 'Access Denied', 'AccessDenied\n', '', 'a'.repeat(65), '../x', 'x=y&z', '%0d%0a']) {
      expect(authErrorCode(value)).toBe(GENERIC_AUTH_ERROR);
    }
  });
});

describe('cleanAuthRoute', () => {
  it('leaves ordinary requests as they came', () => {
    for (const pathAndQuery of ['/api/auth/session', '/api/auth/csrf', '/api/auth/signin/oidc', '/api/auth/callback/oidc?code=c&state=s', `/api/auth/signin?callbackUrl=${encodeURIComponent(`${PORTAL}/tenants`)}`, '/api/auth/error?error=AccessDenied']) {
      expect(cleanAuthRoute(route(pathAndQuery), PORTAL)).toBeUndefined();
    }
  });

  it('turns a callbackUrl next-auth would refuse (a 500) into a URL of the portal', () => {
    const cases: Array<[string, string]> = [
      ['/api/auth/session?callbackUrl=foo', `${PORTAL}/`],
      ['/api/auth/csrf?callbackUrl=javascript:alert(1)', `${PORTAL}/`],
      ['/api/auth/providers?callbackUrl=%3A', `${PORTAL}/`],
      ['/api/auth/signin?callbackUrl=https://evil.example/', `${PORTAL}/`],
      ['/api/auth/signin?callbackUrl=/tenants%3Fpage%3D2', `${PORTAL}/tenants?page=2`],
      ['/api/auth/session?callbackUrl=/a&callbackUrl=foo', `${PORTAL}/a`],
    ];
    for (const [pathAndQuery, expected] of cases) {
      const clean = cleanAuthRoute(route(pathAndQuery), PORTAL);
      expect(clean?.url.searchParams.getAll('callbackUrl')).toEqual([expected]);
      expect(clean?.url.pathname).toBe(new URL(pathAndQuery, PORTAL).pathname);
    }
  });

  it('hands next-auth the error code cleaned, in the parameter only', () => {
    const cases: Array<[string, string | null]> = [
      ['/api/auth/error?error=%E2%9C%93', GENERIC_AUTH_ERROR],
      ['/api/auth/error?error=%0d%0aX-Injected:%201', GENERIC_AUTH_ERROR],
      ['/api/auth/error/%0d%0aX-Injected:%201', GENERIC_AUTH_ERROR],
      ['/api/auth/error/AccessDenied', 'AccessDenied'],
      ['/api/auth/error?error=OAuthCallback&error=%E2%9C%93', 'OAuthCallback'],
    ];
    for (const [pathAndQuery, expected] of cases) {
      const clean = cleanAuthRoute(route(pathAndQuery), PORTAL);
      expect(clean?.segments).toEqual(['error']);
      expect(clean?.url.searchParams.getAll('error')).toEqual([expected]);
    }
  });
});

describe('cleanCallbackCookie', () => {
  it('leaves headers without a callback cookie, or with one next-auth takes, as they came', () => {
    const own = encodeURIComponent(`${PORTAL}/tenants?x=1`);
    // Another site's URL is next-auth's to take (its redirect callback then sends the browser to the portal instead).
    for (const header of [null, '', 'a=b', `next-auth.csrf-token=abc; next-auth.callback-url=${own}`, `__Secure-next-auth.callback-url=${own}`, 'next-auth.callback-url=%2Ftenants', `next-auth.callback-url=${encodeURIComponent('https://evil.example/x')}`]) {
      expect(cleanCallbackCookie(header, PORTAL)).toBeUndefined();
    }
  });

  it('turns a callback cookie next-auth would refuse (a 500 on every /api/auth route) into a URL of the portal', () => {
    // Before, `next-auth.callback-url=foo` answered 500 on /api/auth/session for as long as the browser held it.
    for (const value of ['foo', '%3A', 'javascript%3Aalert(1)', '%E0%A4%A', 'data%3Atext%2Fhtml%2Cx']) {
      const cleaned = cleanCallbackCookie(`next-auth.session-token=t.o.k; next-auth.callback-url=${value}; theme=dark`, PORTAL);
      expect(cleaned).toBe(`next-auth.session-token=t.o.k; next-auth.callback-url=${encodeURIComponent(`${PORTAL}/`)}; theme=dark`);
    }
    expect(cleanCallbackCookie('__Secure-next-auth.callback-url=foo', 'https://portal.example')).toBe(`__Secure-next-auth.callback-url=${encodeURIComponent('https://portal.example/')}`);
  });

  it('hands next-auth no callback cookie it refuses, as Next parses the header and next-auth then judges it (found by review)', () => {
    // Next's own cookie parser (what next-auth's route handler and getServerSession read) and next-auth's own check.
    const require = createRequire(import.meta.url);
    // Not an export of next-auth's: read from its files (the version package-lock.json pins).
    const { assertConfig } = require(path.join(process.cwd(), 'node_modules/next-auth/core/lib/assert.js')) as { assertConfig: (params: unknown) => unknown };
    const { RequestCookies } = require('next/dist/compiled/@edge-runtime/cookies') as { RequestCookies: new (headers: Headers) => { getAll(): { name: string; value: string }[] } };
    const verdict = (header: string): string => {
      const seen = cleanCallbackCookie(header, PORTAL) ?? header;
      const cookies = Object.fromEntries(new RequestCookies(new Headers({ cookie: seen })).getAll().map((cookie) => [cookie.name, cookie.value]));
      const refused = assertConfig({
        options: { secret: 'x'.repeat(32), providers: [], useSecureCookies: false },
        req: { action: 'session', method: 'GET', query: { nextauth: ['session'] }, cookies, origin: PORTAL },
      });
      return refused instanceof Error ? `${refused.name}: ${refused.message}` : 'accepted';
    };
    // A raw 0xA0 byte reaches the app as U+00A0: String#trim dropped it, `new URL` does not.
    for (const value of ['foo', '\u00A0http://x', 'http://x\u00A0', '\u00A0/tenants', encodeURIComponent(`${PORTAL}/tenants`)]) {
      expect(verdict(`next-auth.session-token=t.o.k; next-auth.callback-url=${value}; theme=dark`), JSON.stringify(value)).toBe('accepted');
    }
    // A nameless cookie (no `=`, as a browser sends `document.cookie = 'next-auth.callback-url'`): Next reads `true`.
    for (const header of ['next-auth.session-token=t.o.k; next-auth.callback-url; theme=dark', 'next-auth.callback-url', 'theme=dark; next-auth.callback-url']) {
      expect(verdict(header), header).toBe('accepted');
    }
  });
});

describe('authBodyRefusal', () => {
  it('lets through what next-auth\'s own client and an IdP\'s form_post send, and requests without a body', () => {
    for (const type of ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded;charset=UTF-8', 'Application/X-WWW-Form-Urlencoded', null]) {
      expect(authBodyRefusal('POST', type)).toBeUndefined();
    }
    for (const method of ['GET', 'HEAD']) expect(authBodyRefusal(method, 'application/json')).toBeUndefined();
  });

  it('refuses with 415 any other body type, JSON above all (next-auth parses it unguarded, and keeps its value types)', () => {
    for (const type of ['application/json', 'application/json; charset=utf-8', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded; x=application/json', 'application/x-www-form-urlencodedx', '']) {
      expect({ type, refusal: authBodyRefusal('POST', type) }).toEqual({ type, refusal: { status: 415, error: 'unsupported_media_type', message: expect.stringMatching(/x-www-form-urlencoded/) } });
    }
  });
});
