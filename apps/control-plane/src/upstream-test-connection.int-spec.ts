import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

// Test connection against the real app: a tenant cannot tie up the control plane with test connections to a server
// that never answers (each one holds a connection, or a child process for stdio, until the timeout).
let cp: ControlPlaneHarness;
let silent: Server;
let url: string;
let arrived = 0;

beforeAll(async () => {
  silent = createServer(() => void (arrived += 1)); // accepts, counts, never answers
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/mcp`;
  cp = await startControlPlane({ CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true', CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: '4000' });
});
afterAll(async () => {
  await cp?.close();
  silent?.closeAllConnections();
  await new Promise((resolve) => silent?.close(resolve));
});

async function tenantWithUpstream() {
  const t = await cp.tenant();
  const admin = await cp.member(t.id, 'admin');
  const upstream = await cp.system.upstream.create({
    data: { tenantId: t.id, name: 'silent', toolPrefix: 'silent', transport: 'streamable_http', url },
    select: { id: true },
  });
  return { admin, path: `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/test` };
}

describe('test connection', () => {
  it('runs at most four at once per tenant (429 beyond), without holding back other tenants', async () => {
    const a = await tenantWithUpstream();
    const b = await tenantWithUpstream();
    const running = [1, 2, 3, 4].map(() => cp.request('POST', a.path, { token: a.admin.token }));
    const other = cp.request('POST', b.path, { token: b.admin.token });
    // All five requests (four of tenant a, one of b) hold a slot once the silent server has seen them; a fixed sleep
    // was not enough on a loaded machine. They wait there until the 4 s timeout.
    await waitFor(() => arrived >= 5, { timeoutMs: 3_000, description: 'five test connections at the silent server' });
    const fifth = await cp.request('POST', a.path, { token: a.admin.token });
    expect(fifth.status).toBe(429);
    expect(fifth.json['code']).toBe('RATE_LIMITED');
    expect((await Promise.all(running)).map((res) => res.status)).toEqual([504, 504, 504, 504]);
    expect((await other).status).toBe(504);
    // Finished tests free their slots.
    expect((await cp.request('POST', a.path, { token: a.admin.token })).status).toBe(504);
  }, 20_000);
});
