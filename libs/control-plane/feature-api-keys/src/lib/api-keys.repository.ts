import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import type { TenantTransaction } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import { apiKeySelect, type ApiKeyRow } from './api-keys.mapper';

@Injectable()
export class ApiKeysRepository {
  async list(tenantId: TenantId, tx: TenantTransaction, page: PageRequest): Promise<ApiKeyRow[]> {
    return tx.apiKey.findMany({
      where: { tenantId, ...(page.after === undefined ? {} : { id: { gt: page.after } }) },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: apiKeySelect,
    });
  }

  async find(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<ApiKeyRow | null> {
    return tx.apiKey.findFirst({ where: { tenantId, id }, select: apiKeySelect });
  }

  /**
   * The agent client a key is being created for, locked (FOR NO KEY UPDATE) to the end of the transaction: two keys
   * created for it at once are counted against its bound one after the other.
   */
  async agentClient(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<{ disabled: boolean } | null> {
    const rows = await tx.$queryRaw<{ disabled: boolean }[]>`
      SELECT disabled FROM agent_clients WHERE tenant_id = ${tenantId}::uuid AND id = ${id}::uuid FOR NO KEY UPDATE`;
    return rows[0] ?? null;
  }

  /** The keys that still work (neither revoked nor expired at `now`): the agent client's, and the whole tenant's. */
  async liveKeys(tenantId: TenantId, tx: TenantTransaction, agentClientId: string, now: Date): Promise<{ agentClient: number; tenant: number }> {
    const [row] = await tx.$queryRaw<{ agent_client: bigint; tenant: bigint }[]>`
      SELECT count(*) FILTER (WHERE agent_client_id = ${agentClientId}::uuid) AS agent_client, count(*) AS tenant
      FROM api_keys
      WHERE tenant_id = ${tenantId}::uuid AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ${now})`;
    return { agentClient: Number(row?.agent_client ?? 0), tenant: Number(row?.tenant ?? 0) };
  }

  async create(
    tenantId: TenantId,
    tx: TenantTransaction,
    key: { name: string; keyHash: string; displayPrefix: string; agentClientId: string; createdById: string; expiresAt: Date | null },
  ): Promise<ApiKeyRow> {
    return tx.apiKey.create({ data: { tenantId, ...key }, select: apiKeySelect });
  }

  /**
   * Sets revokedAt once (revoking again keeps the first time). Null when no such key; `revoked` says whether this
   * update set it, rather than a revocation that committed first (one this update waited for, on the key's row).
   */
  async revoke(tenantId: TenantId, tx: TenantTransaction, id: string, at: Date): Promise<{ row: ApiKeyRow; revoked: boolean } | null> {
    const { count } = await tx.apiKey.updateMany({ where: { tenantId, id, revokedAt: null }, data: { revokedAt: at } });
    const row = await this.find(tenantId, tx, id);
    return row ? { row, revoked: count > 0 } : null;
  }
}
