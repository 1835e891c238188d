import { Inject, Injectable } from '@nestjs/common';
import { CHANGE_CHANNELS, type AgentClientResponse, type CreateAgentClientRequest, type PageQuery } from '@portcullis/contracts/api';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher } from '@portcullis/control-plane/change-events';
import { PolicySnapshotWriter } from '@portcullis/control-plane/feature-policies';
import { isUniqueViolation, pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { agentClientErrors } from './agent-clients.errors';
import { toAgentClientResponse } from './agent-clients.mapper';
import { AgentClientsRepository } from './agent-clients.repository';

@Injectable()
export class AgentClientsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: AgentClientsRepository,
    private readonly audit: AuditEmitter,
    private readonly changes: ChangePublisher,
    private readonly snapshots: PolicySnapshotWriter,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<AgentClientResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.list(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toAgentClientResponse);
  }

  async get(scope: TenantScope, id: string): Promise<AgentClientResponse> {
    const row = await withTenant(this.db, scope.tenantId, (tx) => this.repository.find(scope.tenantId, tx, id));
    if (!row) throw agentClientErrors.notFound();
    return toAgentClientResponse(row);
  }

  async create(scope: TenantScope, body: CreateAgentClientRequest): Promise<AgentClientResponse> {
    const { row, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:agent-clients:write', async (tx) => {
      if (await this.repository.findByName(scope.tenantId, tx, body.name)) throw agentClientErrors.nameTaken(body.name);
      const row = await this.repository.create(scope.tenantId, tx, {
        name: body.name,
        description: body.description ?? null,
        kind: body.kind ?? 'service',
        createdById: scope.actor.userId,
      });
      // Agent clients are policy subjects (the compiled directory): a new snapshot in the same transaction.
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'agent_client.create');
      const staged = await this.audit.stage(tx, {
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: 'agent_client.create',
        target: { type: 'agent_client', id: row.id },
        before: null,
        after: toAgentClientResponse(row),
        snapshotVersion: snapshot.version,
      });
      return { row, snapshot, staged };
    }).catch((error: unknown) => {
      throw isUniqueViolation(error) ? agentClientErrors.nameTaken(body.name) : error;
    });
    await this.audit.publish(staged);
    await this.snapshots.announce(snapshot);
    return toAgentClientResponse(row);
  }

  /**
   * Deleting a client deletes its API keys: gateways are told to drop them. Its calls still waiting for a human's
   * approval are cancelled with it, as a revoked key's are (an approver should not be asked about them).
   */
  async delete(scope: TenantScope, id: string): Promise<void> {
    const { cancelled, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:agent-clients:write', async (tx) => {
      const existing = await this.repository.find(scope.tenantId, tx, id);
      const removed = existing ? await this.repository.delete(scope.tenantId, tx, id) : null;
      if (!existing || !removed) throw agentClientErrors.notFound();
      const { count: cancelled } = await tx.approval.updateMany({
        where: { tenantId: scope.tenantId, agentClientId: id, status: 'pending' },
        data: { status: 'cancelled', decisionNote: 'the agent client that made the call was deleted' },
      });
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'agent_client.delete');
      const staged = await this.audit.stage(tx, {
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: 'agent_client.delete',
        target: { type: 'agent_client', id },
        before: { ...toAgentClientResponse(existing), apiKeysDeleted: removed.apiKeys, approvalsCancelled: cancelled },
        after: null,
        snapshotVersion: snapshot.version,
      });
      return { cancelled, snapshot, staged };
    });
    await this.audit.publish(staged);
    await this.snapshots.announce(snapshot);
    // Always: a key created while the client was being deleted goes with it (cascade) but was not counted, and a gateway
    // may already have loaded it.
    await this.changes.publish(CHANGE_CHANNELS.apiKeys, scope.tenantId);
    // The gateways holding those calls end them now rather than at their next poll.
    if (cancelled > 0) await this.changes.publish(CHANGE_CHANNELS.approvals, scope.tenantId);
  }
}
