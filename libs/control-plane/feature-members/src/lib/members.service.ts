import { Inject, Injectable } from '@nestjs/common';
import { CHANGE_CHANNELS, type AddMemberRequest, type MemberResponse, type PageQuery, type UpdateMemberRequest } from '@portcullis/contracts/api';
import { currentRole, roleGrants, type TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher, type StagedAuditEvent } from '@portcullis/control-plane/change-events';
import { PolicySnapshotWriter } from '@portcullis/control-plane/feature-policies';
import { isUniqueViolation, pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type MembershipRole, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { memberErrors } from './members.errors';
import { toMemberResponse } from './members.mapper';
import { MembersRepository } from './members.repository';
import { assertKeepsAnOwner, assertMayManage } from './members.rules';

@Injectable()
export class MembersService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: MembersRepository,
    private readonly audit: AuditEmitter,
    private readonly snapshots: PolicySnapshotWriter,
    private readonly changes: ChangePublisher,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<MemberResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.list(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toMemberResponse);
  }

  async add(scope: TenantScope, body: AddMemberRequest): Promise<MemberResponse> {
    const { row, snapshot, staged } = await this.snapshots.transaction(scope, null, async (tx) => {
      assertMayManage(await this.actorRole(scope, tx), null, body.role);
      const user = await this.repository.findOrCreateUser(tx, body.email);
      if (await this.repository.findByUser(scope.tenantId, tx, user.id)) throw memberErrors.alreadyMember(body.email);
      // The answer shows the name given here (or the email), never whether the person had an account or its name.
      const row = await this.repository.create(scope.tenantId, tx, user.id, body.role, body.name ?? body.email);
      // Roles are part of the compiled policy's directory: a new snapshot in the same transaction.
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'member.add');
      return { row, snapshot, staged: await this.stage(tx, scope, 'member.add', row.id, null, toMemberResponse(row), snapshot.version) };
    }).catch((error: unknown) => {
      throw isUniqueViolation(error) ? memberErrors.alreadyMember(body.email) : error;
    });
    await this.audit.publish(staged);
    await this.snapshots.announce(snapshot);
    return toMemberResponse(row);
  }

  /**
   * Changes a member's role. A member whose new role may no longer make API keys loses the agent-client keys they
   * created, as one who leaves does: they saw those secrets, and would otherwise keep an agent's access to the
   * gateway that their role no longer gives them.
   */
  async changeRole(scope: TenantScope, id: string, body: UpdateMemberRequest): Promise<MemberResponse> {
    const revokedAt = new Date();
    const { after, snapshot, revoked, cancelled, staged } = await this.snapshots.transaction(scope, null, async (tx) => {
      const ownerCount = await this.repository.lockOwners(scope.tenantId, tx);
      const existing = await this.repository.find(scope.tenantId, tx, id);
      if (!existing) throw memberErrors.notFound();
      assertMayManage(await this.actorRole(scope, tx), existing.role, body.role);
      assertKeepsAnOwner(ownerCount, existing.role, body.role);
      const updated = await this.repository.updateRole(scope.tenantId, tx, id, body.role);
      if (!updated) throw memberErrors.notFound();
      const losesKeys = roleGrants(existing.role, 'tenant:api-keys:write') && !roleGrants(body.role, 'tenant:api-keys:write');
      const { revoked, cancelled } = losesKeys ? await this.revokeCreatedKeys(scope, tx, existing.userId, revokedAt) : { revoked: [], cancelled: 0 };
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'member.role_change');
      const staged = [
        await this.stage(tx, scope, 'member.role_change', id, toMemberResponse(existing), toMemberResponse(updated), snapshot.version),
        ...(await this.stageRevoked(tx, scope, revoked, revokedAt, 'its creator may no longer make API keys')),
      ];
      return { after: updated, snapshot, revoked, cancelled, staged };
    });
    await this.announce(scope, staged, revoked.length, cancelled);
    await this.snapshots.announce(snapshot);
    return toMemberResponse(after);
  }

  /**
   * Removes a membership. The user's own keys go with it (cascade); agent-client keys the user created are revoked in
   * the same transaction, since the person leaving is the only one who ever saw their secrets (docs/policy.md).
   */
  async remove(scope: TenantScope, id: string): Promise<void> {
    const revokedAt = new Date();
    const { snapshot, revoked, cancelled, staged } = await this.snapshots.transaction(scope, null, async (tx) => {
      const ownerCount = await this.repository.lockOwners(scope.tenantId, tx);
      const existing = await this.repository.find(scope.tenantId, tx, id);
      if (!existing) throw memberErrors.notFound();
      assertMayManage(await this.actorRole(scope, tx), existing.role, null);
      assertKeepsAnOwner(ownerCount, existing.role, null);
      if (!(await this.repository.delete(scope.tenantId, tx, id))) throw memberErrors.notFound();
      const { revoked, cancelled } = await this.revokeCreatedKeys(scope, tx, existing.userId, revokedAt);
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'member.remove');
      const staged = [
        await this.stage(tx, scope, 'member.remove', id, toMemberResponse(existing), null, snapshot.version),
        ...(await this.stageRevoked(tx, scope, revoked, revokedAt, 'its creator was removed from the tenant')),
      ];
      return { revoked, cancelled, snapshot, staged };
    });
    await this.announce(scope, staged, revoked.length, cancelled);
    await this.snapshots.announce(snapshot);
  }

  /**
   * Revokes the agent-client keys `userId` created, in the transaction; as a revocation through the API keys' own
   * route, calls those keys made that wait for approval are cancelled.
   */
  private async revokeCreatedKeys(scope: TenantScope, tx: TenantTransaction, userId: string, revokedAt: Date) {
    const revoked = await this.repository.revokeKeysCreatedBy(scope.tenantId, tx, userId, revokedAt);
    const { count: cancelled } =
      revoked.length === 0
        ? { count: 0 }
        : await tx.approval.updateMany({
            where: { tenantId: scope.tenantId, apiKeyId: { in: revoked.map((key) => key.id) }, status: 'pending' },
            data: { status: 'cancelled', decisionNote: 'the API key that made the call was revoked' },
          });
    return { revoked, cancelled };
  }

  /** In the transaction: an audit event for each key revoked with the membership's change. */
  private async stageRevoked(
    tx: TenantTransaction,
    scope: TenantScope,
    revoked: Awaited<ReturnType<MembersService['revokeCreatedKeys']>>['revoked'],
    revokedAt: Date,
    reason: string,
  ): Promise<StagedAuditEvent[]> {
    return this.audit.stageMany(
      tx,
      revoked.map((key) => ({
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: 'api_key.revoke',
        target: { type: 'api_key', id: key.id },
        before: { id: key.id, name: key.name, agentClientId: key.agentClientId, revokedAt: null },
        after: { id: key.id, name: key.name, agentClientId: key.agentClientId, revokedAt: revokedAt.toISOString(), reason },
      })),
    );
  }

  /** After the commit: the audit events on their way, and the gateways and held calls told of revoked keys. */
  private async announce(scope: TenantScope, staged: readonly StagedAuditEvent[], revoked: number, cancelled: number): Promise<void> {
    await this.audit.publishMany(staged);
    if (revoked > 0) await this.changes.publish(CHANGE_CHANNELS.apiKeys, scope.tenantId);
    if (cancelled > 0) await this.changes.publish(CHANGE_CHANNELS.approvals, scope.tenantId);
  }

  /**
   * The acting member's role as it is now, read in the transaction (after the owners are locked, where that applies):
   * the role the access guard read may have changed since (a concurrent demotion), and only owners manage owners.
   */
  private async actorRole(scope: TenantScope, tx: TenantTransaction): Promise<MembershipRole> {
    const role = await currentRole(scope, tx);
    if (role === undefined) throw memberErrors.noLongerMember();
    // Still allowed to manage members at all (a demoted admin is not, whatever the target).
    if (!roleGrants(role, 'tenant:members:write')) throw memberErrors.roleNoLongerAllows(role);
    return role;
  }

  /** In the change's transaction: its audit event (ADR 0010, the outbox). */
  private stage(
    tx: TenantTransaction,
    scope: TenantScope,
    action: string,
    id: string,
    before: MemberResponse | null,
    after: MemberResponse | null,
    snapshotVersion: number,
  ): Promise<StagedAuditEvent> {
    return this.audit.stage(tx, { tenantId: scope.tenantId, actor: scope.actor, action, target: { type: 'member', id }, before, after, snapshotVersion });
  }
}
