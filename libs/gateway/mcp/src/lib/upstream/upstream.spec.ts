import { describe, expect, it } from 'vitest';
import { endpointOf, sessionElsewhere } from './upstream';

const http = (url: string) => ({ transport: 'streamable_http' as const, url });
const stdio = { transport: 'stdio' as const, url: null };

describe('endpointOf', () => {
  it('keeps the origin and path of a Streamable HTTP URL, and of its query only a digest: never a user, password or token', () => {
    const endpoint = endpointOf(http('https://user:secret@mcp.example.com:8443/v1/mcp?token=abc#x'));
    expect(endpoint).toMatch(/^https:\/\/mcp\.example\.com:8443\/v1\/mcp\?[A-Za-z0-9_-]{22}$/);
    expect(endpoint).not.toMatch(/secret|abc|token/);
    expect(endpointOf(http('https://mcp.example.com:8443/v1/mcp#x'))).toBe('https://mcp.example.com:8443/v1/mcp');
  });

  it('is undefined for other transports and for a URL that does not parse', () => {
    expect(endpointOf(stdio)).toBeUndefined();
    expect(endpointOf(http('not a url'))).toBeUndefined();
  });
});

describe('sessionElsewhere', () => {
  const opened = { sessionId: 'abc', protocolVersion: '2025-11-25', endpoint: 'https://a.example.com/mcp' };

  it('is false where the session was opened, and true once the URL carries another query (it may hold a credential)', () => {
    expect(sessionElsewhere(opened, http('https://a.example.com/mcp'))).toBe(false);
    const withToken = { ...opened, endpoint: endpointOf(http('https://a.example.com/mcp?token=one')) };
    expect(sessionElsewhere(withToken, http('https://a.example.com/mcp?token=one'))).toBe(false);
    expect(sessionElsewhere(withToken, http('https://a.example.com/mcp?token=two'))).toBe(true);
  });

  it('is true once the upstream points at another host or path', () => {
    expect(sessionElsewhere(opened, http('https://b.example.com/mcp'))).toBe(true);
    expect(sessionElsewhere(opened, http('https://a.example.com/other'))).toBe(true);
  });

  it('treats a Streamable HTTP session whose endpoint was never recorded as opened elsewhere: its id is not sent', () => {
    expect(sessionElsewhere({ sessionId: 'abc', protocolVersion: '2025-11-25' }, http('https://a.example.com/mcp'))).toBe(true);
  });

  it('is false with no session id to give away, and for transports without an endpoint', () => {
    expect(sessionElsewhere({ sessionId: null, protocolVersion: '2025-11-25' }, http('https://b.example.com/mcp'))).toBe(false);
    expect(sessionElsewhere({ sessionId: 'p-1', protocolVersion: '2025-11-25' }, stdio)).toBe(false);
  });

  it('is true under other credentials at the same URL (the sealed credentials\' digest differs), and false under the same', () => {
    const sealed = (sealedDigest: string) => ({ ...http('https://a.example.com/mcp'), sealedDigest });
    const underOld = { sessionId: 'abc', protocolVersion: '2025-11-25', endpoint: endpointOf(sealed('old')) };
    expect(underOld.endpoint).toBe('https://a.example.com/mcp#old');
    expect(sessionElsewhere(underOld, sealed('old'))).toBe(false);
    expect(sessionElsewhere(underOld, sealed('rotated'))).toBe(true);
    expect(sessionElsewhere(underOld, http('https://a.example.com/mcp'))).toBe(true);
  });
});
