import { describe, expect, it } from 'vitest';
import { safeCallbackPath, sameOriginRedirect } from './callback-url';

describe('safeCallbackPath', () => {
  it('keeps the portal’s own paths, with query and fragment', () => {
    expect(safeCallbackPath('/audit?tenant=acme#top')).toBe('/audit?tenant=acme#top');
    expect(safeCallbackPath(['/upstreams', '/other'])).toBe('/upstreams');
  });

  it('sends anything that leaves the portal, or is not a path, to /', () => {
    for (const value of ['//evil.example', '/\\evil.example', '/\t/evil.example', '/\\/evil.example', '/.//evil.example', '/%2e//evil.example', '/a/..//evil.example', 'https://evil.example/', 'javascript:alert(1)', '', undefined]) {
      expect(safeCallbackPath(value)).toBe('/');
    }
  });
});

describe('sameOriginRedirect (next-auth redirect callback)', () => {
  const base = 'http://localhost:3000';

  it('keeps the portal’s own paths and absolute URLs, as URLs of the portal', () => {
    expect(sameOriginRedirect('/tenants?page=2#top', base)).toBe(`${base}/tenants?page=2#top`);
    expect(sameOriginRedirect(`${base}/audit?tenant=acme`, base)).toBe(`${base}/audit?tenant=acme`);
    expect(sameOriginRedirect(`${base}/`, `${base}/`)).toBe(`${base}/`);
  });

  it('sends anything else to the portal’s base, without throwing on what is not a URL', () => {
    // next-auth's default callback runs `new URL(value)` on these, which throws on the first ones: a 500.
    const odd = ['foo', ':', '%3A', 'javascript:alert(1)', 'http://', '', ' ', '\u0000', '/\\evil.example', '//evil.example',
      'https://evil.example/tenants', 'http://localhost:3000.evil.example/', 'http://localhost:3001/', `${base}//evil.example`,
      `${base}/\\evil.example`, 'data:text/html,<script>alert(1)</script>'];
    for (const value of odd) {
      expect(() => sameOriginRedirect(value, base)).not.toThrow();
      expect(sameOriginRedirect(value, base)).toBe(`${base}/`);
    }
  });

  it('sends a callbackUrl that is not a string (a JSON body\'s number, object, array, boolean) to the portal’s base', () => {
    for (const value of [1, { a: 1 }, ['/tenants'], true, null, undefined]) {
      expect(() => sameOriginRedirect(value, base)).not.toThrow();
      expect(sameOriginRedirect(value, base)).toBe(`${base}/`);
    }
    expect(safeCallbackPath([1] as never)).toBe('/');
  });

  it('does not throw on a base it cannot parse either', () => {
    expect(sameOriginRedirect('foo', 'not a url')).toBe('not a url/');
    expect(sameOriginRedirect('http://x.example/', '')).toBe('/');
  });
});
