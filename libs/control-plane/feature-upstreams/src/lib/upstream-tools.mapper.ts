import type { UpstreamToolResponse, UpstreamToolState } from '@portcullis/contracts/api';
import { diffDefinitions } from '@portcullis/contracts/tool-pins';
import type { UpstreamToolRow } from './upstream-tools.repository';

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};

export function toolState(row: Pick<UpstreamToolRow, 'removedAt' | 'approvedHash' | 'contentHash'>): UpstreamToolState {
  if (row.removedAt !== null) return 'removed';
  if (row.approvedHash === null) return 'pending';
  return row.approvedHash === row.contentHash ? 'approved' : 'changed';
}

export function toUpstreamToolResponse(row: UpstreamToolRow): UpstreamToolResponse {
  const state = toolState(row);
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    state,
    definition: asRecord(row.definition),
    contentHash: row.contentHash,
    approvedDefinition: row.approvedDefinition === null ? null : asRecord(row.approvedDefinition),
    approvedHash: row.approvedHash,
    changes: state === 'changed' ? diffDefinitions(row.approvedDefinition, row.definition) : [],
    approvedAt: row.approvedAt?.toISOString() ?? null,
    approvedById: row.approvedById,
    firstSeenAt: row.firstSeenAt.toISOString(),
    lastSeenAt: row.lastSeenAt.toISOString(),
  };
}
