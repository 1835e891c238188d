import { describe, expect, it } from 'vitest';
import { resolveEndpoint } from './legacy-sse-session';

describe('legacy SSE endpoint origin check', () => {
  const stream = new URL('http://127.0.0.1:3500/files/sse');
  it('resolves a relative endpoint against the stream URL', () => {
    expect(resolveEndpoint('/files/messages?sessionId=abc', stream)?.href).toBe(
      'http://127.0.0.1:3500/files/messages?sessionId=abc',
    );
    expect(resolveEndpoint('messages?sessionId=abc', stream)?.href).toBe(
      'http://127.0.0.1:3500/files/messages?sessionId=abc',
    );
  });
  it.each([
    'http://127.0.0.1:3501/messages',
    'https://127.0.0.1:3500/messages',
    'http://evil.example/messages',
    '//evil.example/messages',
  ])('refuses %s (another origin)', (endpoint) => {
    expect(resolveEndpoint(endpoint, stream)).toBeUndefined();
  });
});
