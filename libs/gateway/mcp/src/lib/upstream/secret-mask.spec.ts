import { describe, expect, it } from 'vitest';
import { maskResult, maskUpstreamError } from './secret-mask';
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

describe('maskResult', () => {
  it('never throws on data nested deeper than JSON.stringify can go, and masks such data whole', () => {
    const upstream = config();
    const deep = JSON.parse(`${'['.repeat(200_000)}"upstream-token-0123456789"${']'.repeat(200_000)}`) as unknown;
    const result = maskResult(upstream, { content: deep, isError: true });
    let expected: unknown = '[redacted]';
    for (let depth = 0; depth < 31; depth += 1) expected = [expected];
    expect(result).toEqual({ content: expected, isError: true });
    const error = maskUpstreamError(upstream, new UpstreamRpcError(-32000, 'upstream-token-0123456789', deep));
    expect(error.message).toBe('[redacted]');
  });

  it("masks every configured value in a tool's error result, and the unmistakable credentials in any other result", () => {
    const upstream = config({
      headers: { authorization: 'Bearer upstream-token-0123456789', 'x-region': 'eu-central-1-west' },
      env: { ALLOWED_DIR: '/srv/data/shared', GITHUB_TOKEN: 'ghp-env-token-abcdef' },
      args: ['--api-key=arg-key-0123456789'],
      url: 'https://svc:url-password-77@api.example.com/mcp?access_token=query-token-5555',
    });
    const quoting = 'eu-central-1-west /srv/data/shared upstream-token-0123456789 ghp-env-token-abcdef arg-key-0123456789 url-password-77 query-token-5555';
    const failed = { content: [{ type: 'text', text: `invalid: ${quoting}` }], isError: true };
    expect(maskResult(upstream, failed)).toEqual({ content: [{ type: 'text', text: 'invalid: [redacted] [redacted] [redacted] [redacted] [redacted] [redacted] [redacted]' }], isError: true });
    // A tool's output that quotes what the gateway injected (a whoami or debug tool, an API failure reported as text).
    const echoed = { content: [{ type: 'text', text: quoting }], structuredContent: { sent: { Authorization: 'Bearer upstream-token-0123456789' } } };
    expect(maskResult(upstream, echoed)).toEqual({
      content: [{ type: 'text', text: 'eu-central-1-west /srv/data/shared [redacted] [redacted] [redacted] [redacted] [redacted]' }],
      structuredContent: { sent: { Authorization: '[redacted]' } },
    });
    // Nothing to mask: the same object, not a copy.
    const ok = { content: [{ type: 'text', text: 'listed /srv/data/shared in eu-central-1-west' }] };
    expect(maskResult(upstream, ok)).toBe(ok);
    const none = { contents: [{ uri: 'file:///a', text: 'upstream-token-0123456789' }] };
    expect(maskResult(config({ headers: {} }), none)).toBe(none);
  });
});

// A server configured as @modelcontextprotocol/server-postgres is: the DSN as its argument. Every answer of the
// upstream passes maskResult (listings and initialize too): a database user is an ordinary word of its names and output.
const postgres = (): UpstreamConfig => ({
  id: 'u1',
  tenantId: 't1',
  name: 'db',
  toolPrefix: 'db',
  transport: 'stdio',
  url: null,
  headers: {},
  command: 'npx',
  // As @modelcontextprotocol/server-postgres is configured: the DSN as its argument.
  args: ['-y', '@modelcontextprotocol/server-postgres', 'postgresql://postgres:Sup3r-S3cret-Pw@db.internal:5432/app'],
  env: {},
  connectTimeoutMs: 1_000,
  callTimeoutMs: 1_000,
  version: 1,
});

describe('maskResult on ordinary answers: the unmistakable credentials only (found by re-review)', () => {
  it('keeps the names and URIs a listing identifies its items by (they are how the agent calls/reads them)', () => {
    const tools = { tools: [{ name: 'postgres_query', description: 'Run a read-only query', inputSchema: { type: 'object' } }] };
    expect(maskResult(postgres(), tools)).toEqual(tools);
    // server-postgres names its resources from the DSN, password removed, user kept.
    const resources = { resources: [{ uri: 'postgres://postgres@db.internal/users/schema', name: '"users" database schema', mimeType: 'application/json' }] };
    expect(maskResult(postgres(), resources)).toEqual(resources);
  });

  it("leaves a query result's ordinary words alone, the password still masked", () => {
    const rows = { content: [{ type: 'text', text: '[{"datname":"postgres","owner":"postgres"}] via Sup3r-S3cret-Pw' }] };
    expect(maskResult(postgres(), rows)).toEqual({ content: [{ type: 'text', text: '[{"datname":"postgres","owner":"postgres"}] via [redacted]' }] });
  });

  it('does not take a credential-NAMED env var holding a common word for a credential', () => {
    const upstream = { ...postgres(), args: [], env: { AUTH_METHOD: 'password', GITHUB_TOKEN: 'ghp_abcdefghijklmnop' } };
    const text = { content: [{ type: 'text', text: 'Change your password here; token ghp_abcdefghijklmnop' }] };
    expect(maskResult(upstream, text)).toEqual({ content: [{ type: 'text', text: 'Change your password here; token [redacted]' }] });
  });
});
