// Benchmarks' policy fixture: compile a policy with the real engine (TypeScript sources through jiti, as
// tools/bench/policy.mjs does) and make it a tenant's active snapshot the way the control plane's snapshot writer
// does: one transaction, per-tenant advisory lock, next version active, the previous one deactivated.
import { importSource } from '../../scripts/lib/harness.mjs';

/**
 * @param {import('pg').Client} db a connection allowed to write policy_snapshots (the bench uses the database owner)
 * @param {string} tenantId
 * @param {{ defaultEffect: 'allow' | 'deny', rules?: unknown[], agentClientIds?: string[] }} policy
 * @returns {Promise<{ version: number, committedAt: number }>} committedAt: performance.now() right after COMMIT
 */
export async function activatePolicy(db, tenantId, policy) {
  const { compile, serializeSnapshot } = await importSource('libs/policy/engine/src/index.ts');
  await db.query('BEGIN');
  try {
    await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`pcs:policy-snapshots:${tenantId}`]);
    const { rows } = await db.query('SELECT coalesce(max(version), 0) AS v FROM policy_snapshots WHERE tenant_id = $1', [tenantId]);
    const version = Number(rows[0].v) + 1;
    const source = {
      tenantId,
      version,
      defaultEffect: policy.defaultEffect,
      rules: policy.rules ?? [],
      directory: { members: [], groups: [], agentClients: (policy.agentClientIds ?? []).map((id) => ({ id })) },
      upstreams: [],
    };
    const compiled = compile(source);
    if (!compiled.ok) throw new Error(`bench policy does not compile: ${JSON.stringify(compiled.errors)}`);
    await db.query('UPDATE policy_snapshots SET active = false WHERE tenant_id = $1 AND active', [tenantId]);
    await db.query(
      `INSERT INTO policy_snapshots (tenant_id, version, ir_version, checksum, ir, source, active, comment)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, true, 'benchmark')`,
      [tenantId, version, compiled.snapshot.irVersion, compiled.snapshot.checksum, serializeSnapshot(compiled.snapshot), JSON.stringify(source)],
    );
    await db.query('COMMIT');
    return { version, committedAt: performance.now() };
  } catch (error) {
    await db.query('ROLLBACK');
    throw error;
  }
}
