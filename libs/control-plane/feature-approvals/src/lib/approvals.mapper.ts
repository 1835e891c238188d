import type { ApprovalResponse } from '@portcullis/contracts/api';
import type { ApprovalStatus, Prisma } from '@portcullis/data/db';
import { compileRedactionPaths, redactSecrets, removedTexts, withoutTexts, withoutTextsIn, type PathRedactor } from '@portcullis/shared/util-redact';

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
 * How the arguments are shown: `full`, as the call carries them, for those who may decide (an approver must see exactly
 * what would run); `redacted` for anyone else (auditors, audit events), with credentials and the values at the tenant's
 * audit paths (`settings.audit.redactPaths`, as the gateway's call event) taken out, wherever else they appear too.
 */
export type ArgumentsView = { readonly full: true } | { readonly full: false; readonly paths: readonly string[] | null };

/**
 * The tenant's audit paths, compiled; paths that do not compile, or settings that do not parse (null: stored data gone
 * wrong), hide the arguments, as the gateway's call event does.
 */
function pathRedactor(paths: readonly string[] | null): PathRedactor | 'invalid' {
  if (paths === null) return 'invalid';
  try {
    return compileRedactionPaths(paths);
  } catch {
    return 'invalid';
  }
}

/** The readers' copy of the arguments (and the approver's edits), and the texts taken out of them. */
function redactedArguments(row: ApprovalRow, paths: readonly string[] | null): { args: unknown; edited: unknown; removed: string[] } {
  const redactor = pathRedactor(paths);
  if (redactor === 'invalid') {
    const hidden = { redacted: 'invalid redaction path in tenant settings' };
    return { args: hidden, edited: row.editedArguments === null ? null : hidden, removed: [] };
  }
  const byPaths: unknown[] = [];
  const byKeys: unknown[] = [];
  const atPaths = (value: unknown): unknown => (asObject(value) === null ? value : redactor({ arguments: value as Record<string, unknown> }, byPaths).arguments);
  const args = atPaths(row.arguments);
  const edited = atPaths(row.editedArguments);
  // Credentials inside what a path removed whole count as credentials too (their texts are looked for elsewhere).
  for (const value of byPaths) redactSecrets(value, byKeys);
  const keyed = { args: redactSecrets(args, byKeys), edited: redactSecrets(edited, byKeys) };
  const removed = [...removedTexts(byPaths), ...removedTexts(byKeys)];
  // A value taken out at one place is taken out where the arguments or the edits repeat it (`note: "card 4111…"`).
  return { args: withoutTextsIn(keyed.args, removed), edited: withoutTextsIn(keyed.edited, removed), removed };
}

/**
 * The approval as `view` shows it. Readers of the redacted view get `argumentsHash` only when redaction hid nothing:
 * the hash is an unsalted SHA-256 of the arguments in full, and next to a redacted copy it let a reader test guesses of
 * the hidden value offline (a PIN in 9,000 tries), so it is null there. Before, the tenant's audit paths were not
 * applied here: a card number they name was shown to auditors and kept in the approval's audit events (with the hash).
 */
export function toApprovalResponse(row: ApprovalRow, now: Date, view: ArgumentsView): ApprovalResponse {
  const redacted = view.full ? undefined : redactedArguments(row, view.paths);
  const shown = redacted === undefined ? row.arguments : redacted.args;
  const removed = redacted?.removed ?? [];
  return {
    id: row.id,
    status: effectiveStatus(row, now),
    upstreamId: row.upstreamId,
    kind: row.kind,
    method: row.method,
    // A held resource read's "tool" is its URI, which may carry credentials (`postgres://app:secret@db/x`).
    tool: view.full ? row.tool : withoutTexts(redactSecrets(row.tool) as string, removed),
    arguments: asObject(shown) ?? {},
    argumentsHash: view.full || JSON.stringify(shown) === JSON.stringify(row.arguments) ? row.argumentsHash : null,
    // The policy's reason names the target (a resource by its URI) and only explains: shown redacted to everyone, as
    // the gateway now stores it. Rows stored before it did still hold the URI in full.
    reason: row.reason === null ? null : withoutTexts(redactSecrets(row.reason) as string, removed),
    snapshotVersion: row.snapshotVersion,
    requesterUserId: row.requesterUserId,
    agentClientId: row.agentClientId,
    decidedById: row.decidedById,
    decidedAt: row.decidedAt?.toISOString() ?? null,
    decisionNote: row.decisionNote,
    // Stored in full for the call; shown to everyone with credentials redacted (an approver wrote them, and nobody
    // decides on them again), and to readers of the redacted view as the arguments are.
    editedArguments: asObject(redacted === undefined ? redactSecrets(row.editedArguments) : redacted.edited),
    expiresAt: row.expiresAt.toISOString(),
    consumedAt: row.consumedAt?.toISOString() ?? null,
    traceId: row.traceId,
    createdAt: row.createdAt.toISOString(),
  };
}
