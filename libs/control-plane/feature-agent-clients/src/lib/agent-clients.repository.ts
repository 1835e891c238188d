import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import type { AgentClientKind, TenantTransaction } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import { agentClientSelect, type AgentClientRow } from './agent-clients.mapper';

@Injectable()
export class AgentClientsRepository {
  async list(tenantId: TenantId, tx: TenantTransaction, page: PageRequest): Promise<AgentClientRow[]> {
    return tx.agentClient.findMany({
      where: { tenantId, ...(page.after === undefined ? {} : { id: { gt: page.after } }) },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: agentClientSelect,
    });
  }

  async find(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<AgentClientRow | null> {
    return tx.agentClient.findUnique({ where: { tenantId_id: { tenantId, id } }, select: agentClientSelect });
  }

  async findByName(tenantId: TenantId, tx: TenantTransaction, name: string): Promise<AgentClientRow | null> {
    return tx.agentClient.findUnique({ where: { tenantId_name: { tenantId, name } }, select: agentClientSelect });
  }

  async create(
    tenantId: TenantId,
    tx: TenantTransaction,
    client: { name: string; description: string | null; kind: AgentClientKind; createdById: string },
  ): Promise<AgentClientRow> {
    return tx.agentClient.create({ data: { tenantId, ...client }, select: agentClientSelect });
  }

  /** Deletes the client and (by cascade) its API keys; returns how many keys went with it, or null if none such. */
  async delete(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<{ apiKeys: number } | null> {
    const apiKeys = await tx.apiKey.count({ where: { tenantId, agentClientId: id } });
    const { count } = await tx.agentClient.deleteMany({ where: { tenantId, id } });
    return count === 0 ? null : { apiKeys };
  }
}
