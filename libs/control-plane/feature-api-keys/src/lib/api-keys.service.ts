import { Inject, Injectable } from '@nestjs/common';
import { displayPrefix, generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import {
  CHANGE_CHANNELS,
  type ApiKeyResponse,
  type CreateApiKeyRequest,
  type CreatedApiKeyResponse,
  type PageQuery,
} from '@portcullis/contracts/api';
import { assertTenantWritable, currentRole, roleGrants, type TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher } from '@portcullis/control-plane/change-events';
import { pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { apiKeyErrors } from './api-keys.errors';
import { toApiKeyResponse } from './api-keys.mapper';
import { ApiKeysRepository } from './api-keys.repository';

/** API keys for agent clients: only the hash is stored; the secret exists in this process once, for the response. */
/**
 * Keys that work at once, per agent client (rotation needs two; a fleet of instances each with its own key a few dozen)
 * and per tenant (the agent clients' own bound is 10,000). The tenant's is counted without a lock: keys created at the
 * same moment for different agent clients may pass it by as many.
 */
export const MAX_LIVE_KEYS_PER_AGENT_CLIENT = 100;
export const MAX_LIVE_KEYS_PER_TENANT = 20_000;

@Injectable()
export class ApiKeysService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: ApiKeysRepository,
    private readonly audit: AuditEmitter,
    private readonly changes: ChangePublisher,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<ApiKeyResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.list(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toApiKeyResponse);
  }

  async create(scope: TenantScope, body: CreateApiKeyRequest): Promise<CreatedApiKeyResponse> {
    const secret = generateApiKey();
    const { row, staged } = await withTenant(this.db, scope.tenantId, async (tx) => {
      // Still allowed: a demotion or removal committed since the access check revokes only the keys it can see, so a key
      // written after it would outlive it (its secret only the demoted admin saw). Read FOR SHARE, the role change waits
      // for this key and revokes it too.
      const role = await currentRole(scope, tx);
      if (role === undefined || !roleGrants(role, 'tenant:api-keys:write')) throw apiKeyErrors.roleNoLongerAllows();
      await assertTenantWritable(scope.tenantId, tx);
      const client = await this.repository.agentClient(scope.tenantId, tx, body.agentClientId);
      if (!client) throw apiKeyErrors.agentClientNotFound();
      if (client.disabled) throw apiKeyErrors.agentClientDisabled();
      // Every replica of the gateway holds every live key in memory, and reloads them all on each change: bounded, so
      // one tenant's loop of creations cannot grow that for everyone (found by a review). Expired and revoked keys do
      // not count.
      const live = await this.repository.liveKeys(scope.tenantId, tx, body.agentClientId, new Date());
      if (live.agentClient >= MAX_LIVE_KEYS_PER_AGENT_CLIENT) throw apiKeyErrors.tooManyForAgentClient(MAX_LIVE_KEYS_PER_AGENT_CLIENT);
      if (live.tenant >= MAX_LIVE_KEYS_PER_TENANT) throw apiKeyErrors.tooManyForTenant(MAX_LIVE_KEYS_PER_TENANT);
      const row = await this.repository.create(scope.tenantId, tx, {
        name: body.name,
        keyHash: hashApiKey(secret),
        displayPrefix: displayPrefix(secret),
        agentClientId: body.agentClientId,
        createdById: scope.actor.userId,
        expiresAt: body.expiresAt ? new Date(body.expiresAt) : null,
      });
      const after = toApiKeyResponse(row);
      return { row, staged: await this.audit.stage(tx, { tenantId: scope.tenantId, actor: scope.actor, action: 'api_key.create', target: { type: 'api_key', id: row.id }, before: null, after }) };
    });
    const response = toApiKeyResponse(row);
    await this.audit.publish(staged);
    await this.changes.publish(CHANGE_CHANNELS.apiKeys, scope.tenantId);
    return { ...response, secret };
  }

  /**
   * Revokes a key. Calls it made that are still waiting for a human's approval are cancelled with it (an approver
   * should not be asked about a call from a key that is gone; the gateway would refuse it anyway).
   */
  async revoke(scope: TenantScope, id: string): Promise<ApiKeyResponse> {
    const { after, cancelled, staged } = await withTenant(this.db, scope.tenantId, async (tx) => {
      const result = await this.repository.revoke(scope.tenantId, tx, id, new Date());
      if (!result) throw apiKeyErrors.notFound();
      const { row, revoked } = result;
      const { count } = await tx.approval.updateMany({
        where: { tenantId: scope.tenantId, apiKeyId: id, status: 'pending' },
        data: { status: 'cancelled', decisionNote: 'the API key that made the call was revoked' },
      });
      // Revoking a revoked key changes nothing: no event. Judged by this update, not by a read before it: two
      // revocations at once both read the key live, and the second, its update waiting for the first's, changed
      // nothing (before, it recorded a second revocation). The key as it was is the row this update changed, unrevoked.
      const staged = revoked
        ? await this.audit.stage(tx, {
            tenantId: scope.tenantId,
            actor: scope.actor,
            action: 'api_key.revoke',
            target: { type: 'api_key', id },
            before: toApiKeyResponse({ ...row, revokedAt: null }),
            after: toApiKeyResponse(row),
          })
        : null;
      return { after: row, cancelled: count, staged };
    });
    const response = toApiKeyResponse(after);
    if (staged) {
      await this.audit.publish(staged);
      await this.changes.publish(CHANGE_CHANNELS.apiKeys, scope.tenantId);
    }
    // The gateways holding those calls end them now rather than at their next poll.
    if (cancelled > 0) await this.changes.publish(CHANGE_CHANNELS.approvals, scope.tenantId);
    return response;
  }
}
