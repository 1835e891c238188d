import { computeAuditHash } from '@portcullis/audit/chain';
import pg from 'pg';
import { AUDIT_EVENT_COLUMNS, linkFromRow, type AuditEventRow } from './audit-row';

/**
 * For specs: runs `fn` as the database owner (`adminUrl`) in one transaction with triggers off, which is what someone
 * who can rewrite the database does.
 */
export async function asDatabaseOwner<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } finally {
    await client.end();
  }
}

/**
 * For specs: edits the reason of the tenant's event at `seq` and recomputes every hash from it to the head, the head
 * included: a rewrite the hash chain alone cannot reveal (signed anchors can).
 */
export async function rewriteChainFrom(adminUrl: string, tenantId: string, seq: number, reason: string): Promise<void> {
  await asDatabaseOwner(adminUrl, async (client) => {
    const { rows } = await client.query<AuditEventRow>(
      `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq`,
      [tenantId, seq],
    );
    let prevHash = rows[0]?.prev_hash ?? null;
    for (const row of rows) {
      const { prevHash: _prev, hash: _hash, ...fields } = linkFromRow(row);
      const edited = BigInt(row.seq) === BigInt(seq) ? { ...fields, reason } : fields;
      const hash = computeAuditHash(edited, prevHash);
      await client.query('UPDATE audit_events SET reason = $1, prev_hash = $2, hash = $3 WHERE id = $4', [edited.reason, prevHash, hash, row.id]);
      prevHash = hash;
    }
    await client.query('UPDATE audit_chain_heads SET last_hash = $1 WHERE tenant_id = $2', [prevHash, tenantId]);
  });
}

/** For specs: rehashes the tenant's whole chain as hash version 1, which is how events stored before version 2 are. */
export async function rehashAsVersion1(adminUrl: string, tenantId: string): Promise<void> {
  await asDatabaseOwner(adminUrl, async (client) => {
    const { rows } = await client.query<AuditEventRow>(`SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1 ORDER BY seq`, [tenantId]);
    let prevHash: string | null = null;
    for (const row of rows) {
      const { prevHash: _prev, hash: _hash, ...fields } = linkFromRow(row);
      const hash = computeAuditHash({ ...fields, hashVersion: 1 }, prevHash);
      await client.query('UPDATE audit_events SET hash_version = 1, prev_hash = $1, hash = $2 WHERE id = $3', [prevHash, hash, row.id]);
      prevHash = hash;
    }
    await client.query('UPDATE audit_chain_heads SET last_hash = $1 WHERE tenant_id = $2', [prevHash, tenantId]);
  });
}
