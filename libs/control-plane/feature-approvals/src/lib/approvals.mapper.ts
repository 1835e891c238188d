import type { ApprovalResponse } from '@portcullis/contracts/api';
import type { ApprovalStatus, Prisma } from '@portcullis/data/db';
import { redactSecrets } from '@portcullis/shared/util-redact';

export const approvalSelect = {
  id: true,
  status: true,
  upstreamId: true,
  kind: true,
  method: true,
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
  heldUntil: true,
  consumedAt: true,
  traceId: true,
  createdAt: true,
} satisfies Prisma.ApprovalSelect;
export type ApprovalRow = Prisma.ApprovalGetPayload<{ select: typeof approvalSelect }>;

const asObject = (value: unknown): Record<string, unknown> | null =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;

/**
 * A pending approval past its expiry is expired, whether or not the holding gateway has marked it yet; one whose
 * holding replica stopped renewing its lease (`heldUntil` passed) is cancelled: nothing is waiting to run on a decision.
 */
export function effectiveStatus(row: Pick<ApprovalRow, 'status' | 'expiresAt' | 'heldUntil'>, now: Date): ApprovalStatus {
  if (row.status !== 'pending') return row.status;
  if (row.expiresAt.getTime() <= now.getTime()) return 'expired';
  return row.heldUntil !== null && row.heldUntil.getTime() <= now.getTime() ? 'cancelled' : 'pending';
}

/**
 * `full`: the agent's arguments as the call carries them, for those who may decide (an approver must see exactly what
 * would run); anyone else (auditors, audit events) gets them with credentials redacted, and `argumentsHash` only when
 * redaction hid nothing. The hash is an unsalted SHA-256 of the arguments in full: next to a redacted copy it let a
 * reader test guesses of the hidden value offline (a PIN in 9,000 tries), so it is null there.
 */
export function toApprovalResponse(row: ApprovalRow, now: Date, full = false): ApprovalResponse {
  const shown = full ? row.arguments : redactSecrets(row.arguments);
  return {
    id: row.id,
    status: effectiveStatus(row, now),
    upstreamId: row.upstreamId,
    kind: row.kind,
    method: row.method,
    // A held resource read's "tool" is its URI, which may carry credentials (`postgres://app:secret@db/x`).
    tool: full ? row.tool : (redactSecrets(row.tool) as string),
    arguments: asObject(shown) ?? {},
    argumentsHash: full || JSON.stringify(shown) === JSON.stringify(row.arguments) ? row.argumentsHash : null,
    // The policy's reason names the target (a resource by its URI) and only explains: shown redacted to everyone, as
    // the gateway now stores it. Rows stored before it did still hold the URI in full.
    reason: redactSecrets(row.reason) as string | null,
    snapshotVersion: row.snapshotVersion,
    requesterUserId: row.requesterUserId,
    agentClientId: row.agentClientId,
    decidedById: row.decidedById,
    decidedAt: row.decidedAt?.toISOString() ?? null,
    decisionNote: row.decisionNote,
    // Stored in full for the call; shown to everyone with credentials redacted (an approver wrote them, and nobody
    // decides on them again).
    editedArguments: asObject(redactSecrets(row.editedArguments)),
    expiresAt: row.expiresAt.toISOString(),
    consumedAt: row.consumedAt?.toISOString() ?? null,
    traceId: row.traceId,
    createdAt: row.createdAt.toISOString(),
  };
}
