import { hashApiKey } from '@portcullis/auth/api-keys';
import { MAX_LIVE_KEYS_PER_AGENT_CLIENT, MAX_LIVE_KEYS_PER_TENANT } from '@portcullis/control-plane/feature-api-keys';
import { newId } from '@portcullis/shared/util-ids';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

let cp: ControlPlaneHarness;
beforeAll(async () => {
  cp = await startControlPlane();
});
afterAll(async () => {
  await cp?.close();
});

/**
 * Every gateway replica holds every live key in memory and reloads them all on each change: one tenant's admin creating
 * keys in a loop grew that for every tenant (found by a review, 2026-12-07).
 */
describe('API keys that work at once', () => {
  async function setUp() {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}`;
    const agentClient = async (name: string) => String((await cp.request('POST', `${base}/agent-clients`, { token: admin.token, body: { name } })).json['id']);
    /** Keys written straight to the table (as many creations would have). */
    const seed = (agentClientId: string, count: number, extra: { revokedAt?: Date; expiresAt?: Date } = {}) =>
      cp.system.apiKey.createMany({
        data: Array.from({ length: count }, () => {
          const id = newId();
          return { id, tenantId: t.id, name: `seeded ${id}`, keyHash: hashApiKey(`pcs_seed_${id}`), displayPrefix: 'pcs_seed', agentClientId, createdById: admin.id, ...extra };
        }),
      });
    const create = (agentClientId: string) => cp.request('POST', `${base}/api-keys`, { token: admin.token, body: { name: 'one more', agentClientId } });
    return { t, admin, base, agentClient, seed, create };
  }

  it(`are at most ${MAX_LIVE_KEYS_PER_AGENT_CLIENT} per agent client; revoked and expired ones do not count`, async () => {
    const { admin, base, agentClient, seed, create } = await setUp();
    const bot = await agentClient('bot');
    await seed(bot, MAX_LIVE_KEYS_PER_AGENT_CLIENT - 1);
    await seed(bot, 5, { revokedAt: new Date() });
    await seed(bot, 5, { expiresAt: new Date(Date.now() - 1_000) });
    const last = await create(bot);
    expect(last.status, JSON.stringify(last.json)).toBe(201);
    const refused = await create(bot);
    expect(refused.status).toBe(409);
    expect(String(refused.json['detail'])).toMatch(/already has 100 keys that work/);
    // Another agent client of the tenant is not held back by it; revoking one of the bot's makes room again.
    expect((await create(await agentClient('other'))).status).toBe(201);
    expect((await cp.request('POST', `${base}/api-keys/${String(last.json['id'])}/revoke`, { token: admin.token })).status).toBe(200);
    expect((await create(bot)).status).toBe(201);
  });

  it('are bounded for the whole tenant too, and creations at once for one agent client do not pass its bound', async () => {
    const { agentClient, seed, create } = await setUp();
    const busy = await agentClient('busy');
    await seed(busy, MAX_LIVE_KEYS_PER_TENANT);
    const refused = await create(await agentClient('new'));
    expect(refused.status).toBe(409);
    expect(String(refused.json['detail'])).toMatch(/tenant already has 20000 API keys/);

    const { t: second, agentClient: secondClient, seed: secondSeed, create: secondCreate } = await setUp();
    const bot = await secondClient('bot');
    await secondSeed(bot, MAX_LIVE_KEYS_PER_AGENT_CLIENT - 3);
    const statuses = (await Promise.all(Array.from({ length: 8 }, () => secondCreate(bot)))).map((res) => res.status).sort();
    expect(statuses).toEqual([201, 201, 201, 409, 409, 409, 409, 409]);
    expect(await cp.system.apiKey.count({ where: { tenantId: second.id, agentClientId: bot, revokedAt: null } })).toBe(MAX_LIVE_KEYS_PER_AGENT_CLIENT);
  });
});
