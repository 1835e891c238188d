import { allowedWhileSuspended, describePermissionTable, isTenantPermission, MAX_ACCESS_TOKEN_TTL_SECONDS, PERMISSIONS, type Permission } from '@portcullis/control-plane/auth';
import { newId } from '@portcullis/shared/util-ids';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

let cp: ControlPlaneHarness;
beforeAll(async () => {
  cp = await startControlPlane();
});
afterAll(async () => {
  await cp?.close();
});

const sign = (claims: { sub: string; iat: number; exp: number }, options: { secret?: string; aud?: string; typ?: string } = {}) =>
  new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: options.typ ?? 'at+jwt' })
    .setSubject(claims.sub)
    .setIssuer(cp.config.auth.token.issuer)
    .setAudience(options.aud ?? cp.config.auth.token.audience)
    .setIssuedAt(claims.iat)
    .setExpirationTime(claims.exp)
    .setJti(newId())
    .sign(new TextEncoder().encode(options.secret ?? cp.config.auth.token.secret));

describe('route → permission declarations', () => {
  it('match the reviewed snapshot (every change to who may call what is a diff)', async () => {
    const lines = cp.registry.list().map((route) => `${route.method.padEnd(6)} ${route.path.padEnd(58)} ${route.access ?? 'UNDECLARED'}`);
    const text = ['# route → permission', ...lines, '', '# permission → who', ...describePermissionTable(), ''].join('\n');
    await expect(text).toMatchFileSnapshot('./__snapshots__/route-permissions.txt');
    expect(lines.some((line) => line.includes('UNDECLARED'))).toBe(false);
  });

  it('documents every API route in OpenAPI with its permission and problem+json errors', () => {
    const paths = cp.openapi.paths;
    for (const route of cp.registry.list().filter((r) => r.path.startsWith('/api/'))) {
      const path = route.path.replace(/:(\w+)/g, '{$1}');
      const operation = (paths[path] as Record<string, Record<string, unknown>> | undefined)?.[route.method.toLowerCase()];
      expect(operation, `${route.method} ${route.path}`).toBeDefined();
      expect(operation?.['x-portcullis-permission']).toBe(route.access);
      expect(JSON.stringify(operation?.['responses'])).toContain('application/problem+json');
    }
  });

  // Before, 409 was documented only where a route could conflict with existing data, though the access guard refuses
  // every change to a suspended tenant with it (PUT /policy, DELETE of an upstream, an agent client...), and 503 nowhere.
  it('documents 409 on every change a suspended tenant refuses, and 503 everywhere', () => {
    const missing: string[] = [];
    for (const route of cp.registry.list().filter((r) => r.path.startsWith('/api/'))) {
      const operation = (cp.openapi.paths[route.path.replace(/:(\w+)/g, '{$1}')] as Record<string, { responses: Record<string, unknown> }> | undefined)?.[
        route.method.toLowerCase()
      ];
      const responses = operation?.responses ?? {};
      const permission = route.access as Permission | undefined;
      const refusedWhileSuspended = permission !== undefined && permission in PERMISSIONS && isTenantPermission(permission) && !allowedWhileSuspended(permission);
      if (refusedWhileSuspended && !('409' in responses)) missing.push(`409 ${route.method} ${route.path}`);
      if (!('503' in responses)) missing.push(`503 ${route.method} ${route.path}`);
    }
    expect(missing).toEqual([]);
  });

  it('keeps health probes open without a token', async () => {
    expect((await cp.request('GET', '/healthz')).status).toBe(200);
  });
});

describe('authentication', () => {
  it('answers 401 problem+json without a token, with a challenge', async () => {
    const res = await cp.request('GET', '/api/v1/tenants');
    expect(res.status).toBe(401);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.headers['www-authenticate']).toContain('Bearer');
    expect(res.json).toMatchObject({ code: 'UNAUTHENTICATED', traceId: expect.any(String) });
  });

  it('refuses expired, wrongly signed, wrong-audience, wrong-type and over-long tokens', async () => {
    const user = await cp.user();
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, string][] = [
      ['expired', await sign({ sub: user.id, iat: now - 1_000, exp: now - 600 })],
      ['wrong key', await sign({ sub: user.id, iat: now, exp: now + 60 }, { secret: 'another-secret-another-secret-another' })],
      ['wrong audience', await sign({ sub: user.id, iat: now, exp: now + 60 }, { aud: 'the-gateway' })],
      ['wrong type', await sign({ sub: user.id, iat: now, exp: now + 60 }, { typ: 'JWT' })],
      ['too long-lived', await sign({ sub: user.id, iat: now, exp: now + MAX_ACCESS_TOKEN_TTL_SECONDS + 60 })],
      ['unknown user', await sign({ sub: newId(), iat: now, exp: now + 60 })],
      ['garbage', 'not.a.jwt'],
    ];
    for (const [name, token] of cases) {
      const res = await cp.request('GET', '/api/v1/tenants', { token });
      expect(res.status, name).toBe(401);
    }
    const expired = await cp.request('GET', '/api/v1/tenants', { token: cases[0]?.[1] ?? '' });
    expect(expired.json['detail']).toMatch(/expired/);
    expect((await cp.request('GET', '/api/v1/tenants', { token: user.token })).status).toBe(200);
  });

  it('takes the Bearer scheme in any case (RFC 9110: schemes are case-insensitive), and only Bearer', async () => {
    const user = await cp.user();
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await cp.request('GET', '/api/v1/tenants', { headers: { authorization: `${scheme} ${user.token}` } });
      expect(res.status, scheme).toBe(200);
    }
    expect((await cp.request('GET', '/api/v1/tenants', { headers: { authorization: `Basic ${user.token}` } })).status).toBe(401);
  });
});

describe('tenant isolation at the route', () => {
  it('answers 404 to a member of tenant A for every tenant-scoped route of tenant B, and for unknown tenants', async () => {
    const a = await cp.tenant();
    const b = await cp.tenant();
    const ownerOfA = await cp.member(a.id, 'owner');
    // Tenant-permission routes (a platform route naming a tenant, such as PATCH /tenants/:tenantId, is the platform
    // admins' and answers 403 to everyone else).
    const routes = cp.registry.list().filter((route) => route.path.includes('/:tenantId') && route.access?.startsWith('tenant:'));
    expect(routes.length).toBeGreaterThanOrEqual(15);
    for (const target of [b.id, newId(), 'not-a-uuid']) {
      for (const route of routes) {
        const url = route.path.replace(':tenantId', target).replace(/:\w+/g, newId());
        const res = await cp.request(route.method, url, { token: ownerOfA.token, body: route.method === 'GET' ? undefined : {} });
        expect(res.status, `${route.method} ${url}`).toBe(404);
        expect(res.json['detail']).toBe('No such tenant.');
      }
    }
  });

  it('answers a malformed percent-escape in the path 400, and a parameter over the router\'s 100 characters 404, both problem+json', async () => {
    // The router refuses both before any route, guard or filter runs: Fastify's own JSON echoing the path, it was.
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const admin = await cp.user({ platformAdmin: true });
    const bad = await cp.request('GET', '/api/v1/tenants/%zz/upstreams', { token: admin.token });
    expect(bad.status).toBe(400);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    expect(bad.json).toMatchObject({ status: 400, code: 'BAD_REQUEST', traceId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(bad.text).not.toMatch(/FST_ERR|%zz/);
    const long = await cp.request('GET', `/api/v1/tenants/${t.id}/upstreams/${'x'.repeat(101)}`, { token: owner.token });
    expect(long.status).toBe(404);
    expect(long.headers['content-type']).toContain('application/problem+json');
    expect(long.json).toMatchObject({ status: 404, code: 'NOT_FOUND', traceId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(long.text).not.toMatch(/FST_ERR|xxxx/);
  });

  it('does not open other tenants to platform admins who are not members', async () => {
    const b = await cp.tenant();
    const admin = await cp.user({ platformAdmin: true });
    expect((await cp.request('GET', `/api/v1/tenants/${b.id}/upstreams`, { token: admin.token })).status).toBe(404);
  });

  it('answers 403 when the role lacks the permission', async () => {
    const t = await cp.tenant();
    const member = await cp.member(t.id, 'member');
    const auditor = await cp.member(t.id, 'auditor');
    expect((await cp.request('GET', `/api/v1/tenants/${t.id}/members`, { token: member.token })).status).toBe(403);
    expect((await cp.request('GET', `/api/v1/tenants/${t.id}/members`, { token: auditor.token })).status).toBe(200);
    const write = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: auditor.token, body: { name: 'x' } });
    expect(write.status).toBe(403);
    expect(write.json['code']).toBe('FORBIDDEN');
  });
});
