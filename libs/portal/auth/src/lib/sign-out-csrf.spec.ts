import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signOutCsrfVerified } from './sign-out-csrf';

const SECRET = 'portal-session-secret';
const cookieFor = (token: string, secret = SECRET) => `${token}|${createHash('sha256').update(`${token}${secret}`).digest('hex')}`;

describe('signOutCsrfVerified (next-auth\'s CSRF check, made before a sign-out is recorded)', () => {
  it('passes a form token equal to the token of a cookie the portal set', () => {
    expect(signOutCsrfVerified([undefined, cookieFor('abc123')], 'abc123', SECRET)).toBe(true);
  });

  it('refuses a missing, empty or different form token, and a cookie whose hash another secret made', () => {
    expect(signOutCsrfVerified([cookieFor('abc123')], undefined, SECRET)).toBe(false);
    expect(signOutCsrfVerified([cookieFor('abc123')], ['abc123'], SECRET)).toBe(false);
    expect(signOutCsrfVerified([cookieFor('')], '', SECRET)).toBe(false);
    expect(signOutCsrfVerified([cookieFor('abc123')], 'abc124', SECRET)).toBe(false);
    expect(signOutCsrfVerified([cookieFor('abc123', 'another secret')], 'abc123', SECRET)).toBe(false);
  });

  it('refuses malformed cookies: no hash, a hash that is not hex or too short, extra parts, none at all', () => {
    expect(signOutCsrfVerified(['abc123'], 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified(['abc123|zz'], 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified([cookieFor('abc123').slice(0, -2)], 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified([`${cookieFor('abc123')}|x`], 'abc123', SECRET)).toBe(false);
    expect(signOutCsrfVerified([], 'abc123', SECRET)).toBe(false);
  });
});
