import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import type { ApprovalStatus, ApprovalTargetKind, Prisma, TenantTransaction } from '@portcullis/data/db';
import type { TenantId, UserId } from '@portcullis/shared/util-ids';
import { approvalSelect, type ApprovalRow } from './approvals.mapper';

/** What a list of approvals is narrowed to (each filter optional). */
export interface ApprovalFilter {
  readonly status?: ApprovalStatus | undefined;
  /** Only approvals of tools, prompts or resources. */
  readonly kind?: ApprovalTargetKind | undefined;
}

export interface ApprovalDecision {
  readonly status: 'approved' | 'denied';
  readonly decidedById: UserId;
  readonly note: string | null;
  readonly editedArguments?: Readonly<Record<string, unknown>>;
}

@Injectable()
export class ApprovalsRepository {
  /** Oldest first (ids are time-ordered), so an approver works through the queue in order. */
  async list(tenantId: TenantId, tx: TenantTransaction, page: PageRequest, filter: ApprovalFilter, now: Date): Promise<ApprovalRow[]> {
    return tx.approval.findMany({
      where: {
        tenantId,
        ...(page.after === undefined ? {} : { id: { gt: page.after } }),
        ...(filter.kind === undefined ? {} : { kind: filter.kind }),
        ...statusFilter(filter.status, now),
      },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: approvalSelect,
    });
  }

  async find(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<ApprovalRow | null> {
    return tx.approval.findFirst({ where: { tenantId, id }, select: approvalSelect });
  }

  /** Decides a pending, unexpired approval whose holder still holds it; null when it is not (any more). */
  async decide(tenantId: TenantId, tx: TenantTransaction, id: string, decision: ApprovalDecision, now: Date): Promise<ApprovalRow | null> {
    const { count } = await tx.approval.updateMany({
      where: { tenantId, id, ...WAITING(now) },
      data: {
        status: decision.status,
        decidedById: decision.decidedById,
        decidedAt: now,
        decisionNote: decision.note,
        ...(decision.editedArguments ? { editedArguments: decision.editedArguments as Prisma.InputJsonObject } : {}),
      },
    });
    return count === 0 ? null : this.find(tenantId, tx, id);
  }

  /**
   * Whether the user holds or held an API key of this agent client (they could be the one behind the call): a key
   * issued to them, or one they created (its secret was shown to its creator). Revoked and expired keys count too:
   * revoking one's key after the call was held must not open the way to approving it.
   */
  async userActsAsAgent(tenantId: TenantId, tx: TenantTransaction, agentClientId: string, userId: UserId): Promise<boolean> {
    return (await tx.apiKey.count({ where: { tenantId, agentClientId, OR: [{ userId }, { createdById: userId }] } })) > 0;
  }
}

/** Pending, unexpired, and its holding replica's lease not lapsed (rows from before the lease have none). */
const WAITING = (now: Date): Prisma.ApprovalWhereInput => ({
  status: 'pending',
  expiresAt: { gt: now },
  OR: [{ heldUntil: null }, { heldUntil: { gt: now } }],
});

function statusFilter(status: ApprovalStatus | undefined, now: Date): Prisma.ApprovalWhereInput {
  switch (status) {
    case undefined:
      return {};
    case 'pending':
      return WAITING(now);
    case 'expired':
      return { OR: [{ status: 'expired' }, { status: 'pending', expiresAt: { lte: now } }] };
    case 'cancelled':
      // A holder that stopped renewing its lease (before the expiry) left its call cancelled (`effectiveStatus`).
      return { OR: [{ status: 'cancelled' }, { status: 'pending', expiresAt: { gt: now }, heldUntil: { lte: now } }] };
    default:
      return { status };
  }
}
