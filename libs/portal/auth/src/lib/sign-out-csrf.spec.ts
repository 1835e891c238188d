import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nextAuthCsrfCookieName, nextAuthFormField, readBodyAtMost, signOutCsrfVerified } from './sign-out-csrf';

const SECRET = 'portal-session-secret';
const cookieFor = (token: string, secret = SECRET) => `${token}|${createHash('sha256').update(`${token}${secret}`).digest('hex')}`;
const FORM = 'application/x-www-form-urlencoded';

describe('signOutCsrfVerified (next-auth\'s CSRF check, made before a sign-out is recorded)', () => {
  it('passes a form token equal to the token of a cookie the portal set', () => {
    expect(signOutCsrfVerified(cookieFor('abc123'), 'abc123', SECRET)).toBe(true);
  });

  it('refuses a missing or different form token, and a cookie whose hash another secret made', () => {
    expect(signOutCsrfVerified(cookieFor('abc123'), undefined, SECRET)).toBe(false);
    expect(signOutCsrfVerified(cookieFor('abc123'), '', SECRET)).toBe(false);
    expect(signOutCsrfVerified(cookieFor('abc123'), 'abc124', SECRET)).toBe(false);
    expect(signOutCsrfVerified(cookieFor('abc123', 'another secret'), 'abc123', SECRET)).toBe(false);
  });

  it('refuses malformed cookies: no hash, a hash that is not hex or too short, an empty one, none at all', () => {
    expect(signOutCsrfVerified('abc123', 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified('abc123|zz', 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified(cookieFor('abc123').slice(0, -2), 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified('', '', SECRET)).toBe(false);
    expect(signOutCsrfVerified(undefined, 'abc123', SECRET)).toBe(false);
  });

  // next-auth compares the hex strings: `Buffer.from(hash, 'hex')` stops at the first non-hex character and reads
  // upper case, so the portal recorded sign-outs next-auth then refused.
  it('refuses a hash next-auth refuses: trailing characters, upper case', () => {
    expect(signOutCsrfVerified(`${cookieFor('abc123')}zz`, 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified(`${cookieFor('abc123')}0`, 'abc123', SECRET)).toBe(false);
    const [token, hash = ''] = cookieFor('abc123').split('|');
    expect(signOutCsrfVerified(`${token}|${hash.toUpperCase()}`, 'abc123', SECRET)).toBe(false);
  });

  // next-auth takes the first two `|` parts: a third is ignored, and a token may be empty. Refused here before, they
  // were sign-outs next-auth made that the portal did not record. (Only the portal, holding the secret, can make either.)
  it('passes what next-auth passes: a further `|` part, an empty token matching an empty form token', () => {
    expect(signOutCsrfVerified(`${cookieFor('abc123')}|x`, 'abc123', SECRET)).toBe(true);
    expect(signOutCsrfVerified(cookieFor(''), '', SECRET)).toBe(true);
  });
});

describe('nextAuthCsrfCookieName (the one CSRF cookie next-auth reads)', () => {
  it('is the __Host- name for an https URL, the plain name for an http URL', () => {
    expect(nextAuthCsrfCookieName({}, 'https://portal.acme.example')).toBe('__Host-next-auth.csrf-token');
    expect(nextAuthCsrfCookieName({}, 'http://localhost:3000')).toBe('next-auth.csrf-token');
  });

  it('follows the options next-auth is given: useSecureCookies, then a cookie named in them', () => {
    expect(nextAuthCsrfCookieName({ useSecureCookies: false }, 'https://portal.acme.example')).toBe('next-auth.csrf-token');
    expect(nextAuthCsrfCookieName({ useSecureCookies: true }, 'http://localhost:3000')).toBe('__Host-next-auth.csrf-token');
    const cookies = { csrfToken: { name: 'portal.csrf', options: {} } };
    expect(nextAuthCsrfCookieName({ cookies }, 'https://portal.acme.example')).toBe('portal.csrf');
  });

  it('takes a URL without a scheme as https, as next-auth does', () => {
    expect(nextAuthCsrfCookieName({}, 'portal.acme.example')).toBe('__Host-next-auth.csrf-token');
  });
});

describe('nextAuthFormField (a form field as next-auth reads the body)', () => {
  it('reads a form field; of a repeated one, the last', () => {
    expect(nextAuthFormField(FORM, 'csrfToken=abc&callbackUrl=%2F', 'csrfToken')).toBe('abc');
    expect(nextAuthFormField(`${FORM}; charset=utf-8`, 'csrfToken=a+b%21', 'csrfToken')).toBe('a b!');
    expect(nextAuthFormField(FORM, 'csrfToken=good&csrfToken=bad', 'csrfToken')).toBe('bad');
    expect(nextAuthFormField(FORM, 'csrfToken=bad&csrfToken=good', 'csrfToken')).toBe('good');
  });

  it('reads nothing where next-auth reads no form: another or no type, a type spelt in capitals, no body, no field', () => {
    expect(nextAuthFormField('multipart/form-data; boundary=x', 'csrfToken=abc', 'csrfToken')).toBeUndefined();
    expect(nextAuthFormField(null, 'csrfToken=abc', 'csrfToken')).toBeUndefined();
    expect(nextAuthFormField('Application/X-WWW-Form-Urlencoded', 'csrfToken=abc', 'csrfToken')).toBeUndefined();
    expect(nextAuthFormField(FORM, undefined, 'csrfToken')).toBeUndefined();
    expect(nextAuthFormField(FORM, 'callbackUrl=%2F', 'csrfToken')).toBeUndefined();
  });
});

describe('readBodyAtMost', () => {
  const streamOf = (...chunks: string[]) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
    });

  it('reads a body up to the bound whole', async () => {
    const read = await readBodyAtMost(streamOf('csrf', 'Token=', 'abc'), 13);
    expect(read instanceof Uint8Array ? new TextDecoder().decode(read) : read).toBe('csrfToken=abc');
    expect(await readBodyAtMost(null, 13)).toBeUndefined();
  });

  it('stops at the first chunk past the bound and cancels the rest', async () => {
    let pulled = 0;
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1;
        controller.enqueue(new Uint8Array(1024));
      },
      cancel() {
        cancelled = true;
      },
    });
    expect(await readBodyAtMost(endless, 4096)).toBe('too_large');
    expect({ pulled: pulled <= 6, cancelled }).toEqual({ pulled: true, cancelled: true });
  });
});
