/**
 * A reload's ending of a refused principal spares the sessions made after what it found took effect, not after it
 * began: a session opened on this replica while the load ran was authenticated against the earlier copy (the principal
 * still accepted), so it was neither refused at its initialize nor ended by the reload, and once the agent client was
 * enabled again it was served again (found by re-review).
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
/** While set, the gateway's api-key query answers only once it resolves (a slow database). */
let hold: Promise<void> | undefined;

function gated(client: SystemPrismaClient): SystemPrismaClient {
  const bind = (target: object, value: unknown) => (typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value);
  return new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop !== 'apiKey') return bind(target, value);
      const delegate = value as Record<string, unknown>;
      return new Proxy(delegate, {
        get(inner, key) {
          const member = Reflect.get(inner, key, inner) as unknown;
          if (key !== 'findMany') return bind(inner, member);
          return async (...args: unknown[]) => {
            const rows = await (member as (...a: unknown[]) => Promise<unknown>).apply(inner, args);
            if (hold !== undefined) await hold;
            return rows;
          };
        },
      });
    },
  });
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  gateway = await startTestGateway({ systemDb: gated(db), redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

describe('a session initialized while the reload that refuses its agent client is loading', () => {
  it('is not served again once the agent client is enabled again', async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'during-load-agent');
    await gateway.dataPlane.refreshAll();

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    let release = (): void => undefined;
    hold = new Promise<void>((resolve) => (release = resolve));
    const reloading = gateway.dataPlane.refreshAll(); // the keys load begins (`from`), its query slow to answer
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Still accepted by the snapshot in force: a session is made, after the load began.
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    expect(sessionId).not.toBe('');

    hold = undefined;
    release();
    await reloading; // the load finds the client disabled: its sessions are ended
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'ping' })).status).toBe(401);

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    // The session of the disabled client must name nothing now.
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(404);
  }, 30_000);
});
