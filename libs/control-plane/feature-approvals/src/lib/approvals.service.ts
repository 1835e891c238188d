import { Inject, Injectable } from '@nestjs/common';
import { CHANGE_CHANNELS, editedArgumentsProblem, tenantSettings, type ApprovalResponse, type ApproveRequest, type DenyRequest, type ListApprovalsQuery } from '@portcullis/contracts/api';
import { assertTenantWritable, currentRole, roleGrants, type TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher } from '@portcullis/control-plane/change-events';
import { pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { REDACTED } from '@portcullis/shared/util-redact';
import { approvalErrors } from './approvals.errors';
import { effectiveStatus, toApprovalResponse, type ApprovalRow, type ArgumentsView } from './approvals.mapper';
import { ApprovalsRepository, type ApprovalDecision } from './approvals.repository';

/**
 * Decisions on calls the gateway holds for approval (docs/policy.md, "Approvals"). A decision is written only while
 * the approval is pending and unexpired, by an owner/admin who did not make the call, and only for the exact
 * arguments the approver reviewed; gateways learn of it on `CHANGE_CHANNELS.approvals` (and by polling).
 */
/** Whether the caller may decide approvals, and so is shown the arguments in full. */
const mayDecide = (scope: TenantScope): boolean => roleGrants(scope.role, 'tenant:approvals:decide');

/**
 * How the arguments are shown to readers who may not decide, and in audit events: redacted as the gateway redacts its
 * call events, the tenant's `settings.audit.redactPaths` included (null: settings that do not parse; nothing shown).
 */
async function redactedView(tenantId: string, tx: TenantTransaction): Promise<ArgumentsView> {
  const tenant = await tx.tenant.findUnique({ where: { id: tenantId }, select: { settings: true } });
  const stored = tenant?.settings;
  const audit = typeof stored === 'object' && stored !== null && !Array.isArray(stored) ? (stored as Record<string, unknown>)['audit'] : undefined;
  const parsed = tenantSettings.safeParse({ audit });
  return { full: false, paths: parsed.success ? parsed.data.audit.redactPaths : null };
}

/** The caller's view: in full for those who may decide, else redacted (`redactedView`). */
const viewFor = async (scope: TenantScope, tx: TenantTransaction): Promise<ArgumentsView> => (mayDecide(scope) ? { full: true } : redactedView(scope.tenantId, tx));

@Injectable()
export class ApprovalsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: ApprovalsRepository,
    private readonly audit: AuditEmitter,
    private readonly publisher: ChangePublisher,
  ) {}

  async list(scope: TenantScope, query: ListApprovalsQuery): Promise<Page<ApprovalResponse>> {
    const page = pageRequest(query);
    const now = new Date();
    const { rows, view } = await withTenant(this.db, scope.tenantId, async (tx) => ({
      rows: await this.repository.list(scope.tenantId, tx, page, { status: query.status, kind: query.kind }, now),
      view: await viewFor(scope, tx),
    }));
    return toPage(rows, page.limit, (row) => toApprovalResponse(row, now, view));
  }

  async get(scope: TenantScope, id: string): Promise<ApprovalResponse> {
    const { row, view } = await withTenant(this.db, scope.tenantId, async (tx) => ({
      row: await this.repository.find(scope.tenantId, tx, id),
      view: await viewFor(scope, tx),
    }));
    if (!row) throw approvalErrors.notFound();
    return toApprovalResponse(row, new Date(), view);
  }

  approve(scope: TenantScope, id: string, body: ApproveRequest): Promise<ApprovalResponse> {
    // The approver edits the reviewer's copy, whose secrets are redacted: a placeholder sent back would reach the upstream.
    // (`[redacted]` has no character JSON escapes, so the serialised text shows it wherever it is.)
    if (body.arguments && JSON.stringify(body.arguments).includes(REDACTED)) return Promise.reject(approvalErrors.redactedArguments());
    return this.decide(scope, id, body.argumentsHash, {
      status: 'approved',
      decidedById: scope.actor.userId,
      note: body.note ?? null,
      ...(body.arguments ? { editedArguments: body.arguments } : {}),
    });
  }

  deny(scope: TenantScope, id: string, body: DenyRequest): Promise<ApprovalResponse> {
    return this.decide(scope, id, undefined, { status: 'denied', decidedById: scope.actor.userId, note: body.note ?? null });
  }

  private async decide(scope: TenantScope, id: string, reviewedHash: string | undefined, decision: ApprovalDecision): Promise<ApprovalResponse> {
    const now = new Date();
    const { after, staged } = await withTenant(this.db, scope.tenantId, async (tx) => {
      const existing = await this.repository.find(scope.tenantId, tx, id);
      if (!existing) throw approvalErrors.notFound();
      await this.assertStillMayDecide(scope, tx);
      await assertTenantWritable(scope.tenantId, tx);
      await this.assertNotOwnCall(scope, tx, existing);
      const status = effectiveStatus(existing, now);
      if (status !== 'pending') throw approvalErrors.alreadyClosed(status);
      if (reviewedHash !== undefined && reviewedHash !== existing.argumentsHash) throw approvalErrors.argumentsChanged();
      // The gateway would refuse the approval and fail the held call: refused here, the approval stays pending for a
      // decision that can run. (A row from before methods were recorded is left to the gateway.)
      const editProblem = decision.editedArguments === undefined ? undefined : editedArgumentsProblem(existing.method, decision.editedArguments);
      if (editProblem !== undefined) throw approvalErrors.editsNotApplicable(editProblem);
      const updated = await this.repository.decide(scope.tenantId, tx, id, decision, now);
      if (!updated) {
        // Decided, expired or cancelled between the read and the write.
        const current = await this.repository.find(scope.tenantId, tx, id);
        throw approvalErrors.alreadyClosed(current ? effectiveStatus(current, new Date()) : 'gone');
      }
      // The audit trail keeps the redacted form; the approver who decided gets the arguments in full.
      const redacted = await redactedView(scope.tenantId, tx);
      const staged = await this.audit.stage(tx, {
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: decision.status === 'approved' ? (decision.editedArguments ? 'approval.approve_edited' : 'approval.approve') : 'approval.deny',
        target: { type: 'approval', id },
        before: toApprovalResponse(existing, now, redacted),
        after: toApprovalResponse(updated, now, redacted),
        snapshotVersion: updated.snapshotVersion,
      });
      return { after: updated, staged };
    });
    await this.audit.publish(staged);
    await this.publisher.publish(CHANGE_CHANNELS.approvals, scope.tenantId);
    return toApprovalResponse(after, now, { full: true });
  }

  /**
   * The actor's role as it is now, read in the decision's transaction: the one the access guard read may have changed
   * since (a demotion committed meanwhile). FOR SHARE: a change of it not yet committed is waited for, not read past.
   */
  private async assertStillMayDecide(scope: TenantScope, tx: TenantTransaction): Promise<void> {
    const role = await currentRole(scope, tx);
    if (role === undefined || !roleGrants(role, 'tenant:approvals:decide')) throw approvalErrors.roleNoLongerAllows();
  }

  /**
   * Four eyes: nobody decides on a call they made, directly or through an agent client holding an API key issued to
   * them or created by them.
   */
  private async assertNotOwnCall(scope: TenantScope, tx: TenantTransaction, row: ApprovalRow): Promise<void> {
    const actor = scope.actor.userId;
    if (row.requesterUserId === actor) throw approvalErrors.ownCall();
    if (row.agentClientId !== null && (await this.repository.userActsAsAgent(scope.tenantId, tx, row.agentClientId, actor))) {
      throw approvalErrors.ownCall();
    }
  }
}
