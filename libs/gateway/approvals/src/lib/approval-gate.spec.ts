import { composeHooks, credentialsAfterApproval, NO_STREAM, type RequestHooks, type RequestInfo } from '@portcullis/gateway/core';
import type { SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { REDACTED } from '@portcullis/shared/util-redact';
import { describe, expect, it, vi } from 'vitest';
import { HeldCallGate } from './approval-gate';
import type { ApprovalState, ApprovalStore, NewApproval } from './approval-store';

const TENANT = '019a0000-0000-7000-8000-0000000000aa';
const AGENT = '019a0000-0000-7000-8000-0000000000bb';
const APPROVAL = '019a0000-0000-7000-8000-0000000000dd';

/** Keeps what the gate records; every approval it is asked about is approved (as recorded). */
class RecordingStore implements ApprovalStore {
  readonly created: NewApproval[] = [];
  private recorded: (() => void) | undefined;
  /** Settles once the gate has recorded an approval. */
  readonly recordedOne = new Promise<void>((resolve) => (this.recorded = resolve));
  /** The first approval recorded is APPROVAL; later ones get ids of their own. */
  private readonly ids: string[] = [];
  async create(approval: NewApproval): Promise<string> {
    this.created.push(approval);
    const id = this.ids.length === 0 ? APPROVAL : `019a0000-0000-7000-8000-${String(this.ids.length).padStart(12, '0')}`;
    this.ids.push(id);
    this.recorded?.();
    return id;
  }
  async states(_tenantId: string, ids: readonly string[]): Promise<ApprovalState[]> {
    return ids.map((id) => ({
      id,
      status: 'approved',
      argumentsHash: this.created[this.ids.indexOf(id)]?.argumentsHash ?? '',
      editedArguments: null,
      decisionNote: null,
      consumedAt: null,
    }));
  }
  async renew(_tenantId: string, _ids: readonly string[]): Promise<number> {
    // Leases are not looked at here.
    return 0;
  }
  /** The approvals marked used (`consumedAt`: "when the approved call was executed"). */
  readonly consumed: string[] = [];
  async consume(_tenantId: string, id: string): Promise<boolean> {
    this.consumed.push(id);
    return true;
  }
  async close(_tenantId: string, _id: string, _status: 'expired' | 'cancelled'): Promise<boolean> {
    return true;
  }
}

const record = {
  id: 'session-1',
  tenantId: TENANT,
  principalKind: 'agent_client',
  principalId: AGENT,
  protocolVersion: '2025-11-25',
  clientInfo: { name: 'spec', version: '1' },
  clientCapabilities: {},
  upstreams: {},
  createdAt: 0,
} as unknown as SessionRecord;
const upstream = {
  id: '019a0000-0000-7000-8000-0000000000cc',
  tenantId: TENANT,
  name: 'db',
  toolPrefix: 'db',
} as unknown as UpstreamConfig;

/** A gate over a `RecordingStore`, with a timeout and poll no spec here reaches. */
function recordingGate(): { store: RecordingStore; gate: HeldCallGate } {
  const store = new RecordingStore();
  const gate = new HeldCallGate({ store, logger: createLogger({ service: 'spec', level: 'silent' }), timeoutMs: 30_000, pollMs: 600_000, progressMs: 1_000 });
  return { store, gate };
}

describe('HeldCallGate (recording store)', () => {
  it('refuses arguments larger than an approver may edit (64 KiB), recording nothing; ones within it are held (found by a review)', async () => {
    const { store, gate } = recordingGate();
    const decision = { reason: 'require_approval: rule r1', ruleIds: ['r1'], snapshotVersion: 1 };
    const hold = (sql: string) =>
      gate.hold({ record, method: 'tools/call', requestId: 1, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'run_sql' }, arguments: { sql } }, decision, NO_STREAM, new AbortController().signal);
    // 3.5 MiB: within the gateway's default 4 MiB body limit, and once stored, in every listing of the queue.
    await expect(hold('x'.repeat(3.5 * 1024 * 1024))).rejects.toMatchObject({ rpcCode: -32602, message: expect.stringMatching(/too large to review \(over 64 KiB\)/) });
    // Counted in UTF-8 bytes, as the approver's edit is: 30,000 three-byte characters are 90,000 bytes.
    await expect(hold('€'.repeat(30_000))).rejects.toMatchObject({ rpcCode: -32602 });
    expect(store.created).toEqual([]);
    const within = hold('SELECT 1; -- ' + 'x'.repeat(60 * 1024));
    within.catch(() => undefined);
    await store.recordedOne;
    expect(store.created).toHaveLength(1);
    await gate.close(0);
  });

  // Before, a call held past its key's expiry stayed approvable (pending in the API, approvals recorded) though the
  // check after the wait would refuse it; a revoked key's approvals are cancelled by the control plane, not an expired
  // one's.
  it("cancels a held call, and its approval, when the call's key expires before a decision", async () => {
    const closed: { id: string; status: string }[] = [];
    const store = new (class extends RecordingStore {
      override async close(_tenantId: string, id: string, status: 'expired' | 'cancelled'): Promise<boolean> {
        closed.push({ id, status });
        return true;
      }
      override async states(): Promise<ApprovalState[]> {
        return []; // nobody decides
      }
    })();
    const key = '019a0000-0000-7000-8000-0000000000ee';
    const expiresAt = Date.now() + 150;
    const gate = new HeldCallGate({
      store,
      logger: createLogger({ service: 'spec', level: 'silent' }),
      timeoutMs: 30_000,
      pollMs: 600_000,
      progressMs: 1_000,
      credentialExpiresAt: (credentialId) => (credentialId === key ? expiresAt : null),
    });
    const decision = { reason: 'require_approval: rule r1', ruleIds: ['r1'], snapshotVersion: 4 };
    const call = (credentialId: string) =>
      gate.hold({ record, method: 'tools/call', requestId: 1, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'rm' }, arguments: {}, credentialId }, decision, NO_STREAM, new AbortController().signal);
    const expiring = call(key);
    await store.recordedOne;
    const other = new AbortController();
    const lasting = gate.hold({ record, method: 'tools/call', requestId: 2, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'rm' }, arguments: {}, credentialId: '019a0000-0000-7000-8000-0000000000ef' }, decision, NO_STREAM, other.signal);
    lasting.catch(() => undefined);
    await expect(expiring).rejects.toMatchObject({ rpcCode: -32003, data: { reason: 'credential_no_longer_valid', approvalId: APPROVAL } });
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
    expect(closed).toEqual([{ id: APPROVAL, status: 'cancelled' }]);
    // A key that does not expire meanwhile keeps its call waiting.
    expect(gate.size).toBe(1);
    other.abort();
    await expect(lasting).rejects.toMatchObject({ data: { reason: 'approval_cancelled' } });
    await gate.close();
  });

  it("stores the policy's reason redacted: it names a resource by its URI, which may carry credentials", async () => {
    const { store, gate } = recordingGate();
    const uri = 'postgres://app:hunter2secret@db.internal/prod?access_token=tok_abcdef123456';
    const info: RequestInfo = {
      record,
      method: 'resources/read',
      requestId: 1,
      traceId: 'trace-1',
      startedAt: 0,
      target: { upstream, kind: 'resource', name: uri },
    };
    // As the policy engine words it (`describeTarget`): the raw URI, quoted.
    const decision = {
      reason: `require_approval: rule r1 matched resource ${JSON.stringify(uri)} on upstream "db"`,
      ruleIds: ['r1'],
      snapshotVersion: 4,
    };
    const held = gate.hold(info, decision, NO_STREAM, new AbortController().signal);
    // Recorded and waiting; then the (periodic) check finds it approved.
    await store.recordedOne;
    await vi.waitFor(() => expect(gate.size).toBe(1));
    await gate.checkAll();
    await expect(held).resolves.toMatchObject({ decision: 'require_approval', approvalId: APPROVAL });
    await gate.close();

    const [approval] = store.created;
    expect(approval?.reason).not.toContain('hunter2');
    expect(approval?.reason).not.toContain('tok_abcdef123456');
    expect(approval?.reason).toContain(
      `require_approval: rule r1 matched resource "postgres://app:${REDACTED}@db.internal/prod?access_token=${REDACTED}`,
    );
    // The URI itself is kept whole: the approver decides on exactly what would be read (the API redacts it for others).
    expect(approval?.tool).toBe(uri);
    expect(approval).toMatchObject({ kind: 'resource', method: 'resources/read' });
  });

  it('records what is held: a prompt is not a tool of the same name, and a completion is not the call itself', async () => {
    const { store, gate } = recordingGate();
    const decision = { reason: 'require_approval: rule r1', ruleIds: ['r1'], snapshotVersion: 4 };
    const requests: RequestInfo[] = [
      { record, method: 'tools/call', requestId: 1, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'delete_all' }, arguments: { scope: 'all' } },
      { record, method: 'prompts/get', requestId: 2, traceId: 't', startedAt: 0, target: { upstream, kind: 'prompt', name: 'delete_all' }, arguments: { scope: 'all' } },
      { record, method: 'completion/complete', requestId: 3, traceId: 't', startedAt: 0, target: { upstream, kind: 'prompt', name: 'delete_all' }, arguments: { scope: 'a' } },
      { record, method: 'resources/subscribe', requestId: 4, traceId: 't', startedAt: 0, target: { upstream, kind: 'resource', name: 'file:///srv/log' } },
    ];
    const held = requests.map((info) => gate.hold(info, decision, NO_STREAM, new AbortController().signal));
    await vi.waitFor(() => expect(gate.size).toBe(requests.length));
    await gate.checkAll();
    // All approved as held (the recording store approves everything).
    expect((await Promise.all(held)).map((admission) => admission.approvalId)).toHaveLength(requests.length);
    await gate.close();

    expect(store.created.map(({ kind, method, tool }) => ({ kind, method, tool }))).toEqual([
      { kind: 'tool', method: 'tools/call', tool: 'delete_all' },
      { kind: 'prompt', method: 'prompts/get', tool: 'delete_all' },
      { kind: 'prompt', method: 'completion/complete', tool: 'delete_all' },
      { kind: 'resource', method: 'resources/subscribe', tool: 'file:///srv/log' },
    ]);
  });
  it('refuses to hold arguments it could not show the approver as they would run: a NUL in a key or a value, a number JSON cannot carry', async () => {
    const { store, gate } = recordingGate();
    const decision = { reason: 'require_approval: rule r1', ruleIds: ['r1'], snapshotVersion: 4 };
    const hold = (args: Record<string, unknown>) =>
      gate.hold({ record, method: 'tools/call', requestId: 1, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'run_sql' }, arguments: args }, decision, NO_STREAM, new AbortController().signal);
    // Stored, NUL becomes U+FFFD: these two keys became one, and the approver was shown only `SELECT 1`.
    await expect(hold({ 'sql\u0000': 'DROP TABLE users', 'sql\uFFFD': 'SELECT 1' })).rejects.toMatchObject({ rpcCode: -32602, message: expect.stringContaining('NUL') });
    await expect(hold({ sql: 'SELECT 1\u0000; DROP TABLE users' })).rejects.toMatchObject({ rpcCode: -32602, message: expect.stringContaining('NUL') });
    await expect(hold({ nested: [{ limit: Number.POSITIVE_INFINITY }] })).rejects.toMatchObject({ rpcCode: -32602, message: expect.stringContaining('number too large') });
    expect(store.created).toEqual([]);
    await gate.close();
  });

  it('marks an approval used only once every check after the wait let the call through', async () => {
    const decision = { reason: 'require_approval: rule r1', ruleIds: ['r1'], snapshotVersion: 4 };
    const info: RequestInfo = { record, method: 'tools/call', requestId: 1, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'rm' }, arguments: { path: '/x' }, credentialId: '019a0000-0000-7000-8000-0000000000ee' };
    // As data-plane.ts composes them: the policy's decision, the hold, then the credential check after the wait.
    const run = async (keyStillValid: boolean) => {
      const { store, gate } = recordingGate();
      const policy: RequestHooks = { admit: () => decision };
      const hold: RequestHooks = { admit: (request, sink, signal, prior) => (prior?.approvalId === undefined ? gate.hold(request, decision, sink, signal) : undefined) };
      const hooks = composeHooks([policy, hold, credentialsAfterApproval({ stillValid: () => keyStillValid })]);
      // The engine runs `confirm` once every hook admitted the call, right before it runs.
      const verdict = Promise.resolve(hooks.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).then(
        async (admission) => {
          await admission?.confirm?.();
          return admission?.approvalId;
        },
        (error: { data?: { reason?: string } }) => error.data?.reason,
      );
      await store.recordedOne;
      await gate.checkAll();
      const outcome = await verdict;
      await gate.close();
      return { outcome, consumed: store.consumed };
    };
    // The key was revoked while the call waited: refused, and the approval not recorded as executed (it was before).
    expect(await run(false)).toEqual({ outcome: 'credential_no_longer_valid', consumed: [] });
    expect(await run(true)).toEqual({ outcome: APPROVAL, consumed: [APPROVAL] });
  });
});

describe('HeldCallGate.renewLeases', () => {
  /** Approvals never decided; what each renewal was asked to move on, per tenant. */
  class UndecidedStore extends RecordingStore {
    readonly renewed = new Map<string, number>();
    override async states(): Promise<ApprovalState[]> {
      return [];
    }
    override async renew(tenantId: string, ids: readonly string[]): Promise<number> {
      this.renewed.set(tenantId, (this.renewed.get(tenantId) ?? 0) + ids.length);
      return 0;
    }
  }

  // Found by review: each held call copied its tenant's list built so far, so 32,000 held calls of one tenant took 8.2 s
  // of the event loop every tenant shares, every renewal (a third of the lease). The bound is generous: linear work takes
  // tens of milliseconds here.
  it("renews every held call once, one update per tenant, in time linear in the calls held", async () => {
    const store = new UndecidedStore();
    const gate = new HeldCallGate({ store, logger: createLogger({ service: 'spec', level: 'silent' }), timeoutMs: 600_000, pollMs: 600_000, progressMs: 600_000, leaseMs: 600_000 });
    const controller = new AbortController();
    const OTHER = '019a0000-0000-7000-8000-0000000000ee';
    const count = 30_000;
    for (let i = 0; i < count; i += 1) {
      const tenantId = i % 1_000 === 0 ? OTHER : TENANT;
      // At most 32 held calls a session (MAX_HELD_PER_SESSION): many sessions, as many agents of one tenant hold.
      const session = { ...record, id: `session-${Math.floor(i / 32)}`, tenantId } as SessionRecord;
      const info = { record: session, method: 'tools/call', requestId: i, traceId: 't', startedAt: 0, target: { upstream: { ...upstream, tenantId }, kind: 'tool', name: 'rm' }, arguments: {} } as unknown as RequestInfo;
      gate.hold(info, { reason: 'require_approval: rule r1', ruleIds: ['r1'], snapshotVersion: 1 }, NO_STREAM, controller.signal).catch(() => undefined);
    }
    while (gate.size < count) await new Promise((resolve) => setTimeout(resolve, 5));
    const started = performance.now();
    await gate.renewLeases();
    const took = performance.now() - started;
    expect(Object.fromEntries(store.renewed)).toEqual({ [TENANT]: count - count / 1_000, [OTHER]: count / 1_000 });
    expect(took).toBeLessThan(1_000);
    controller.abort();
    await gate.close(10);
  }, 60_000);
});
