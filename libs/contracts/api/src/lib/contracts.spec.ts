import { describe, expect, it } from 'vitest';
import { createApiKeyRequest } from './api-keys';
import { approveRequest } from './approvals';
import { pageQuery, tenantSlug } from './common';
import { createTenantRequest } from './tenants';
import { argsWithEnv, createUpstreamRequest, secretEnv, secretHeaders, updateUpstreamRequest } from './upstreams';

describe('api contracts', () => {
  it('accepts slugs that are safe in a URL path and rejects the rest', () => {
    for (const ok of ['acme', 'acme-labs', 'a1']) expect(tenantSlug.safeParse(ok).success).toBe(true);
    for (const bad of ['A', 'acme_labs', '-acme', 'acme-', '../etc', 'a', 'x'.repeat(64), 'acme labs']) {
      expect(tenantSlug.safeParse(bad).success).toBe(false);
    }
  });

  it('bounds page sizes and coerces query strings', () => {
    expect(pageQuery.parse({ limit: '20' })).toEqual({ limit: 20 });
    expect(pageQuery.parse({})).toEqual({ limit: 50 });
    expect(pageQuery.safeParse({ limit: '1000' }).success).toBe(false);
  });

  it('trims tenant names and refuses empty ones', () => {
    expect(createTenantRequest.parse({ slug: 'acme', name: '  Acme  ' }).name).toBe('Acme');
    expect(createTenantRequest.safeParse({ slug: 'acme', name: '   ' }).success).toBe(false);
  });

  it('keeps credentials out of upstream URLs: no user info, no credential-named query parameters', () => {
    const upstream = (url: string) => createUpstreamRequest.safeParse({ name: 'u', toolPrefix: 'u', transport: 'streamable_http', url });
    expect(upstream('https://mcp.example.test/mcp?region=eu&page=2&keyword=x').success).toBe(true);
    // Also every name the audit redactor hides in recorded URLs (Azure API Management, Functions, SAS and S3 signatures).
    for (const bad of [
      'https://user:pw@mcp.example.test/mcp',
      'https://mcp.example.test/mcp?api_key=abc',
      'https://mcp.example.test/mcp?x=1&Access_Token=abc',
      'https://mcp.example.test/mcp?key=abc',
      'https://apim.example.test/mcp?subscription-key=LIVEKEY',
      'https://apim.example.test/mcp?Ocp-Apim-Subscription-Key=LIVEKEY',
      'https://fn.example.test/mcp?x-functions-key=abc',
      'https://blob.example.test/mcp?sv=2024&sig=abc',
      'https://s3.example.test/mcp?X-Amz-Signature=abc',
    ]) {
      const parsed = upstream(bad);
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues[0]?.message).toMatch(/put them in headers/);
    }
  });

  it('refuses an upstream URL that does not parse as a validation error, not an exception (it was a 500)', () => {
    for (const bad of ['mcp.example.com/mcp', 'not a url', 'http://', 'http://a b', 'https//x']) {
      const created = createUpstreamRequest.safeParse({ name: 'u', toolPrefix: 'u', transport: 'streamable_http', url: bad });
      expect(created.success).toBe(false);
      expect(created.error?.issues.map((issue) => issue.message)).toContain('must be an http or https URL');
      expect(updateUpstreamRequest.safeParse({ url: bad }).success).toBe(false);
    }
  });
});

describe('api key expiry', () => {
  it('takes a future time of a four-digit UTC year, and refuses one that is year 10000 in UTC (it was a 500 on reading it back)', () => {
    const key = { name: 'ci', agentClientId: '019a0000-0000-7000-8000-0000000000aa' };
    expect(createApiKeyRequest.safeParse({ ...key, expiresAt: '9999-12-31T23:59:59Z' }).success).toBe(true);
    const late = createApiKeyRequest.safeParse({ ...key, expiresAt: '9999-12-31T23:59:59-15:59' });
    expect(late.success).toBe(false);
    expect(late.error?.issues.map((issue) => issue.message)).toEqual(['must be before the year 10000 (UTC)']);
    expect(createApiKeyRequest.safeParse({ ...key, expiresAt: '2001-01-01T00:00:00Z' }).error?.issues[0]?.message).toBe('must be in the future');
  });
});

describe('stdio upstream arguments', () => {
  const stdio = (args: string[]) => createUpstreamRequest.safeParse({ name: 'u', toolPrefix: 'u', transport: 'stdio', command: 'npx', args });

  it('refuses one that holds a credential, naming its position and the way to pass it, never its text', () => {
    const secret = 'sk_live_0123456789abcdef';
    for (const parsed of [stdio(['-y', 'some-server', '--api-key', secret]), updateUpstreamRequest.safeParse({ args: ['-y', 'some-server', '--api-key', secret] })]) {
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues).toEqual([expect.objectContaining({ path: ['args', 3], message: expect.stringContaining('put it in env (stored encrypted) and write ${NAME}') })]);
      expect(JSON.stringify(parsed.error?.issues)).not.toContain(secret);
    }
  });

  it('takes a reference to the sealed env in its place, and what is only about a credential', () => {
    expect(stdio(['-y', 'some-server', '--api-key', '${SOME_SERVER_KEY}', '--key-file', '/etc/keys/server.pem']).success).toBe(true);
    expect(stdio(['-y', '@modelcontextprotocol/server-postgres', 'postgresql://app:${PGPASSWORD}@db.internal:5432/app']).success).toBe(true);
  });

  it('resolves ${NAME} from the env where the name is configured, and leaves everything else as written', () => {
    const env = { API_KEY: 'k-123', EMPTY: '', DOLLARS: '$1 ${API_KEY}' };
    expect(argsWithEnv(['--api-key', '${API_KEY}', '--both=${API_KEY}:${EMPTY}', '${UNSET}', '$API_KEY', '${DOLLARS}', 'plain'], env)).toEqual([
      '--api-key',
      'k-123',
      '--both=k-123:',
      '${UNSET}',
      '$API_KEY',
      // A value is inserted as it is: what it holds is not expanded again.
      '$1 ${API_KEY}',
      'plain',
    ]);
    // Not the env object's inherited members.
    expect(argsWithEnv(['${toString}', '${constructor}'], {})).toEqual(['${toString}', '${constructor}']);
    const untouched = ['a', 'b'];
    expect(argsWithEnv(untouched, env)).toBe(untouched);
  });
});

describe('upstream headers', () => {
  it('refuses names the connection owns, in any case, and Proxy-*', () => {
    expect(secretHeaders.safeParse({ Authorization: 'Bearer x', 'X-Api-Version': '2' }).success).toBe(true);
    for (const name of ['Host', 'host', 'Content-Type', 'Mcp-Session-Id', 'Transfer-Encoding', 'Proxy-Authorization', 'Accept-Encoding', 'content-encoding']) {
      expect(secretHeaders.safeParse({ [name]: 'x' }).success).toBe(false);
    }
  });

  it('refuses values no HTTP client may send (line breaks, control characters), naming the rule and never the value', () => {
    for (const value of ['Bearer a\r\nX-Injected: 1', 'a\nb', 'nul\u0000', 'bell\u0007', 'del\u007f', 'snowman \u2603']) {
      const parsed = secretHeaders.safeParse({ Authorization: value });
      expect(parsed.success, JSON.stringify(value)).toBe(false);
      expect(JSON.stringify(parsed.error?.issues)).not.toContain(value);
    }
    for (const value of ['Bearer abc', 'a\tb', 'caf\u00e9', '']) expect(secretHeaders.safeParse({ Authorization: value }).success, value).toBe(true);
    expect(secretEnv.safeParse({ TOKEN: 'a\u0000b' }).success).toBe(false);
    expect(secretEnv.safeParse({ TOKEN: 'multi\nline is fine' }).success).toBe(true);
  });

  it('refuses edited arguments holding a number JSON cannot carry, at any depth, and names where', () => {
    const approve = (edited: Record<string, unknown>) => approveRequest.safeParse({ argumentsHash: 'a'.repeat(64), arguments: edited });
    for (const [edited, path] of [
      [{ count: Infinity }, ['arguments', 'count']],
      [{ a: [{ b: -Infinity }] }, ['arguments', 'a', 0, 'b']],
      [{ a: { b: { c: Number.NaN } } }, ['arguments', 'a', 'b', 'c']],
    ] as const) {
      const parsed = approve(edited);
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues.map((issue) => issue.path)).toEqual([path]);
    }
    expect(approve({ count: 1e300, small: -5e-324 }).success).toBe(true);
  });

  // As the gateway counts an agent's arguments (the object itself is level 1): before, edits 65 levels deep passed.
  it('takes edited arguments nested at most 64 levels deep', () => {
    const nested = (levels: number): Record<string, unknown> => {
      let value: Record<string, unknown> = { leaf: 1 };
      for (let level = 1; level < levels; level += 1) value = { next: value };
      return value;
    };
    const approve = (edited: Record<string, unknown>) => approveRequest.safeParse({ argumentsHash: 'a'.repeat(64), arguments: edited });
    expect(approve(nested(64)).success).toBe(true);
    expect(approve(nested(65)).error?.issues[0]?.message).toBe('must nest at most 64 levels deep');
  });
});
