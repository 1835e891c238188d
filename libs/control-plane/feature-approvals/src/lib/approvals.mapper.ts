import type { ApprovalResponse } from '@portcullis/contracts/api';
import type { ApprovalStatus, Prisma } from '@portcullis/data/db';
import { redactSecrets } from '@portcullis/shared/util-redact';

export const approvalSelect = {
  id: true,
  status: true,
  upstreamId: true,
  tool: true,
  arguments: true,
  argumentsHash: true,
  reason: true,
  snapshotVersion: true,
  requesterUserId: true,
  agentClientId: true,
  decidedById: true,
  decidedAt: true,
  decisionNote: true,
  editedArguments: true,
  expiresAt: true,
  consumedAt: true,
  traceId: true,
  createdAt: true,
} satisfies Prisma.ApprovalSelect;
export type ApprovalRow = Prisma.ApprovalGetPayload<{ select: typeof approvalSelect }>;

const asObject = (value: unknown): Record<string, unknown> | null =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;

/** A pending approval past its expiry is expired, whether or not the holding gateway has marked it yet. */
export function effectiveStatus(row: Pick<ApprovalRow, 'status' | 'expiresAt'>, now: Date): ApprovalStatus {
  return row.status === 'pending' && row.expiresAt.getTime() <= now.getTime() ? 'expired' : row.status;
}

export function toApprovalResponse(row: ApprovalRow, now: Date): ApprovalResponse {
  return {
    id: row.id,
    status: effectiveStatus(row, now),
    upstreamId: row.upstreamId,
    tool: row.tool,
    arguments: asObject(row.arguments) ?? {},
    argumentsHash: row.argumentsHash,
    reason: row.reason,
    snapshotVersion: row.snapshotVersion,
    requesterUserId: row.requesterUserId,
    agentClientId: row.agentClientId,
    decidedById: row.decidedById,
    decidedAt: row.decidedAt?.toISOString() ?? null,
    decisionNote: row.decisionNote,
    // Stored in full for the call; shown (to auditors too) with credentials redacted, as the original arguments are.
    editedArguments: asObject(redactSecrets(row.editedArguments)),
    expiresAt: row.expiresAt.toISOString(),
    consumedAt: row.consumedAt?.toISOString() ?? null,
    traceId: row.traceId,
    createdAt: row.createdAt.toISOString(),
  };
}
