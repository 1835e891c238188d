import { verifyChain } from '@portcullis/audit/chain';
import { AUDIT_EVENT_COLUMNS, linkFromRow, type AuditEventRow } from '@portcullis/audit/core';
import type { AuditVerifyResponse } from '@portcullis/contracts/api';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';

interface ChainHead {
  last_seq: bigint;
  last_hash: string | null;
  pruned_through_seq: bigint;
  pruned_through_hash: string | null;
}

/**
 * Verifies a tenant's chain through the application role (row-level security, one short `withTenant` transaction
 * per keyset page on `(tenant_id, seq)`: constant memory). Same rules as `npm run audit:verify -- --tenant`: starts at
 * the retention checkpoint, checks every link with libs/audit/chain, and ends at the chain head read when it began,
 * so events appended meanwhile are neither half-read nor mistaken for a broken tail.
 */
export async function verifyTenantChainScoped(
  db: PortcullisPrismaClient,
  tenantId: TenantId,
  pageSize = 2_000,
): Promise<AuditVerifyResponse> {
  const head = await withTenant(db, tenantId, async (tx) => {
    const rows = await tx.$queryRawUnsafe<ChainHead[]>(
      'SELECT last_seq, last_hash, pruned_through_seq, pruned_through_hash FROM audit_chain_heads WHERE tenant_id = $1::uuid',
      tenantId,
    );
    return rows[0] ?? { last_seq: 0n, last_hash: null, pruned_through_seq: 0n, pruned_through_hash: null };
  });
  const headSeq = BigInt(head.last_seq);
  const from = { seq: BigInt(head.pruned_through_seq), prevHash: head.pruned_through_hash };
  let state = from;
  let checked = 0;
  while (state.seq < headSeq) {
    const rows = await withTenant(db, tenantId, (tx) =>
      tx.$queryRawUnsafe<AuditEventRow[]>(
        `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events
         WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
        tenantId,
        state.seq,
        headSeq,
        pageSize,
      ),
    );
    if (rows.length === 0) break;
    const verdict = verifyChain(rows.map(linkFromRow), state);
    if (!verdict.ok) return { ok: false, checked: checked + verdict.checked, brokenAt: verdict.brokenAt };
    checked += verdict.checked;
    state = { seq: BigInt((rows[rows.length - 1] as AuditEventRow).seq), prevHash: verdict.lastHash };
  }
  if (state.seq !== headSeq || state.prevHash !== head.last_hash) {
    return { ok: false, checked, brokenAt: { id: null, seq: (state.seq + 1n).toString(), problem: 'head_mismatch' } };
  }
  return {
    ok: true,
    checked,
    fromSeq: from.seq.toString(),
    fromHash: from.prevHash,
    lastSeq: state.seq.toString(),
    lastHash: state.prevHash,
  };
}
