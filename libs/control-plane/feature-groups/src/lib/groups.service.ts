import { Inject, Injectable } from '@nestjs/common';
import type {
  AddGroupMemberRequest,
  CreateGroupRequest,
  GroupMemberResponse,
  GroupResponse,
  PageQuery,
  UpdateGroupRequest,
} from '@portcullis/contracts/api';
import { assertRoleStillGrants, assertTenantWritable, type TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, type StagedAuditEvent } from '@portcullis/control-plane/change-events';
import { PolicySnapshotWriter, type WrittenSnapshot } from '@portcullis/control-plane/feature-policies';
import { isUniqueViolation, pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { Prisma, withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { groupErrors } from './groups.errors';
import { toGroupMemberResponse, toGroupResponse } from './groups.mapper';
import { GroupsRepository } from './groups.repository';

const isForeignKeyViolation = (error: unknown): boolean =>
  error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2003';

/**
 * Groups and their members. Policies name a group by its `externalId`, and the compiled snapshot resolves each
 * user's groups, so creating or deleting a group and changing its members write a new snapshot in the same
 * transaction; renaming (display name only) does not affect enforcement and writes none.
 */
@Injectable()
export class GroupsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: GroupsRepository,
    private readonly audit: AuditEmitter,
    private readonly snapshots: PolicySnapshotWriter,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<GroupResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.list(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toGroupResponse);
  }

  async get(scope: TenantScope, id: string): Promise<GroupResponse> {
    const row = await withTenant(this.db, scope.tenantId, (tx) => this.repository.find(scope.tenantId, tx, id));
    if (!row) throw groupErrors.notFound();
    return toGroupResponse(row);
  }

  async create(scope: TenantScope, body: CreateGroupRequest): Promise<GroupResponse> {
    const { row, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:groups:write', async (tx) => {
      if (await this.repository.findByExternalId(scope.tenantId, tx, body.externalId)) throw groupErrors.externalIdTaken(body.externalId);
      const row = await this.repository.create(scope.tenantId, tx, body);
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'group.create');
      return { row, snapshot, staged: await this.stage(tx, scope, 'group.create', row.id, null, toGroupResponse(row), snapshot) };
    }).catch((error: unknown) => {
      throw isUniqueViolation(error) ? groupErrors.externalIdTaken(body.externalId) : error;
    });
    await this.finish(staged, snapshot);
    return toGroupResponse(row);
  }

  async rename(scope: TenantScope, id: string, body: UpdateGroupRequest): Promise<GroupResponse> {
    const { after, staged } = await withTenant(this.db, scope.tenantId, async (tx) => {
      await assertRoleStillGrants(scope, 'tenant:groups:write', tx);
      await assertTenantWritable(scope.tenantId, tx);
      // Locked first: two renames at once both read the old name otherwise, and the second recorded it as what it
      // replaced (its update waited for the first's and replaced the first's name).
      const before = await this.repository.findForUpdate(scope.tenantId, tx, id);
      const after = before ? await this.repository.rename(scope.tenantId, tx, id, body.name) : null;
      if (!before || !after) throw groupErrors.notFound();
      return { after, staged: await this.stage(tx, scope, 'group.update', id, toGroupResponse(before), toGroupResponse(after), null) };
    });
    await this.finish(staged, null);
    return toGroupResponse(after);
  }

  /** Refused with 409 naming each rule while an enabled rule still refers to the group (nothing is deleted then). */
  async delete(scope: TenantScope, id: string): Promise<void> {
    const { snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:groups:write', async (tx) => {
      // Locked first, as for a rename: a rename committed while this waited left the name read before it as "before".
      const before = await this.repository.findForUpdate(scope.tenantId, tx, id);
      if (!before || !(await this.repository.delete(scope.tenantId, tx, id))) throw groupErrors.notFound();
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'group.delete');
      return { snapshot, staged: await this.stage(tx, scope, 'group.delete', id, toGroupResponse(before), null, snapshot) };
    });
    await this.finish(staged, snapshot);
  }

  async listMembers(scope: TenantScope, groupId: string, query: PageQuery): Promise<Page<GroupMemberResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, async (tx) => {
      if (!(await this.repository.find(scope.tenantId, tx, groupId))) throw groupErrors.notFound();
      return this.repository.listMembers(scope.tenantId, tx, groupId, page);
    });
    return toPage(rows, page.limit, toGroupMemberResponse);
  }

  async addMember(scope: TenantScope, groupId: string, body: AddGroupMemberRequest): Promise<GroupMemberResponse> {
    const { row, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:groups:write', async (tx) => {
      if (!(await this.repository.find(scope.tenantId, tx, groupId))) throw groupErrors.notFound();
      if (!(await this.repository.isTenantMember(scope.tenantId, tx, body.userId))) throw groupErrors.notATenantMember();
      if (await this.repository.findMember(scope.tenantId, tx, groupId, body.userId)) throw groupErrors.alreadyInGroup();
      const row = await this.repository.addMember(scope.tenantId, tx, groupId, body.userId);
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'group.member_add');
      return { row, snapshot, staged: await this.stage(tx, scope, 'group.member_add', groupId, null, toGroupMemberResponse(row), snapshot) };
    }).catch((error: unknown) => {
      if (isUniqueViolation(error)) throw groupErrors.alreadyInGroup();
      // The group or the membership was deleted between our checks and the insert.
      throw isForeignKeyViolation(error) ? groupErrors.changedMeanwhile() : error;
    });
    await this.finish(staged, snapshot);
    return toGroupMemberResponse(row);
  }

  async removeMember(scope: TenantScope, groupId: string, userId: string): Promise<void> {
    const { snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:groups:write', async (tx) => {
      if (!(await this.repository.find(scope.tenantId, tx, groupId))) throw groupErrors.notFound();
      const before = await this.repository.findMember(scope.tenantId, tx, groupId, userId);
      if (!before || !(await this.repository.removeMember(scope.tenantId, tx, groupId, userId))) throw groupErrors.memberNotFound();
      const snapshot = await this.snapshots.rebuildOrConflict(scope.tenantId, tx, scope.actor.userId, 'group.member_remove');
      return { snapshot, staged: await this.stage(tx, scope, 'group.member_remove', groupId, toGroupMemberResponse(before), null, snapshot) };
    });
    await this.finish(staged, snapshot);
  }

  /** In the change's transaction: its audit event, naming the snapshot the change produced (ADR 0010, the outbox). */
  private stage(
    tx: TenantTransaction,
    scope: TenantScope,
    action: string,
    groupId: string,
    before: unknown,
    after: unknown,
    snapshot: WrittenSnapshot | null,
  ): Promise<StagedAuditEvent> {
    return this.audit.stage(tx, {
      tenantId: scope.tenantId,
      actor: scope.actor,
      action,
      target: { type: 'group', id: groupId },
      before,
      after,
      snapshotVersion: snapshot?.version ?? null,
    });
  }

  /** After the commit: the audit event on its way and the notice to the gateways. */
  private async finish(staged: StagedAuditEvent, snapshot: WrittenSnapshot | null): Promise<void> {
    await this.audit.publish(staged);
    if (snapshot) await this.snapshots.announce(snapshot);
  }
}
