import { describe, expect, it } from 'vitest';
import {
  acceptsEventStream,
  acceptsPostResponses,
  bearerToken,
  isJsonContentType,
  originProblem,
  requestProtocolVersion,
} from './request-checks';

const policy = (hosts: string[], origins: string[]) => ({ allowedHosts: new Set(hosts), allowedOrigins: new Set(origins) });

describe('Streamable HTTP header checks', () => {
  it('lets non-browser requests through and checks browser origins exactly', () => {
    expect(originProblem('/t/acme/mcp', 'gw:3200', undefined, policy([], []))).toBeUndefined();
    expect(originProblem('/t/acme/mcp', 'gw:3200', 'https://evil.example', policy([], []))).toBe('Origin not allowed');
    expect(originProblem('/t/acme/mcp', 'gw:3200', 'https://app.example', policy([], ['https://app.example']))).toBeUndefined();
    expect(originProblem('/t/acme/mcp', 'gw:3200', 'https://evil.example', policy([], ['*']))).toBeUndefined();
  });

  it('checks Host when hosts are configured (with or without port)', () => {
    expect(originProblem('/t/acme/mcp', 'gw.example:443', undefined, policy(['gw.example'], []))).toBeUndefined();
    expect(originProblem('/t/acme/mcp', '127.0.0.1:3200', undefined, policy(['127.0.0.1:3200'], []))).toBeUndefined();
    expect(originProblem('/t/acme/mcp', 'rebound.evil:3200', undefined, policy(['gw.example'], []))).toBe('Host not allowed');
    expect(originProblem('/t/acme/mcp', undefined, undefined, policy(['gw.example'], []))).toBe('Host header required');
  });

  it('checks the host an absolute-form target names in place of the Host header (RFC 9112 §3.2.2)', () => {
    const allowed = policy(['gw.example:3000'], []);
    expect(originProblem('http://rebound.evil:3000/t/acme/mcp', 'gw.example:3000', undefined, allowed)).toBe('Host not allowed');
    expect(originProblem('http://GW.example:3000/t/acme/mcp', 'rebound.evil:3000', undefined, allowed)).toBeUndefined();
    expect(originProblem('*', 'gw.example:3000', undefined, allowed)).toBe('Host not allowed');
    expect(originProblem('http://[::1', 'gw.example:3000', undefined, allowed)).toBe('Host not allowed');
  });

  it('requires both JSON and SSE in Accept for POST, SSE for GET', () => {
    expect(acceptsPostResponses('application/json, text/event-stream')).toBe(true);
    expect(acceptsPostResponses('application/json;q=0.9, text/event-stream')).toBe(true);
    expect(acceptsPostResponses('*/*')).toBe(true);
    expect(acceptsPostResponses('application/json')).toBe(false);
    expect(acceptsPostResponses(undefined)).toBe(false);
    expect(acceptsEventStream('text/event-stream')).toBe(true);
    expect(acceptsEventStream('application/json')).toBe(false);
  });

  it('reads q=0 as "not acceptable", the most specific range deciding (RFC 9110 §12.5.1)', () => {
    expect(acceptsPostResponses('application/json, text/event-stream;q=0')).toBe(false);
    expect(acceptsPostResponses('*/*, text/event-stream;q=0')).toBe(false);
    expect(acceptsPostResponses('application/json;q=0, text/*')).toBe(false);
    expect(acceptsPostResponses('application/json, text/*;q=0, text/event-stream;q=0.1')).toBe(true);
    expect(acceptsPostResponses('*/*;q=0, application/json, text/event-stream')).toBe(true);
    expect(acceptsPostResponses('application/json;Q=0.000, text/event-stream')).toBe(false);
    // A weight that is not one (q=abc, q=2, a bare or empty q, q=-0) is taken as the default, not as a refusal.
    expect(acceptsPostResponses('application/json;q=abc, text/event-stream;q=2')).toBe(true);
    for (const odd of ['application/json;q, text/event-stream', 'application/json;q=, text/event-stream', 'application/json; q = , text/event-stream', 'application/json, text/event-stream;q=-0', 'application/json;q=0.0001, text/event-stream']) {
      expect(acceptsPostResponses(odd), odd).toBe(true);
    }
    expect(acceptsPostResponses('application/json; q = 0 , text/event-stream')).toBe(false);
    expect(acceptsEventStream('text/event-stream;q=0')).toBe(false);
    expect(acceptsEventStream('*/*;q=0.5, text/event-stream;q=0')).toBe(false);
    expect(acceptsEventStream('text/*;q=0.2')).toBe(true);
  });

  it('accepts only application/json bodies', () => {
    expect(isJsonContentType('application/json; charset=utf-8')).toBe(true);
    expect(isJsonContentType('Application/JSON;Charset="UTF8"')).toBe(true);
    expect(isJsonContentType('application/json; boundary=x')).toBe(true);
    expect(isJsonContentType('application/json; charset=US-ASCII')).toBe(true);
    // Read as UTF-8, another charset's text would change: refused (415), not guessed.
    expect(isJsonContentType('application/json; charset=latin1')).toBe(false);
    expect(isJsonContentType('application/json; charset=utf-16le')).toBe(false);
    expect(isJsonContentType('application/json; charset=')).toBe(false);
    expect(isJsonContentType('text/plain')).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
  });

  it('defaults a missing protocol version to 2025-03-26 and refuses unsupported ones', () => {
    expect(requestProtocolVersion(undefined)).toEqual({ ok: true, version: '2025-03-26' });
    expect(requestProtocolVersion('2025-11-25')).toEqual({ ok: true, version: '2025-11-25' });
    expect(requestProtocolVersion('2099-01-01')).toEqual({ ok: false });
  });

  it('refuses an empty protocol version header rather than taking it for a missing one', () => {
    expect(requestProtocolVersion('')).toEqual({ ok: false });
    expect(requestProtocolVersion([''])).toEqual({ ok: false });
  });

  it('extracts bearer tokens case-insensitively and nothing else', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer abc')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
  });
});
