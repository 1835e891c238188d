import { withTenant, type ApprovalStatus, type ApprovalTargetKind, type PortcullisPrismaClient, type Prisma } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import { storableJson } from '@portcullis/shared/util-redact';

/** What the gateway records when it holds a call. */
export interface NewApproval {
  readonly tenantId: TenantId;
  readonly requesterUserId: string | null;
  readonly agentClientId: string | null;
  /** The API key the held call presented: revoking it cancels the approval (control plane). */
  readonly apiKeyId: string | null;
  readonly mcpSessionId: string;
  readonly upstreamId: string;
  /** What the held request is about: an approver must tell a prompt from a tool of the same name. */
  readonly kind: ApprovalTargetKind;
  /** The JSON-RPC method held (tools/call, prompts/get, resources/read, completion/complete...). */
  readonly method: string;
  /** The target's name as its upstream knows it: a tool's or prompt's name, or a resource's URI. */
  readonly tool: string;
  readonly argumentsHash: string;
  /** The agent's exact arguments (what would run if approved). */
  readonly arguments: Readonly<Record<string, unknown>>;
  readonly reason: string;
  readonly snapshotVersion: number | null;
  readonly expiresAt: Date;
  /** Until when this replica is known to hold the call (`ApprovalStore.renew` moves it on while the call waits). */
  readonly heldUntil: Date;
  readonly traceId: string;
}

/** An approval as the holding gateway needs to see it. */
export interface ApprovalState {
  readonly id: string;
  readonly status: ApprovalStatus;
  readonly argumentsHash: string;
  readonly editedArguments: Readonly<Record<string, unknown>> | null;
  readonly decisionNote: string | null;
  readonly consumedAt: Date | null;
}

/** Where approvals live (Postgres in production). Every operation is scoped to one tenant. */
export interface ApprovalStore {
  create(approval: NewApproval): Promise<string>;
  /** The current state of some of a tenant's approvals (unknown ids are left out). */
  states(tenantId: TenantId, ids: readonly string[]): Promise<ApprovalState[]>;
  /**
   * Moves on the lease of pending approvals this replica holds (`heldUntil`): decisions are taken only within it. One
   * whose lease lapsed at `now` (the control plane showed it cancelled, and refused decisions) is marked `cancelled`
   * instead of coming back to pending. Resolves with how many of `ids` lapsed so.
   */
  renew(tenantId: TenantId, ids: readonly string[], heldUntil: Date, now: Date): Promise<number>;
  /** Marks an approved, unused approval as used; false if it is not (an approval is single use). */
  consume(tenantId: TenantId, id: string, now: Date): Promise<boolean>;
  /** pending → expired / cancelled (and approved but unused → cancelled); false if it was not so. */
  close(tenantId: TenantId, id: string, status: 'expired' | 'cancelled'): Promise<boolean>;
}

/**
 * The reviewer's copy with NUL characters and lone surrogates shown as U+FFFD (`storableJson`): Postgres text and jsonb
 * cannot hold either, and an agent's odd arguments must not make the approval unrecordable (a lone surrogate failed the
 * insert, and the call was answered as an outage, every time). The decision stays bound to the original (its hash).
 */
const storable = storableJson;

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The approvals table through the application role: each operation is one short `withTenant` transaction, so
 * row-level security applies as for the control plane. Only held calls come here (never the hot path).
 */
export class PrismaApprovalStore implements ApprovalStore {
  constructor(private readonly db: PortcullisPrismaClient) {}

  async create(approval: NewApproval): Promise<string> {
    const row = await withTenant(this.db, approval.tenantId, (tx) =>
      tx.approval.create({
        data: {
          tenantId: approval.tenantId,
          requesterUserId: approval.requesterUserId,
          agentClientId: approval.agentClientId,
          apiKeyId: approval.apiKeyId,
          mcpSessionId: approval.mcpSessionId,
          upstreamId: approval.upstreamId,
          kind: approval.kind,
          method: approval.method,
          tool: storable(approval.tool) as string,
          argumentsHash: approval.argumentsHash,
          arguments: storable(approval.arguments) as Prisma.InputJsonObject,
          reason: approval.reason,
          snapshotVersion: approval.snapshotVersion,
          expiresAt: approval.expiresAt,
          heldUntil: approval.heldUntil,
          traceId: approval.traceId,
        },
        select: { id: true },
      }),
    );
    return row.id;
  }

  async states(tenantId: TenantId, ids: readonly string[]): Promise<ApprovalState[]> {
    if (ids.length === 0) return [];
    const rows = await withTenant(this.db, tenantId, (tx) =>
      tx.approval.findMany({
        where: { tenantId, id: { in: [...ids] } },
        select: { id: true, status: true, argumentsHash: true, editedArguments: true, decisionNote: true, consumedAt: true },
      }),
    );
    return rows.map((row) => ({ ...row, editedArguments: isRecord(row.editedArguments) ? row.editedArguments : null }));
  }

  async renew(tenantId: TenantId, ids: readonly string[], heldUntil: Date, now: Date): Promise<number> {
    if (ids.length === 0) return 0;
    return withTenant(this.db, tenantId, async (tx) => {
      // Before, every pending row was renewed: one whose lease had lapsed (a replica cut off from the database for a
      // minute), shown cancelled by the control plane, became pending and decidable again.
      const lapsed = await tx.approval.updateMany({ where: { tenantId, id: { in: [...ids] }, status: 'pending', heldUntil: { lte: now } }, data: { status: 'cancelled' } });
      await tx.approval.updateMany({ where: { tenantId, id: { in: [...ids] }, status: 'pending' }, data: { heldUntil } });
      return lapsed.count;
    });
  }

  async consume(tenantId: TenantId, id: string, now: Date): Promise<boolean> {
    const { count } = await withTenant(this.db, tenantId, (tx) =>
      tx.approval.updateMany({ where: { tenantId, id, status: 'approved', consumedAt: null }, data: { consumedAt: now } }),
    );
    return count === 1;
  }

  async close(tenantId: TenantId, id: string, status: 'expired' | 'cancelled'): Promise<boolean> {
    // A cancellation also ends an approval decided but not yet acted on (approved, unused): the call it was for ended
    // without running, which the row says. Before, an agent's cancellation racing the decision left it approved and
    // unused for good. An expiry honours a decision that landed at the last moment (see `expire`).
    const closable: Prisma.ApprovalWhereInput =
      status === 'cancelled' ? { OR: [{ status: 'pending' }, { status: 'approved', consumedAt: null }] } : { status: 'pending' };
    const { count } = await withTenant(this.db, tenantId, (tx) => tx.approval.updateMany({ where: { tenantId, id, ...closable }, data: { status } }));
    return count === 1;
  }
}
