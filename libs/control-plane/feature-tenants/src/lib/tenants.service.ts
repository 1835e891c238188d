import { Inject, Injectable } from '@nestjs/common';
import { CHANGE_CHANNELS, type CreateTenantRequest, type PageQuery, type TenantListItem, type TenantResponse, type UpdateTenantRequest } from '@portcullis/contracts/api';
import type { Principal, TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher } from '@portcullis/control-plane/change-events';
import { isUniqueViolation, pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, withUser, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { isUuid, newId, tenantId as toTenantId } from '@portcullis/shared/util-ids';
import { tenantErrors } from './tenants.errors';
import { toTenantListItem, toTenantResponse } from './tenants.mapper';
import { TenantsRepository } from './tenants.repository';

@Injectable()
export class TenantsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: TenantsRepository,
    private readonly audit: AuditEmitter,
    private readonly changes: ChangePublisher,
  ) {}

  /**
   * Platform admins create tenants, optionally naming a first owner by email (their user is created if needed).
   * Tenant and owner are written in one transaction, in the new tenant's row-level-security context.
   */
  async create(actor: Principal, body: CreateTenantRequest): Promise<TenantResponse> {
    // Minted here, for a tenant this request is creating: the id is ours, not the caller's.
    const id = toTenantId(newId());
    const { row, staged } = await withTenant(this.db, id, async (tx) => {
      if (await this.repository.findBySlug(tx, body.slug)) throw tenantErrors.slugTaken(body.slug);
      const tenant = await this.repository.create(tx, { id, slug: body.slug, name: body.name });
      if (body.ownerEmail) {
        const user = await this.repository.findOrCreateUser(tx, body.ownerEmail);
        // Named by the email in this tenant, like a member added without a name (the account's own name stays out).
        await this.repository.addMembership(id, tx, user.id, 'owner', body.ownerEmail);
      }
      const staged = await this.audit.stage(tx, {
        tenantId: id,
        actor,
        action: 'tenant.create',
        target: { type: 'tenant', id },
        before: null,
        after: { ...toTenantResponse(tenant), ownerEmail: body.ownerEmail ?? null },
      });
      return { row: tenant, staged };
    }).catch((error: unknown) => {
      throw isUniqueViolation(error) ? tenantErrors.slugTaken(body.slug) : error;
    });
    const response = toTenantResponse(row);
    await this.audit.publish(staged);
    // Gateways serve `/t/<slug>/mcp` from a tenant index: tell them now rather than at their next reconcile.
    await this.changes.publish(CHANGE_CHANNELS.tenants, id);
    return response;
  }

  /**
   * Platform admins rename a tenant, or suspend / reactivate it. Suspended, its MCP endpoint answers like an unknown
   * tenant on every gateway (told at once), its held calls are cancelled, and its members may read but not change
   * anything in the control plane (audit exports included in what they may still do).
   */
  async update(actor: Principal, id: string, body: UpdateTenantRequest): Promise<TenantResponse> {
    if (!isUuid(id)) throw tenantErrors.notFound();
    const tenantId = toTenantId(id);
    const { before, after, cancelled, staged } = await withTenant(this.db, tenantId, async (tx) => {
      const existing = await this.repository.lock(tenantId, tx);
      if (!existing) throw tenantErrors.notFound();
      const updated = await this.repository.update(tenantId, tx, {
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.status !== undefined ? { status: body.status } : {}),
      });
      const suspending = body.status === 'suspended' && existing.status !== 'suspended';
      const cancelled = suspending ? await this.repository.cancelPendingApprovals(tenantId, tx, 'the tenant was suspended') : 0;
      const staged = await this.audit.stage(tx, {
        tenantId,
        actor,
        action: 'tenant.update',
        target: { type: 'tenant', id: tenantId },
        before: toTenantResponse(existing),
        after: toTenantResponse(updated),
      });
      return { before: existing, after: updated, cancelled, staged };
    });
    const response = toTenantResponse(after);
    await this.audit.publish(staged);
    if (before.status !== after.status) {
      // Gateways load the upstreams of active tenants only: a tenant reactivated needs them reloaded too, not at the
      // next periodic refresh (its endpoint would answer with empty listings meanwhile).
      await this.changes.publish(CHANGE_CHANNELS.tenants, tenantId);
      await this.changes.publish(CHANGE_CHANNELS.upstreams, tenantId);
    }
    if (cancelled > 0) await this.changes.publish(CHANGE_CHANNELS.approvals, tenantId);
    return response;
  }

  /** Platform admins see every tenant; everyone else sees the tenants they are a member of, with their role. */
  async list(actor: Principal, query: PageQuery): Promise<Page<TenantListItem>> {
    const page = pageRequest(query);
    const roles = await withUser(this.db, actor.userId, (tx) => this.repository.membershipsOf(tx, actor.userId));
    const rows = actor.isPlatformAdmin
      ? await this.repository.listAll(this.db, page)
      : await this.repository.listByIds(this.db, [...roles.keys()], page);
    return toPage(rows, page.limit, (row) => toTenantListItem({ ...row, role: roles.get(row.id) ?? null }));
  }

  async get(scope: TenantScope): Promise<TenantListItem> {
    const row = await this.repository.find(scope.tenantId, this.db);
    if (!row) throw tenantErrors.notFound();
    return toTenantListItem({ ...row, role: scope.role });
  }
}
