import { createPrismaClient, createSystemPrismaClient, type PortcullisPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { GATEWAY_RPC, GatewayRequestError, type MessageSink, type RequestInfo } from '@portcullis/gateway/core';
import type { JsonRpcMessage, SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { newId } from '@portcullis/shared/util-ids';
import { createLogger } from '@portcullis/shared/util-logger';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APPROVAL_RPC, HeldCallGate, MAX_HELD_PER_SESSION, type HeldCallGateOptions } from './approval-gate';
import { PrismaApprovalStore } from './approval-store';
import { argumentsHash } from './arguments-hash';

// The gate against the real Postgres (application role, RLS) without a gateway around it: the timing edges.
let appDb: PortcullisPrismaClient;
let system: SystemPrismaClient;
let tenant: TestTenant;
const logger = createLogger({ service: 'approval-gate-int', level: 'silent', destination: { write: () => undefined } });
const decision = { reason: 'rule r1 requires approval', ruleIds: ['r1'], snapshotVersion: 4 };

beforeAll(async () => {
  const ctx = testContext();
  appDb = createPrismaClient({ url: ctx.databaseUrl });
  system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(system);
});
afterAll(async () => {
  await appDb?.$disconnect();
  await system?.$disconnect();
});

function info(args: Record<string, unknown>, progressToken?: string): RequestInfo {
  const record = {
    id: `session-${newId()}`,
    tenantId: tenant.id,
    principalKind: 'agent_client',
    principalId: newId(),
    protocolVersion: '2025-06-18',
    clientInfo: { name: 'spec', version: '1' },
    clientCapabilities: {},
    upstreams: {},
    createdAt: Date.now(),
  } as unknown as SessionRecord;
  const upstream = { id: newId(), tenantId: tenant.id, name: 'files', toolPrefix: 'files' } as unknown as UpstreamConfig;
  return {
    record,
    method: 'tools/call',
    requestId: 1,
    traceId: 'trace-gate',
    startedAt: Date.now(),
    target: { upstream, kind: 'tool', name: 'delete_file' },
    arguments: args,
    ...(progressToken === undefined ? {} : { progressToken }),
  };
}

function sink(): MessageSink & { messages: JsonRpcMessage[] } {
  const messages: JsonRpcMessage[] = [];
  return { canStream: true, messages, send: (message) => messages.push(message) > 0 };
}

function gate(options: Partial<HeldCallGateOptions> = {}) {
  return new HeldCallGate({ store: new PrismaApprovalStore(appDb), logger, timeoutMs: 30_000, pollMs: 600_000, progressMs: 50, ...options });
}

const pendingId = async (hash: string) =>
  (await waitFor(() => system.approval.findFirst({ where: { tenantId: tenant.id, argumentsHash: hash, status: 'pending' }, select: { id: true } }), { description: 'approval row' })).id;

describe('HeldCallGate', () => {
  it('records the approval (the exact arguments, their hash) and sends progress only when the agent sent a token', async () => {
    const g = gate();
    const args = { path: '/srv/a', authorization: 'Bearer abcdefghijklmnop', n: Math.random() };
    const withToken = sink();
    const held = g.hold(info(args, 'tok-1'), decision, withToken, new AbortController().signal);
    const id = await pendingId(argumentsHash(args));
    const row = await system.approval.findUniqueOrThrow({
      where: { id },
      select: { arguments: true, reason: true, snapshotVersion: true, agentClientId: true, expiresAt: true, kind: true, method: true, tool: true },
    });
    // Exactly what would run: a reviewer must not approve what a redacted copy hid (the API shows it in full to deciders only).
    expect(row.arguments).toEqual(args);
    expect(row).toMatchObject({ reason: decision.reason, snapshotVersion: 4, kind: 'tool', method: 'tools/call', tool: 'delete_file' });
    expect(row.agentClientId).not.toBeNull();
    expect(row.expiresAt.getTime()).toBeGreaterThan(Date.now() + 25_000);
    await waitFor(() => withToken.messages.length >= 3, { description: 'progress notifications' });
    const progress = withToken.messages.map((m) => (m as unknown as { params: { progress: number; progressToken: string } }).params);
    expect(progress.map((p) => p.progress).slice(0, 3)).toEqual([0, 1, 2]);
    expect(progress.every((p) => p.progressToken === 'tok-1')).toBe(true);

    const silent = sink();
    const args2 = { path: '/srv/b', n: Math.random() };
    const quiet = g.hold(info(args2), decision, silent, new AbortController().signal);
    const id2 = await pendingId(argumentsHash(args2));
    await system.approval.updateMany({ where: { id: { in: [id, id2] } }, data: { status: 'approved' } });
    g.onDecided(tenant.id);
    const admitted = await held;
    expect(admitted).toMatchObject({ decision: 'require_approval', approvalId: id, ruleIds: ['r1'], snapshotVersion: 4 });
    // How many progress values the wait used, so the upstream's own progress is shifted past them.
    expect(admitted.progressSent).toBe(withToken.messages.length);
    const quietAdmission = await quiet;
    expect(quietAdmission).toMatchObject({ approvalId: id2 });
    expect(quietAdmission.progressSent).toBeUndefined();
    expect(silent.messages).toEqual([]);
    await g.close();
  });

  it('refuses to hold arguments with a NUL (Postgres keeps none: the approver would be shown other arguments), recording nothing', async () => {
    const g = gate();
    const args = { path: '/srv/a\u0000b', n: Math.random() };
    await expect(g.hold(info(args), decision, sink(), new AbortController().signal)).rejects.toMatchObject({ rpcCode: -32602 });
    expect(await system.approval.count({ where: { tenantId: tenant.id, argumentsHash: argumentsHash(args) } })).toBe(0);
    await g.close();
  });

  it('records what is held: a prompt (prompts/get) or a completion of its arguments, not a tool of the same name', async () => {
    const g = gate();
    const base = info({});
    if (base.target === undefined) throw new Error('no target');
    const promptArgs = { scope: 'everything', n: Math.random() };
    const prompt = { ...base, method: 'prompts/get', target: { ...base.target, kind: 'prompt' as const, name: 'delete_file' }, arguments: promptArgs };
    const completionArgs = { scope: 'ev', n: Math.random() };
    const completion = { ...prompt, method: 'completion/complete', arguments: completionArgs };
    const heldPrompt = g.hold(prompt, decision, sink(), new AbortController().signal);
    const heldCompletion = g.hold(completion, decision, sink(), new AbortController().signal).catch((error: unknown) => error);
    const promptId = await pendingId(argumentsHash(promptArgs));
    const completionId = await pendingId(argumentsHash(completionArgs));
    const select = { kind: true, method: true, tool: true, upstreamId: true, arguments: true } as const;
    expect(await system.approval.findUniqueOrThrow({ where: { id: promptId }, select })).toEqual({
      kind: 'prompt',
      method: 'prompts/get',
      tool: 'delete_file',
      upstreamId: base.target.upstream.id,
      arguments: promptArgs,
    });
    expect(await system.approval.findUniqueOrThrow({ where: { id: completionId }, select })).toMatchObject({ kind: 'prompt', method: 'completion/complete', tool: 'delete_file' });
    // A prompt's arguments may be edited by the approver, as a tool's may.
    await system.approval.update({ where: { id: promptId }, data: { status: 'approved', editedArguments: { scope: 'one' } } });
    await system.approval.update({ where: { id: completionId }, data: { status: 'denied' } });
    g.onDecided(tenant.id);
    await expect(heldPrompt).resolves.toMatchObject({ approvalId: promptId, arguments: { scope: 'one' } });
    expect(await heldCompletion).toMatchObject({ data: { approvalId: completionId, reason: 'approval_denied' } });
    await g.close();
  });

  it('refuses arguments with a lone surrogate (no canonical JSON, so no hash to bind a decision to) as invalid params, saying why', async () => {
    const g = gate();
    const error = await g.hold(info({ q: 'half \ud800 pair' }), decision, sink(), new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ rpcCode: -32602, message: expect.stringContaining('not well-formed Unicode') });
    expect(g.size).toBe(0);
    await g.close();
  });

  it('refuses arguments nested too deeply to hash or redact with a clear error, recording nothing', async () => {
    const g = gate();
    let deep: unknown = 1;
    for (let i = 0; i < 50_000; i++) deep = [deep];
    const error = await g.hold(info({ deep }), decision, sink(), new AbortController().signal).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayRequestError);
    expect(error).toMatchObject({ rpcCode: -32602 });
    expect(g.size).toBe(0);
    await g.close();
  });

  it('honours a decision made at the last moment instead of expiring it', async () => {
    // Long enough that the approval is written before the expiry timer fires even on a loaded machine; with no
    // notice and polling off (pollMs), only that timer can find the decision.
    const g = gate({ timeoutMs: 5_000 });
    const args = { path: '/srv/late', n: Math.random() };
    const held = g.hold(info(args), decision, sink(), new AbortController().signal);
    const id = await pendingId(argumentsHash(args));
    // Approved with edits, and no notice: the expiry timer finds the decision.
    await system.approval.update({ where: { id }, data: { status: 'approved', editedArguments: { path: '/srv/safe' } } });
    const admitted = await held;
    expect(admitted).toMatchObject({ approvalId: id, arguments: { path: '/srv/safe' } });
    // Used once the engine runs it (`confirm`, after the checks that follow the wait).
    expect((await system.approval.findUniqueOrThrow({ where: { id }, select: { consumedAt: true } })).consumedAt).toBeNull();
    await admitted.confirm?.();
    expect((await system.approval.findUniqueOrThrow({ where: { id }, select: { consumedAt: true } })).consumedAt).not.toBeNull();
    await expect(admitted.confirm?.()).rejects.toMatchObject({ data: { reason: 'approval_used' } });
    await g.close();
  });

  it('refuses an approval that edited the arguments of a request that has none to run with (a resource read)', async () => {
    const g = gate();
    const uri = `file:///srv/report-${Math.random()}.csv`;
    const base = info({});
    if (base.target === undefined) throw new Error('no target');
    const read = { ...base, method: 'resources/read', target: { ...base.target, kind: 'resource' as const, name: uri } };
    const held = g.hold(read, decision, sink(), new AbortController().signal);
    const { id } = await waitFor(() => system.approval.findFirst({ where: { tenantId: tenant.id, tool: uri, status: 'pending' }, select: { id: true } }), { description: 'approval row' });
    expect(await system.approval.findUniqueOrThrow({ where: { id }, select: { kind: true, method: true } })).toEqual({ kind: 'resource', method: 'resources/read' });
    await system.approval.update({ where: { id }, data: { status: 'approved', editedArguments: { uri: 'file:///srv/other.csv' } } });
    g.onDecided(tenant.id);
    await expect(held).rejects.toMatchObject({ data: { approvalId: id, reason: 'edits_not_applicable' } });
    // Not used: nothing ran.
    expect((await system.approval.findUniqueOrThrow({ where: { id }, select: { consumedAt: true } })).consumedAt).toBeNull();
    await g.close();
  });

  it('records, and lets a person approve, a held read of a URI of several KiB (an index entry of it was refused; found by review)', async () => {
    const g = gate();
    // 4 KiB of incompressible text, inside the 8 KiB a resource URI may have.
    const uri = `file:///srv/${randomBytes(3_000).toString('base64url')}`;
    const base = info({});
    if (base.target === undefined) throw new Error('no target');
    const read = { ...base, method: 'resources/read', target: { ...base.target, kind: 'resource' as const, name: uri } };
    const held = g.hold(read, decision, sink(), new AbortController().signal);
    const { id } = await waitFor(() => system.approval.findFirst({ where: { tenantId: tenant.id, tool: uri, status: 'pending' }, select: { id: true } }), { description: 'approval row' });
    await system.approval.update({ where: { id }, data: { status: 'approved' } });
    g.onDecided(tenant.id);
    await expect(held).resolves.toBeDefined();
    await g.close();
  });

  it('refuses an approval that edited a held prompt\'s arguments into something other than text (MCP: names to strings)', async () => {
    const g = gate();
    const name = `summarise-${Math.random()}`;
    const base = info({ topic: 'q3' });
    if (base.target === undefined) throw new Error('no target');
    const prompt = { ...base, method: 'prompts/get', target: { ...base.target, kind: 'prompt' as const, name } };
    const held = g.hold(prompt, decision, sink(), new AbortController().signal);
    const { id } = await waitFor(() => system.approval.findFirst({ where: { tenantId: tenant.id, tool: name, status: 'pending' }, select: { id: true } }), { description: 'approval row' });
    // A row the control plane would refuse now, approved as an older control plane (or a direct write) left it.
    await system.approval.update({ where: { id }, data: { status: 'approved', editedArguments: { topic: 5 } } });
    g.onDecided(tenant.id);
    await expect(held).rejects.toMatchObject({ data: { approvalId: id, reason: 'edits_not_applicable' } });
    expect((await system.approval.findUniqueOrThrow({ where: { id }, select: { consumedAt: true } })).consumedAt).toBeNull();
    await g.close();
  });

  it('refuses an approval whose hash is not the held call’s, and uses an approval only once', async () => {
    const g = gate();
    const args = { path: '/srv/tampered', n: Math.random() };
    const held = g.hold(info(args), decision, sink(), new AbortController().signal);
    const id = await pendingId(argumentsHash(args));
    await system.approval.update({ where: { id }, data: { status: 'approved', argumentsHash: argumentsHash({ other: true }) } });
    await g.checkAll();
    await expect(held).rejects.toMatchObject({ rpcCode: APPROVAL_RPC.DENIED, data: { reason: 'approval_mismatch' } });

    const store = new PrismaApprovalStore(appDb);
    await system.approval.update({ where: { id }, data: { argumentsHash: argumentsHash(args) } });
    expect(await store.consume(tenant.id, id, new Date())).toBe(true);
    expect(await store.consume(tenant.id, id, new Date())).toBe(false);
    await g.close();
  });

  it('records the replica\'s lease on a held call and renews it while the call waits', async () => {
    const clock = { at: Date.now() };
    const g = gate({ leaseMs: 60_000, now: () => clock.at });
    const args = { path: '/srv/leased', n: Math.random() };
    const held = g.hold(info(args), decision, sink(), new AbortController().signal);
    const id = await pendingId(argumentsHash(args));
    const leaseOf = async () => (await system.approval.findUniqueOrThrow({ where: { id }, select: { heldUntil: true } })).heldUntil?.getTime();
    expect(await leaseOf()).toBe(clock.at + 60_000);
    clock.at += 20_000;
    await g.renewLeases();
    expect(await leaseOf()).toBe(clock.at + 60_000);
    await system.approval.update({ where: { id }, data: { status: 'denied' } });
    g.onDecided(tenant.id);
    await expect(held).rejects.toMatchObject({ data: { reason: 'approval_denied' } });
    await g.close();
  });

  // Before, every pending row was renewed: an approval whose lease had lapsed, shown cancelled by the control plane
  // (decisions refused), became pending and decidable again, and its call waited on until its timeout.
  it('does not bring back a held call whose lease lapsed: its approval stays cancelled, and the call ends', async () => {
    const clock = { at: Date.now() };
    const g = gate({ leaseMs: 60_000, now: () => clock.at });
    const args = { path: '/srv/lapsed', n: Math.random() };
    const held = g.hold(info(args), decision, sink(), new AbortController().signal);
    held.catch(() => undefined);
    const id = await pendingId(argumentsHash(args));
    // The replica could not renew for longer than the lease (its database out of reach): the lease lapsed.
    await system.approval.update({ where: { id }, data: { heldUntil: new Date(clock.at - 1_000) } });
    await g.renewLeases();
    expect((await system.approval.findUniqueOrThrow({ where: { id }, select: { status: true } })).status).toBe('cancelled');
    await expect(held).rejects.toMatchObject({ data: { approvalId: id } });
    expect(g.size).toBe(0);
    await g.close();
  });

  // Before, the cancellation only closed a pending row: one approved a moment before (its notice not yet read) stayed
  // approved and unused for good, though its call ended without running.
  it('marks an approval decided but not yet acted on cancelled when the agent cancels the call', async () => {
    const g = gate();
    const args = { path: '/srv/raced', n: Math.random() };
    const controller = new AbortController();
    const held = g.hold(info(args), decision, sink(), controller.signal);
    held.catch(() => undefined);
    const id = await pendingId(argumentsHash(args));
    // Approved through the control plane; the gateway has not read it yet (no notice, no poll).
    await system.approval.update({ where: { id }, data: { status: 'approved' } });
    controller.abort(new Error('cancelled by the client'));
    await expect(held).rejects.toMatchObject({ data: { approvalId: id, reason: 'approval_cancelled' } });
    await waitFor(async () => (await system.approval.findUniqueOrThrow({ where: { id }, select: { status: true } })).status === 'cancelled', { description: 'the approval cancelled' });
    // One that ran stays what it was.
    const usedArgs = { path: '/srv/used', n: Math.random() };
    const store = new PrismaApprovalStore(appDb);
    const usedHeld = g.hold(info(usedArgs), decision, sink(), new AbortController().signal);
    const used = await pendingId(argumentsHash(usedArgs));
    await system.approval.update({ where: { id: used }, data: { status: 'approved' } });
    g.onDecided(tenant.id);
    await usedHeld;
    expect(await store.consume(tenant.id, used, new Date())).toBe(true);
    expect(await store.close(tenant.id, used, 'cancelled')).toBe(false);
    expect((await system.approval.findUniqueOrThrow({ where: { id: used }, select: { status: true } })).status).toBe('approved');
    await g.close();
  });

  it('marks the approval cancelled when the request is aborted', async () => {
    const g = gate();
    const args = { path: '/srv/cancel', n: Math.random() };
    const controller = new AbortController();
    const held = g.hold(info(args), decision, sink(), controller.signal);
    const id = await pendingId(argumentsHash(args));
    controller.abort(new Error('cancelled by the client'));
    // Named in the refusal: the call's audit event is linked to its approval.
    await expect(held).rejects.toMatchObject({ name: 'GatewayRequestError', outcome: 'cancelled', data: { approvalId: id, reason: 'approval_cancelled' } });

    // Cancelled while the approval was still being written: the call must not wait for the timeout.
    const early = new AbortController();
    const args2 = { path: '/srv/cancel-early', n: Math.random() };
    const heldEarly = g.hold(info(args2), decision, sink(), early.signal);
    early.abort(new Error('cancelled by the client'));
    await expect(heldEarly).rejects.toMatchObject({ outcome: 'cancelled', data: { approvalId: expect.any(String), reason: 'approval_cancelled' } });
    await g.close();
    const rows = await system.approval.findMany({ where: { tenantId: tenant.id, argumentsHash: { in: [argumentsHash(args), argumentsHash(args2)] } }, select: { status: true } });
    expect(rows.map((row) => row.status)).toEqual(['cancelled', 'cancelled']);
    expect(g.size).toBe(0);
  });

  it('holds at most MAX_HELD_PER_SESSION calls of one session at once, recording no approval past it', async () => {
    const g = gate();
    const first = info({ n: 0 });
    const controllers: AbortController[] = [];
    const held: Promise<unknown>[] = [];
    const batch = `batch-${newId()}`;
    for (let n = 0; n < MAX_HELD_PER_SESSION; n += 1) {
      const controller = new AbortController();
      controllers.push(controller);
      held.push(g.hold({ ...first, arguments: { batch, n } }, decision, sink(), controller.signal).catch((error: unknown) => error));
    }
    const refused = await g.hold({ ...first, arguments: { batch, n: 'over' } }, decision, sink(), new AbortController().signal).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GatewayRequestError);
    expect(refused).toMatchObject({ rpcCode: GATEWAY_RPC.RATE_LIMITED, outcome: 'rate_limited', data: { reason: 'too_many_calls_awaiting_approval' } });
    // Another session is not affected.
    const other = new AbortController();
    const otherHeld = g.hold(info({ batch, n: 'other session' }), decision, sink(), other.signal).catch((error: unknown) => error);
    await waitFor(async () => (await system.approval.count({ where: { tenantId: tenant.id, arguments: { path: ['batch'], equals: batch } } })) === MAX_HELD_PER_SESSION + 1, {
      description: 'one approval row per held call',
    });
    // One decided (here: cancelled) makes room for one more.
    controllers[0]?.abort(new Error('cancelled by the client'));
    await held[0];
    const controller = new AbortController();
    const again = g.hold({ ...first, arguments: { batch, n: 'again' } }, decision, sink(), controller.signal).catch((error: unknown) => error);
    await pendingId(argumentsHash({ batch, n: 'again' }));
    for (const c of [...controllers, other, controller]) c.abort(new Error('done'));
    await Promise.all([...held, otherHeld, again]);
    expect(g.size).toBe(0);
    await g.close();
  });

  it('fails the call with -32031 when the approval cannot be recorded', async () => {
    const broken = createPrismaClient({ url: 'postgresql://portcullis_app@127.0.0.1:1/nowhere' });
    const g = new HeldCallGate({ store: new PrismaApprovalStore(broken), logger, timeoutMs: 1_000, pollMs: 600_000, progressMs: 1_000 });
    const error = await g.hold(info({ a: 1 }), decision, sink(), new AbortController().signal).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayRequestError);
    expect(error).toMatchObject({ rpcCode: APPROVAL_RPC.UNAVAILABLE, outcome: 'error' });
    expect((error as Error).message).not.toMatch(/127\.0\.0\.1|nowhere|portcullis_app/);
    await g.close();
    await broken.$disconnect();
  });
});
