import { Inject, Injectable } from '@nestjs/common';
import { openJson, sealJson, upstreamSecretContext } from '@portcullis/auth/secrets';
import {
  CHANGE_CHANNELS,
  type CreateUpstreamRequest,
  type PageQuery,
  type UpdateUpstreamRequest,
  type UpstreamResponse,
} from '@portcullis/contracts/api';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher, type StagedAuditEvent } from '@portcullis/control-plane/change-events';
import { PolicySnapshotWriter, type WrittenSnapshot } from '@portcullis/control-plane/feature-policies';
import { isUniqueViolation, pageRequest, parseIfMatch, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { upstreamGlobMatches } from '@portcullis/policy/engine';
import { newId, type TenantId } from '@portcullis/shared/util-ids';
import { upstreamErrors } from './upstreams.errors';
import { toUpstreamResponse, type UpstreamRecord } from './upstreams.mapper';
import { UPSTREAMS_OPTIONS, type UpstreamsOptions } from './upstreams.options';
import { UpstreamsRepository, type SealedColumn, type UpstreamChanges } from './upstreams.repository';

type SecretField = 'headers' | 'env';

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/** A URL's origin (scheme, host, port); an unparsable one stands for itself (never equal to a parsed origin). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return `unparsable:${url}`;
  }
}

/**
 * Upstream rules: secrets are sealed before they reach the repository and never come back out; stdio upstreams are
 * for platform admins and allow-listed commands only; names and tool prefixes are unique per tenant (409 naming the
 * holder); every change bumps `version`, is audited, and is announced on `pcs:upstreams:changed`.
 */
@Injectable()
export class UpstreamsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: UpstreamsRepository,
    private readonly audit: AuditEmitter,
    private readonly changes: ChangePublisher,
    @Inject(UPSTREAMS_OPTIONS) private readonly options: UpstreamsOptions,
    private readonly snapshots: PolicySnapshotWriter,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<UpstreamResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.list(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toUpstreamResponse);
  }

  async get(scope: TenantScope, id: string): Promise<UpstreamResponse> {
    const record = await withTenant(this.db, scope.tenantId, (tx) => this.repository.find(scope.tenantId, tx, id));
    if (!record) throw upstreamErrors.notFound();
    return toUpstreamResponse(record);
  }

  async create(scope: TenantScope, body: CreateUpstreamRequest): Promise<UpstreamResponse> {
    const { tenantId } = scope;
    if (body.transport === 'stdio') this.assertStdioAllowed(scope, body.command);
    const id = newId();
    const headers = body.transport === 'stdio' ? undefined : this.seal(tenantId, id, 'headers', body.headers);
    const env = body.transport === 'stdio' ? this.seal(tenantId, id, 'env', body.env) : undefined;
    const { record, snapshot, staged } = await this.inTransaction(scope, async (tx) => {
      await this.assertAvailable(tenantId, tx, { name: body.name, toolPrefix: body.toolPrefix });
      const record = await this.repository.create(tenantId, tx, {
        id,
        name: body.name,
        description: body.description ?? null,
        toolPrefix: body.toolPrefix,
        transport: body.transport,
        url: body.transport === 'stdio' ? null : body.url,
        command: body.transport === 'stdio' ? body.command : null,
        args: body.transport === 'stdio' ? (body.args ?? []) : [],
        headersCiphertext: headers,
        envCiphertext: env,
        encryptionKeyId: headers || env ? this.options.keyring.activeKeyId : null,
        connectTimeoutMs: body.connectTimeoutMs,
        callTimeoutMs: body.callTimeoutMs,
        enabled: body.enabled,
        toolApproval: body.toolApproval,
      });
      // Upstream names are policy targets (the compiled registry): a new snapshot in the same transaction.
      const snapshot = await this.snapshots.rebuildOrConflict(tenantId, tx, scope.actor.userId, 'upstream.create');
      return { record, snapshot, staged: await this.stage(tx, scope, 'upstream.create', id, null, toUpstreamResponse(record), snapshot) };
    });
    await this.announce(staged, snapshot);
    return toUpstreamResponse(record);
  }

  /**
   * `ifMatch`: the version the caller read (an ETag such as `"3"`); when given, the update applies only to that version
   * (412 otherwise), so headers composed for the old URL cannot land on a URL another admin set meanwhile. Either way
   * the write is a compare-and-set on the version the checks read: a concurrent update that committed first makes
   * this one a 409, never a write checked against what was there before.
   */
  async update(scope: TenantScope, id: string, body: UpdateUpstreamRequest, ifMatch?: string | string[]): Promise<UpstreamResponse> {
    const { tenantId } = scope;
    const expected = parseIfMatch(ifMatch);
    if (expected === null) throw upstreamErrors.ifMatchMalformed();
    const { after, snapshot, staged } = await this.inTransaction(scope, async (tx) => {
      const existing = await this.repository.find(tenantId, tx, id);
      if (!existing) throw upstreamErrors.notFound();
      if (expected !== undefined && expected !== existing.version) throw upstreamErrors.stale(existing.version);
      this.assertFieldsFitTransport(existing, body);
      this.assertHeadersFollowUrl(existing, body);
      if (body.name !== undefined && body.name !== existing.name) {
        // Under the snapshot lock: a policy naming the old name saved after this check would be turned off unchecked.
        await this.snapshots.lock(tenantId, tx);
        await this.assertNotNamedByRules(tenantId, tx, existing.name, body.name);
      }
      if (existing.transport === 'stdio' && (body.command !== undefined || body.args !== undefined || body.env !== undefined)) {
        this.assertStdioAllowed(scope, body.command ?? existing.command ?? '');
      }
      await this.assertAvailable(tenantId, tx, {
        ...(body.name !== undefined && body.name !== existing.name ? { name: body.name } : {}),
        ...(body.toolPrefix !== undefined && body.toolPrefix !== existing.toolPrefix ? { toolPrefix: body.toolPrefix } : {}),
      });
      const changes: UpstreamChanges = {
        name: body.name,
        description: body.description,
        toolPrefix: body.toolPrefix,
        enabled: body.enabled,
        toolApproval: body.toolApproval,
        connectTimeoutMs: body.connectTimeoutMs,
        callTimeoutMs: body.callTimeoutMs,
        url: body.url,
        command: body.command,
        args: body.args,
        ...(await this.sealedChanges(tenantId, tx, existing, body)),
      };
      const updated = await this.repository.update(tenantId, tx, id, changes, existing.version);
      if (!updated) throw (await this.repository.find(tenantId, tx, id)) ? upstreamErrors.changedMeanwhile() : upstreamErrors.notFound();
      const snapshot = await this.snapshots.rebuildOrConflict(tenantId, tx, scope.actor.userId, 'upstream.update');
      return { after: updated, snapshot, staged: await this.stage(tx, scope, 'upstream.update', id, toUpstreamResponse(existing), toUpstreamResponse(updated), snapshot) };
    });
    await this.announce(staged, snapshot);
    return toUpstreamResponse(after);
  }

  async delete(scope: TenantScope, id: string): Promise<void> {
    const { tenantId } = scope;
    const { snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:upstreams:write', async (tx) => {
      const existing = await this.repository.find(tenantId, tx, id);
      if (!existing || !(await this.repository.delete(tenantId, tx, id))) throw upstreamErrors.notFound();
      const snapshot = await this.snapshots.rebuildOrConflict(tenantId, tx, scope.actor.userId, 'upstream.delete');
      return { snapshot, staged: await this.stage(tx, scope, 'upstream.delete', id, toUpstreamResponse(existing), null, snapshot) };
    });
    await this.announce(staged, snapshot);
  }

  private assertStdioAllowed(scope: TenantScope, command: string): void {
    if (!scope.actor.isPlatformAdmin) throw upstreamErrors.stdioNeedsPlatformAdmin();
    if (!this.options.stdioCommandAllowlist.includes(command)) throw upstreamErrors.commandNotAllowed();
  }

  private assertFieldsFitTransport(existing: UpstreamRecord, body: UpdateUpstreamRequest): void {
    const wrong =
      existing.transport === 'stdio'
        ? (['url', 'headers'] as const).find((field) => body[field] !== undefined)
        : (['command', 'args', 'env'] as const).find((field) => body[field] !== undefined);
    if (wrong) throw upstreamErrors.fieldNotForTransport(wrong, existing.transport);
  }

  /**
   * Stored headers (credentials, write-only) were set for the URL's origin. Moving the URL to another origin keeps
   * them only if they are given again (or removed with null): otherwise whoever may edit upstreams could have the
   * gateway and test connections send someone else's credentials to a host of their choosing.
   */
  private assertHeadersFollowUrl(existing: UpstreamRecord, body: UpdateUpstreamRequest): void {
    if (body.url === undefined || body.headers !== undefined || !existing.hasHeaders || existing.url === null) return;
    if (originOf(body.url) !== originOf(existing.url)) throw upstreamErrors.headersForOtherOrigin();
  }

  /**
   * Policy rules name upstreams by name: renaming one that enabled rules name literally would silently turn those
   * rules off (a deny on `payments/transfer_*` stops applying once `payments` is `payments-eu`). Refused with 409
   * naming the rules; widen or change them first (e.g. `payments*` covers both names), then rename.
   */
  private async assertNotNamedByRules(tenantId: TenantId, tx: TenantTransaction, name: string, renamedTo: string): Promise<void> {
    const rules = await tx.policyRule.findMany({
      // The rule's own flag as well as its policy's: a disabled rule is left out of the snapshot, and blocked renames
      // until it was edited or deleted (docs/policy.md: only enabled rules refuse a rename).
      where: { tenantId, enabled: true, policy: { enabled: true } },
      select: { id: true, name: true, targets: true },
    });
    // A rule whose upstream pattern covers one name and not the other would change what it applies to: `pay*` would
    // stop denying on `payments` renamed `billing`, `bill*` would start allowing on it. One that covers both is fine.
    const changes = (target: unknown): boolean => {
      const upstream = isObject(target) ? target['upstream'] : undefined;
      return typeof upstream === 'string' && upstreamGlobMatches(upstream, name) !== upstreamGlobMatches(upstream, renamedTo);
    };
    const naming = rules.filter((rule) => Array.isArray(rule.targets) && rule.targets.some(changes));
    if (naming.length > 0) throw upstreamErrors.namedByRules(name, naming.map((rule) => rule.name ?? rule.id));
  }

  /** 409 naming the upstream that already holds the name or tool prefix. */
  private async assertAvailable(
    tenantId: TenantId,
    tx: TenantTransaction,
    wanted: { name?: string; toolPrefix?: string },
  ): Promise<void> {
    if (wanted.toolPrefix !== undefined) {
      const holder = await this.repository.findHolder(tenantId, tx, { toolPrefix: wanted.toolPrefix });
      if (holder) throw upstreamErrors.toolPrefixTaken(wanted.toolPrefix, holder.name);
    }
    if (wanted.name !== undefined && (await this.repository.findHolder(tenantId, tx, { name: wanted.name }))) {
      throw upstreamErrors.nameTaken(wanted.name);
    }
  }

  private seal(tenantId: TenantId, id: string, field: SecretField, value: Record<string, string> | null | undefined): SealedColumn {
    if (value === undefined) return undefined;
    if (value === null || Object.keys(value).length === 0) return null;
    return new Uint8Array(sealJson(this.options.keyring, value, upstreamSecretContext(tenantId, id, field)).ciphertext);
  }

  /**
   * The secret columns of an update. Both columns share one key id, so when one is replaced under the active key
   * and the other was sealed under an older key, the other is re-sealed too (opened and sealed again, in memory).
   */
  private async sealedChanges(
    tenantId: TenantId,
    tx: TenantTransaction,
    existing: UpstreamRecord,
    body: UpdateUpstreamRequest,
  ): Promise<Pick<UpstreamChanges, 'headersCiphertext' | 'envCiphertext' | 'encryptionKeyId'>> {
    if (body.headers === undefined && body.env === undefined) return {};
    const keyring = this.options.keyring;
    const headersCiphertext = this.seal(tenantId, existing.id, 'headers', body.headers);
    const envCiphertext = this.seal(tenantId, existing.id, 'env', body.env);
    const result: { headersCiphertext: SealedColumn; envCiphertext: SealedColumn; encryptionKeyId: string | null } = {
      headersCiphertext,
      envCiphertext,
      encryptionKeyId: keyring.activeKeyId,
    };
    if (existing.encryptionKeyId !== null && existing.encryptionKeyId !== keyring.activeKeyId) {
      for (const field of ['headers', 'env'] as const) {
        const column = field === 'headers' ? 'headersCiphertext' : 'envCiphertext';
        if (result[column] !== undefined) continue;
        const stored = await this.repository.sealedSecret(tenantId, tx, existing.id, field);
        if (!stored) continue;
        const context = upstreamSecretContext(tenantId, existing.id, field);
        const value = openJson<Record<string, string>>(keyring, { keyId: existing.encryptionKeyId, ciphertext: Buffer.from(stored) }, context);
        result[column] = this.seal(tenantId, existing.id, field, value);
      }
    }
    const headersStored = result.headersCiphertext === undefined ? existing.hasHeaders : result.headersCiphertext !== null;
    const envStored = result.envCiphertext === undefined ? existing.hasEnv : result.envCiphertext !== null;
    if (!headersStored && !envStored) result.encryptionKeyId = null;
    return result;
  }

  private async inTransaction<T>(scope: TenantScope, fn: (tx: TenantTransaction) => Promise<T>): Promise<T> {
    try {
      return await this.snapshots.transaction(scope, 'tenant:upstreams:write', fn);
    } catch (error) {
      if (isUniqueViolation(error)) throw upstreamErrors.conflict();
      throw error;
    }
  }

  /** In the change's transaction: its audit event (ADR 0010, the outbox). */
  private stage(
    tx: TenantTransaction,
    scope: TenantScope,
    action: string,
    id: string,
    before: UpstreamResponse | null,
    after: UpstreamResponse | null,
    snapshot: WrittenSnapshot,
  ): Promise<StagedAuditEvent> {
    return this.audit.stage(tx, { tenantId: scope.tenantId, actor: scope.actor, action, target: { type: 'upstream', id }, before, after, snapshotVersion: snapshot.version });
  }

  /** After the commit: the audit event on its way, and the gateways told. */
  private async announce(staged: StagedAuditEvent, snapshot: WrittenSnapshot): Promise<void> {
    await this.audit.publish(staged);
    await this.changes.publish(CHANGE_CHANNELS.upstreams, staged.event.tenantId as TenantId);
    await this.snapshots.announce(snapshot);
  }
}
