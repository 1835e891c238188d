import { describe, expect, it } from 'vitest';
import { safeCallbackPath } from './callback-url';

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
