import { describe, expect, it } from 'vitest';
import { createLogger } from '@portcullis/shared/util-logger';
import { createAuthOptions } from './auth-options';
import { sameOriginRedirect } from './callback-url';

// next-auth hands the redirect callback `req.body.callbackUrl ?? req.query.callbackUrl`. The App Router handler parses a
// JSON body (`content-type: application/json`) with `req.json()`, so a visitor chooses the value's type: a number, an
// object or an array reach the callback, and `url.startsWith` throws — a 500 on every POST /api/auth route.
const options = createAuthOptions(
  {
    issuer: 'http://127.0.0.1:9',
    clientId: 'portal',
    clientSecret: 'secret',
    scopes: ['openid', 'email'],
    sessionSecret: 'x'.repeat(32),
    sessionMaxAgeSeconds: 3_600,
  },
  createLogger({ service: 'portal-test', level: 'fatal' }),
);

describe('the redirect callback with a callbackUrl from a JSON body', () => {
  for (const value of [1, { a: 1 }, ['/tenants'], true]) {
    it(`sends ${JSON.stringify(value)} to the portal instead of throwing`, async () => {
      await expect(Promise.resolve().then(() => options.callbacks?.redirect?.({ url: value as never, baseUrl: 'http://localhost:3000' }))).resolves.toBe(
        'http://localhost:3000/',
      );
      expect(() => sameOriginRedirect(value as never, 'http://localhost:3000')).not.toThrow();
    });
  }
});
