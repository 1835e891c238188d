import { describe, expect, it } from 'vitest';
import { maskErrorResult, maskUpstreamError } from './secret-mask';
import { UpstreamRpcError, type UpstreamConfig } from './upstream';

// What the masks are made of (secretMaskOf, maskValue) is tested in libs/shared/util-redact; here, how the gateway
// applies them to what an upstream answers.
const config = (overrides: Partial<UpstreamConfig> = {}): UpstreamConfig => ({
  id: 'u1',
  tenantId: 't1',
  name: 'files',
  toolPrefix: 'files',
  transport: 'streamable_http',
  url: 'http://127.0.0.1:1/mcp',
  headers: { authorization: 'Bearer upstream-token-0123456789', 'x-api-key': 'key-abcdefghijkl' },
  command: null,
  args: [],
  env: {},
  connectTimeoutMs: 1_000,
  callTimeoutMs: 1_000,
  version: 1,
  ...overrides,
});

describe('maskUpstreamError', () => {
  it("masks the upstream's configured credentials in an error's message and data, the token after an auth scheme too", () => {
    const upstream = config({ env: { API_SECRET: 'env-secret-value-42' }, args: ['--token', 'arg-token-abcdef'] });
    const error = new UpstreamRpcError(-32001, 'refused Bearer upstream-token-0123456789 (token upstream-token-0123456789)', {
      sent: { 'x-api-key': 'key-abcdefghijkl', env: 'env-secret-value-42', argv: ['--token', 'arg-token-abcdef'] },
      retry: false,
    });
    const masked = maskUpstreamError(upstream, error);
    expect(masked.message).toBe('refused [redacted] (token [redacted])');
    expect(masked.data).toEqual({ sent: { 'x-api-key': '[redacted]', env: '[redacted]', argv: ['--token', '[redacted]'] }, retry: false });
    expect(masked.code).toBe(-32001);
    expect(masked).toBeInstanceOf(UpstreamRpcError);
  });

  it('returns the same error when nothing in it is a configured secret', () => {
    const error = new UpstreamRpcError(-32602, 'Unknown tool: nope', { tool: 'nope' });
    expect(maskUpstreamError(config(), error)).toBe(error);
    expect(maskUpstreamError(config({ headers: {} }), new UpstreamRpcError(1, 'upstream-token-0123456789'))).toMatchObject({ message: 'upstream-token-0123456789' });
  });
});

describe('maskErrorResult', () => {
  it('never throws on data nested deeper than JSON.stringify can go, and masks such data whole', () => {
    const upstream = config();
    const deep = JSON.parse(`${'['.repeat(200_000)}"upstream-token-0123456789"${']'.repeat(200_000)}`) as unknown;
    const result = maskErrorResult(upstream, { content: deep, isError: true });
    let expected: unknown = '[redacted]';
    for (let depth = 0; depth < 31; depth += 1) expected = [expected];
    expect(result).toEqual({ content: expected, isError: true });
    const error = maskUpstreamError(upstream, new UpstreamRpcError(-32000, 'upstream-token-0123456789', deep));
    expect(error.message).toBe('[redacted]');
  });

  it("masks a tool's error result, and leaves any other result as it is", () => {
    const upstream = config();
    const failed = { content: [{ type: 'text', text: 'invalid token upstream-token-0123456789' }], isError: true };
    expect(maskErrorResult(upstream, failed)).toEqual({ content: [{ type: 'text', text: 'invalid token [redacted]' }], isError: true });
    const ok = { content: [{ type: 'text', text: 'upstream-token-0123456789' }] };
    expect(maskErrorResult(upstream, ok)).toBe(ok);
  });
});
