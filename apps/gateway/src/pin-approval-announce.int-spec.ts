/**
 * An admin approves a tool held by tool pinning; the control plane commits the approval and a rebuilt policy snapshot,
 * then announces both (upstreams, then snapshots). The agent is told its tools changed once the approval is in force
 * here, whichever of the gateway's loads (pins, policy) finishes last. A review found it told only by the policy's
 * reload: with the pins' load the slower (here: upstream_tools locked for a moment), the agent listed on that notice,
 * saw the tool still held, and was never told again.
 */
import type { Server } from 'node:http';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { definitionHash } from '@portcullis/contracts/tool-pins';
import { createSystemPrismaClient, type Prisma, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, listenInSession, messageOf, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let locker: SystemPrismaClient;
let redis: Redis;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let server: Server;
let toolRowId: string;
const tool = { name: 'where', inputSchema: { type: 'object' } };
const hash = definitionHash('tool', tool);

beforeAll(async () => {
  ({ server } = await startJsonUpstream({
    sessionId: 's',
    onRequest: (request) => {
      const { method } = request.message;
      const result = method === 'initialize' ? initializeResult(request, 'up') : method === 'tools/list' ? { tools: [tool] } : { content: [] };
      request.answer({ result });
    },
  }).then(async (started) => {
    db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
    locker = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
    redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'pin-approval-spec' });
    tenant = await createTestTenant(db);
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
    ({ key } = await createAgentWithKey(db, tenant.id, 'pin-approval-agent'));
    const { id } = await db.upstream.create({
      data: { tenantId: tenant.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url: started.url, toolApproval: 'require_approval', connectTimeoutMs: 3_000, callTimeoutMs: 3_000 } as never,
      select: { id: true },
    });
    const row: Prisma.UpstreamToolUncheckedCreateInput = {
      tenantId: tenant.id,
      upstreamId: id,
      kind: 'tool',
      name: 'where',
      definition: tool as unknown as Prisma.InputJsonValue,
      contentHash: hash,
      status: 'pending',
    };
    toolRowId = (await db.upstreamTool.create({ data: row, select: { id: true } })).id;
    return started;
  }));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0', GATEWAY_POLICY_RECONCILE_MS: '3600000' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  redis?.disconnect();
  await locker?.$disconnect();
  await db?.$disconnect();
  await new Promise((resolve) => server?.close(resolve));
});

const rpc = async (sessionId: string, message: Record<string, unknown>) => messageOf(await postInSession(gateway, tenant.slug, key, sessionId, message));
const toolNames = async (sessionId: string, id: number) =>
  (((await rpc(sessionId, { id, method: 'tools/list' })) as { result?: { tools?: { name: string }[] } }).result?.tools ?? []).map((item) => item.name);
const count = (text: string) => text.split('notifications/tools/list_changed').length - 1;

describe('a held tool approved while the pins load lags the policy snapshot load', () => {
  it('tells the agent its tools changed once the approval is in force', async () => {
    const init = await postInitialize(gateway, tenant.slug, key, 'pin-approval-spec');
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await init.text();
    await rpc(sessionId, { method: 'notifications/initialized' });
    const stream = await listenInSession(gateway, tenant.slug, key, sessionId);
    expect(await toolNames(sessionId, 2)).toEqual([]);

    // The approval as the control plane commits it.
    await db.upstreamTool.update({ where: { id: toolRowId }, data: { status: 'approved', approvedHash: hash, approvedDefinition: tool as unknown as Prisma.InputJsonValue, approvedAt: new Date() } });
    // A slow pins query: upstream_tools locked for a moment.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked: () => void = () => undefined;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holding = locker.$transaction(async (tx) => {
      await tx.$executeRawUnsafe('LOCK TABLE upstream_tools IN ACCESS EXCLUSIVE MODE');
      locked();
      await released;
    }, { timeout: 20_000 });
    await isLocked;
    // The control plane's announcements, in its order.
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL, { publish: redis });
    await waitFor(() => count(stream.text()) >= 1, { timeoutMs: 5_000, description: 'the agent is told its tools changed' });
    const heard = count(stream.text());
    // The agent lists on hearing it: the approval is not in force yet here.
    expect(await toolNames(sessionId, 3)).toEqual([]);

    release();
    await holding;
    await waitFor(async () => (await toolNames(sessionId, 4)).includes('up__where'), { timeoutMs: 5_000, description: 'the approval in force' });
    // Now that it is, the agent (which listed when told, and has no reason to list again) must be told once more.
    await waitFor(() => count(stream.text()) > heard, { timeoutMs: 3_000, description: 'a list_changed after the approval took effect' });
    stream.close();
  }, 40_000);
});
