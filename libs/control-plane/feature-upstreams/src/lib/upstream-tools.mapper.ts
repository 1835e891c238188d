import type { UpstreamToolResponse, UpstreamToolState } from '@portcullis/contracts/api';
import { diffDefinitions } from '@portcullis/contracts/tool-pins';
import { maskListedItem, type SecretMask } from '@portcullis/shared/util-redact';
import type { UpstreamToolRow } from './upstream-tools.repository';

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};

/**
 * A stored definition as it may be stored and shown: the upstream's configured secrets (`secretMaskOf` its opened
 * headers and env) masked as the gateway masks what agents are shown (`maskListedItem`). Test connections store
 * definitions masked; this masks again on the way out, for definitions stored before they did. The same object when
 * nothing needed masking.
 */
export function maskedDefinition(mask: SecretMask, definition: unknown): Record<string, unknown> {
  const record = asRecord(definition);
  const masked = maskListedItem(mask, record);
  return masked === record ? record : { ...masked };
}

export function toolState(row: Pick<UpstreamToolRow, 'removedAt' | 'approvedHash' | 'contentHash'>): UpstreamToolState {
  if (row.removedAt !== null) return 'removed';
  if (row.approvedHash === null) return 'pending';
  return row.approvedHash === row.contentHash ? 'approved' : 'changed';
}

/**
 * A stored definition for any member of the tenant: its texts masked with `mask` (the upstream's secrets, which no
 * member may read), the hashes as stored (of the definitions as the upstream wrote them, which the gateway compares).
 */
export function toUpstreamToolResponse(row: UpstreamToolRow, mask: SecretMask): UpstreamToolResponse {
  const state = toolState(row);
  const definition = maskedDefinition(mask, row.definition);
  const approvedDefinition = row.approvedDefinition === null ? null : maskedDefinition(mask, row.approvedDefinition);
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    state,
    definition,
    contentHash: row.contentHash,
    approvedDefinition,
    approvedHash: row.approvedHash,
    changes: state === 'changed' ? diffDefinitions(approvedDefinition, definition) : [],
    approvedAt: row.approvedAt?.toISOString() ?? null,
    approvedById: row.approvedById,
    firstSeenAt: row.firstSeenAt.toISOString(),
    lastSeenAt: row.lastSeenAt.toISOString(),
  };
}
