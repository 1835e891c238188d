import type { LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { createGuardedLookups } from '@portcullis/shared/util-net-guard';
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { openJson, upstreamSecretContext } from '@portcullis/auth/secrets';
import {
  CHANGE_CHANNELS,
  TEST_CONNECTION_MAX_ITEMS,
  argsWithEnv,
  type ApproveUpstreamToolRequest,
  type ForgetUpstreamToolsQuery,
  type ForgetUpstreamToolsResponse,
  type TestConnectionResponse,
  type UpstreamToolResponse,
  type UpstreamToolsQuery,
  type UpstreamToolsResponse,
} from '@portcullis/contracts/api';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher, type StagedAuditEvent } from '@portcullis/control-plane/change-events';
import { PolicySnapshotWriter, type WrittenSnapshot } from '@portcullis/control-plane/feature-policies';
import { pageRequest, toPage } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient, type Prisma, type TenantTransaction } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { newId, type TenantId } from '@portcullis/shared/util-ids';
import { CONTROL_PLANE_STDIO_HOST, StdioUserIds } from '@portcullis/shared/util-process-user';
import { secretMaskOf, type SecretMask } from '@portcullis/shared/util-redact';
import { maskedDefinition, toolState, toUpstreamToolResponse } from './upstream-tools.mapper';
import { UpstreamToolsRepository, type NewUpstreamTool, type UpstreamToolRow } from './upstream-tools.repository';
import { probeUpstream, ProbeFailure, type ProbeResult, type ProbeTarget } from './upstream-probe';
import { AppError } from '@portcullis/shared/util-errors';
import { TESTS_PER_MINUTE, upstreamErrors } from './upstreams.errors';
import type { UpstreamRecord } from './upstreams.mapper';
import { UPSTREAMS_OPTIONS, type UpstreamsOptions } from './upstreams.options';
import { UpstreamsRepository } from './upstreams.repository';

const DEFAULT_TEST_TIMEOUT_MS = 10_000;
const MAX_ITEMS_PER_KIND = 5_000;
/** Bound on the transaction that stores what a test found. */
const STORE_TIMEOUT_MS = 60_000;
/** Test connections one tenant may run at once on this process (each holds a connection or a child process). */
const MAX_TESTS_PER_TENANT = 4;
/** Default `maxStoredDefinitions`: above the most one test can discover (5,000 of each of four kinds). */
const DEFAULT_MAX_STORED_DEFINITIONS = 25_000;
/** How long a shutdown waits for the tests it ended before it gives the stdio uid range up. */
const SHUTDOWN_WAIT_MS = 5_000;

interface SyncCounts {
  total: number;
  new: number;
  approvedOnFirstUse: number;
  changed: number;
  removed: number;
}

/**
 * Test connection and tool pinning. A test connection discovers what the upstream advertises and stores each
 * definition with its content hash (`definitionHash` from libs/contracts/tool-pins, the same function the gateway
 * uses). A definition that differs from the approved one is hidden and blocked by the gateway until an admin
 * approves it here; definitions never seen before are approved on first use or held, per upstream (`toolApproval`).
 * Approval changes enforcement: it writes a new policy snapshot in the same transaction and is audited.
 */
@Injectable()
export class UpstreamToolsService implements OnModuleInit, OnModuleDestroy {
  private readonly testsRunning = new Map<TenantId, number>();
  /**
   * When each tenant's test connections of the last minute started (at most TESTS_PER_MINUTE each). Each test that
   * changes what is enforced makes every gateway replica reload its pins, so one tenant may not start them without end.
   */
  private readonly testsStarted = new Map<TenantId, number[]>();
  /** Host-name lookups of test connections: one budget for the process, shared out per tenant (see the SSRF guard). */
  private readonly lookups: (tenantId: string) => LookupFunction;
  /** One user id for each test's stdio server (CONTROL_PLANE_STDIO_UID_RANGE), when set. */
  private readonly stdioUserIds: StdioUserIds | undefined;
  /** Tests under way in this process: a shutdown ends them (their stdio servers) before it gives the uid range up. */
  private readonly testsUnderWay = new Map<AbortController, Promise<unknown>>();
  /** Set once a shutdown began: no new test starts. */
  private closing = false;

  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly upstreams: UpstreamsRepository,
    private readonly tools: UpstreamToolsRepository,
    private readonly audit: AuditEmitter,
    private readonly changes: ChangePublisher,
    private readonly snapshots: PolicySnapshotWriter,
    @Inject(UPSTREAMS_OPTIONS) private readonly options: UpstreamsOptions,
  ) {
    this.lookups = createGuardedLookups(this.options.network ?? { allowPrivateNetworks: false, allowedHosts: [] });
    // Only where stdio upstreams may be tested (main.ts checks the range at boot then, and only then).
    const range = this.options.stdioCommandAllowlist.length > 0 ? this.options.stdioUidRange : undefined;
    this.stdioUserIds = range === undefined ? undefined : new StdioUserIds(range.first, range.last, tmpdir(), CONTROL_PLANE_STDIO_HOST);
  }

  /** Boot fails when the range is another process's (its servers' ids would be cleared under them). */
  async onModuleInit(): Promise<void> {
    await this.stdioUserIds?.ready;
  }

  /**
   * Ends the tests under way and waits (at most SHUTDOWN_WAIT_MS) for them, so that their stdio servers have exited and
   * their ids are being cleared before the range is given up (`release` waits for those clearings): a server left
   * running would go on as an id no process holds, with the tenant's configured environment.
   */
  async onModuleDestroy(): Promise<void> {
    this.closing = true;
    for (const controller of this.testsUnderWay.keys()) controller.abort();
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WAIT_MS)));
    await Promise.race([Promise.allSettled(this.testsUnderWay.values()), waited]);
    clearTimeout(timer);
    await this.stdioUserIds?.release();
  }

  async list(scope: TenantScope, upstreamId: string, query: UpstreamToolsQuery): Promise<UpstreamToolsResponse> {
    const page = pageRequest(query);
    const { rows, mask } = await withTenant(this.db, scope.tenantId, async (tx) => {
      const upstream = await this.requireUpstream(scope.tenantId, tx, upstreamId);
      const rows = await this.tools.page(scope.tenantId, tx, upstreamId, { kind: query.kind, state: query.state, ...page });
      return { rows, mask: await this.secretMask(scope.tenantId, tx, upstream) };
    });
    return toPage(rows, page.limit, (row) => toUpstreamToolResponse(row, mask));
  }

  async testConnection(scope: TenantScope, upstreamId: string): Promise<TestConnectionResponse> {
    const { tenantId } = scope;
    // Shutting down: requests are still served while the tests under way end, and a test started now would run past
    // the range's release (found by re-review).
    if (this.closing) throw upstreamErrors.shuttingDown();
    const running = this.testsRunning.get(tenantId) ?? 0;
    if (running >= MAX_TESTS_PER_TENANT) throw upstreamErrors.tooManyTests();
    const now = Date.now();
    const started = (this.testsStarted.get(tenantId) ?? []).filter((at) => now - at < 60_000);
    if (started.length >= TESTS_PER_MINUTE) throw upstreamErrors.testsTooOften(Math.max(1, Math.ceil((60_000 - (now - (started[0] ?? now))) / 1000)));
    started.push(now);
    this.testsStarted.set(tenantId, started);
    // Tenants that stopped testing are forgotten (the map would otherwise keep every tenant that ever tested).
    if (this.testsStarted.size > 1_000) {
      for (const [id, times] of this.testsStarted) if (times.every((at) => now - at >= 60_000)) this.testsStarted.delete(id);
    }
    this.testsRunning.set(tenantId, running + 1);
    // Known from its start (its database steps included) to a shutdown, which ends it and waits for it.
    const stop = new AbortController();
    const run = this.runTest(scope, upstreamId, stop.signal);
    this.testsUnderWay.set(stop, run);
    try {
      return await run;
    } finally {
      this.testsUnderWay.delete(stop);
      const left = (this.testsRunning.get(tenantId) ?? 1) - 1;
      if (left > 0) this.testsRunning.set(tenantId, left);
      else this.testsRunning.delete(tenantId);
    }
  }

  private async runTest(scope: TenantScope, upstreamId: string, signal: AbortSignal): Promise<TestConnectionResponse> {
    const { tenantId } = scope;
    const { target, version } = await withTenant(this.db, tenantId, async (tx) => {
      const upstream = await this.requireUpstream(tenantId, tx, upstreamId);
      return { target: await this.probeTarget(tenantId, tx, upstream), version: upstream.version };
    });
    const started = Date.now();
    let result: ProbeResult;
    try {
      result = await probeUpstream(target, {
        signal,
        network: this.options.network ?? { allowPrivateNetworks: false, allowedHosts: [] },
        timeoutMs: this.options.testTimeoutMs ?? DEFAULT_TEST_TIMEOUT_MS,
        maxItemsPerKind: MAX_ITEMS_PER_KIND,
        stdioRunAs: this.options.stdioRunAs,
        stdioUserIds: this.stdioUserIds,
        onStdioUserRetired: (code) =>
          this.options.logger?.warn({ tenantId, upstreamId, code }, 'could not clear what a test connection\'s stdio server left; its user id is not used again'),
        lookup: this.lookups(tenantId),
      });
    } catch (error) {
      if (!(error instanceof ProbeFailure)) throw error;
      // Ended by a shutdown, not by the upstream: nothing is recorded against it (found by re-review: a healthy
      // upstream's last sync showed a timeout, and the admin was told it had not answered in time).
      if (signal.aborted) throw upstreamErrors.shuttingDown();
      // The reason word and a code only: never the upstream's address, headers or its own error text.
      this.options.logger?.warn({ tenantId, upstreamId, reason: error.reason, detail: error.detail }, 'test connection failed');
      await this.recordFailedTest(scope, upstreamId, error.reason);
      throw upstreamErrors.testFailed(error.reason);
    }
    const durationMs = Date.now() - started;
    // What of its configuration the upstream may quote back, masked in what is stored and answered (ADR 0013).
    const mask = secretMaskOf(target);
    const { rows, counts, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:upstreams:write', async (tx) => {
      // The upstream may have been deleted while we were connected, or edited: what was found then is another server's
      // (or was reached another way), not this configuration's, and is not stored as its definitions.
      await this.tools.lockUpstream(tenantId, tx, upstreamId);
      // Read once held: an edit committed by another control-plane process while this one waited is seen.
      const held = await this.tools.heldVersion(tenantId, tx, upstreamId);
      if (held === undefined) throw upstreamErrors.notFound();
      if (held !== version) throw upstreamErrors.changedDuringTest();
      const current = await this.requireUpstream(tenantId, tx, upstreamId);
      const counts = await this.storeDiscovery(tenantId, tx, current, result, mask, scope.actor.userId);
      await this.tools.recordSync(tenantId, tx, upstreamId, null, new Date());
      const enforcementChanged = counts.new + counts.changed + counts.removed > 0;
      const snapshot = enforcementChanged
        ? await this.snapshots.rebuildOrConflict(tenantId, tx, scope.actor.userId, 'upstream.test_connection')
        : null;
      const rows = await this.tools.list(tenantId, tx, upstreamId);
      const changed = rows.filter((row) => row.removedAt === null && toolState(row) === 'changed').map((row) => ({ kind: row.kind, name: row.name }));
      const staged = await this.stageTest(tx, scope, upstreamId, { ok: true, discovered: counts, changed }, snapshot?.version ?? null);
      return { rows, counts, snapshot, staged };
      // New and unchanged definitions are written in batches; an upstream that changed thousands at once still writes
      // those one by one, which Prisma's default 5 s would cut off (and every retry with it).
    }, { timeout: STORE_TIMEOUT_MS }).catch(async (error: unknown) => {
      // Too many definitions to store (nothing was): recorded on the upstream and audited, as a failed test is.
      if (error instanceof AppError && error.fields[0]?.message === 'too_many_definitions') await this.recordFailedTest(scope, upstreamId, 'too_many_definitions');
      throw error;
    });
    // Those that need a decision first, then as stored (kind, name); the answer carries a bounded number.
    const listed = rows.filter((row) => row.removedAt === null);
    const needsDecision = (row: UpstreamToolRow) => (toolState(row) === 'approved' ? 1 : 0);
    const shown = [...listed].sort((a, b) => needsDecision(a) - needsDecision(b)).slice(0, TEST_CONNECTION_MAX_ITEMS);
    const items = shown.map((row) => toUpstreamToolResponse(row, mask));
    await this.audit.publish(staged);
    if (snapshot) await this.announce(tenantId, snapshot);
    return { ok: true, serverInfo: result.serverInfo, protocolVersion: result.protocolVersion, durationMs, discovered: counts, items, omitted: listed.length - items.length };
  }

  /** A test that stored nothing: its reason on the upstream (`last_sync_error`) and in the audit trail. */
  private async recordFailedTest(scope: TenantScope, upstreamId: string, reason: string): Promise<void> {
    const { tenantId } = scope;
    const staged = await withTenant(this.db, tenantId, async (tx) => {
      await this.tools.recordSync(tenantId, tx, upstreamId, reason, new Date());
      return this.stageTest(tx, scope, upstreamId, { ok: false, reason });
    });
    await this.audit.publish(staged);
  }

  /** In the test's transaction: its audit event, what it found (`ok: true`) or why it stored nothing. */
  private stageTest(tx: TenantTransaction, scope: TenantScope, upstreamId: string, after: Record<string, unknown>, snapshotVersion?: number | null): Promise<StagedAuditEvent> {
    return this.audit.stage(tx, {
      tenantId: scope.tenantId,
      actor: scope.actor,
      action: 'upstream.test_connection',
      target: { type: 'upstream', id: upstreamId },
      before: null,
      after,
      ...(snapshotVersion === undefined ? {} : { snapshotVersion }),
    });
  }

  async approve(scope: TenantScope, upstreamId: string, toolId: string, body: ApproveUpstreamToolRequest): Promise<UpstreamToolResponse> {
    const { tenantId } = scope;
    const { after, mask, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:upstream-tools:approve', async (tx) => {
      const upstream = await this.requireUpstream(tenantId, tx, upstreamId);
      const mask = await this.secretMask(tenantId, tx, upstream);
      const row = await this.tools.find(tenantId, tx, upstreamId, toolId);
      if (!row) throw upstreamErrors.toolNotFound();
      if (row.contentHash !== body.contentHash) throw upstreamErrors.toolDefinitionMoved();
      if (row.removedAt !== null) throw upstreamErrors.toolRemoved();
      if (toolState(row) === 'approved') return { after: row, mask, snapshot: null, staged: null };
      // The hash approved is the stored one, of the definition as the upstream wrote it (what the gateway compares); the
      // definition kept beside it is masked, whenever it was stored.
      const approved = { ...row, definition: maskedDefinition(mask, row.definition) as Prisma.JsonObject };
      if (!(await this.tools.approve(tenantId, tx, approved, scope.actor.userId, new Date()))) throw upstreamErrors.toolDefinitionMoved();
      const after = await this.tools.find(tenantId, tx, upstreamId, toolId);
      if (!after) throw upstreamErrors.toolNotFound();
      const snapshot = await this.snapshots.rebuildOrConflict(tenantId, tx, scope.actor.userId, 'upstream.tool.approve');
      const staged = await this.audit.stage(tx, {
        tenantId,
        actor: scope.actor,
        action: 'upstream.tool.approve',
        target: { type: 'upstream_tool', id: toolId },
        before: { upstreamId, kind: row.kind, name: row.name, approvedHash: row.approvedHash, approvedDefinition: row.approvedDefinition === null ? null : maskedDefinition(mask, row.approvedDefinition) },
        after: { upstreamId, kind: after.kind, name: after.name, approvedHash: after.approvedHash, approvedDefinition: after.approvedDefinition },
        snapshotVersion: snapshot.version,
      });
      return { after, mask, snapshot, staged };
    });
    if (snapshot && staged) {
      await this.audit.publish(staged);
      await this.announce(tenantId, snapshot);
    }
    return toUpstreamToolResponse(after, mask);
  }

  /**
   * Forgets stored definitions (all, or those no longer advertised): the way out for an upstream whose kept definitions
   * pass `maxStoredDefinitions`, short of deleting it. Forgetting an approval unpins its item, so it is an approver's
   * decision, audited with how many went, and it writes a new snapshot as approving does.
   */
  async forget(scope: TenantScope, upstreamId: string, query: ForgetUpstreamToolsQuery): Promise<ForgetUpstreamToolsResponse> {
    const { tenantId } = scope;
    const onlyRemoved = query.state === 'removed';
    const { forgotten, snapshot, staged } = await this.snapshots.transaction(scope, 'tenant:upstream-tools:approve', async (tx) => {
      await this.requireUpstream(tenantId, tx, upstreamId);
      // Not while a test connection of the upstream is storing what it found.
      await this.tools.lockUpstream(tenantId, tx, upstreamId);
      const forgotten = await this.tools.forget(tenantId, tx, upstreamId, onlyRemoved);
      if (forgotten === 0) return { forgotten, snapshot: null, staged: null };
      const snapshot = await this.snapshots.rebuildOrConflict(tenantId, tx, scope.actor.userId, 'upstream.tools.forget');
      const staged = await this.audit.stage(tx, {
        tenantId,
        actor: scope.actor,
        action: 'upstream.tools.forget',
        target: { type: 'upstream', id: upstreamId },
        before: null,
        after: { forgotten, only: onlyRemoved ? 'removed' : 'all' },
        snapshotVersion: snapshot.version,
      });
      return { forgotten, snapshot, staged };
    });
    if (snapshot && staged) {
      await this.audit.publish(staged);
      await this.announce(tenantId, snapshot);
    }
    return { forgotten };
  }

  /** Compares what was discovered with what is stored and records it (see the class comment for the rules). */
  private async storeDiscovery(
    tenantId: TenantId,
    tx: TenantTransaction,
    upstream: UpstreamRecord,
    result: ProbeResult,
    mask: SecretMask,
    actorUserId: string,
  ): Promise<SyncCounts> {
    const now = new Date();
    const stored = new Map<string, UpstreamToolRow>();
    for (const row of await this.tools.list(tenantId, tx, upstream.id)) stored.set(`${row.kind}\u0000${row.name}`, row);
    // Definitions stored before test connections masked the upstream's secrets in them are masked in place (they are
    // shown masked either way): the credential should not sit in the table in plain text. Hashes stay as they are.
    for (const row of stored.values()) {
      const definition = maskedDefinition(mask, row.definition);
      const approvedDefinition = row.approvedDefinition === null ? null : maskedDefinition(mask, row.approvedDefinition);
      if (definition === row.definition && approvedDefinition === row.approvedDefinition) continue;
      await this.tools.storeMasked(tenantId, tx, row.id, { definition: definition as Prisma.InputJsonValue, approvedDefinition: approvedDefinition as Prisma.InputJsonValue | null });
    }
    const counts: SyncCounts = { total: result.items.length, new: 0, approvedOnFirstUse: 0, changed: 0, removed: 0 };
    const trustFirstUse = upstream.toolApproval === 'trust_on_first_use';
    // Batched: one statement per thousand new or unchanged rows (a test may find thousands, and the transaction is
    // bounded); only definitions that changed are written one by one.
    const created: NewUpstreamTool[] = [];
    const unchanged: string[] = [];
    for (const item of result.items) {
      const key = `${item.kind}\u0000${item.name}`;
      const row = stored.get(key);
      stored.delete(key);
      const definition = item.definition as Prisma.InputJsonValue;
      if (!row) {
        counts.new++;
        if (trustFirstUse) counts.approvedOnFirstUse++;
        created.push({ id: newId(), kind: item.kind, name: item.name, definition, contentHash: item.hash, approved: trustFirstUse, approvedById: trustFirstUse ? actorUserId : null });
        continue;
      }
      const matchesApproved = row.approvedHash === item.hash;
      // Blocked stays blocked, whatever the upstream advertises now: a test connection never lifts an administrator's block.
      const blocked = row.status === 'blocked';
      if (row.contentHash === item.hash && row.removedAt === null && (blocked || row.status === (matchesApproved ? 'approved' : 'pending'))) {
        unchanged.push(row.id);
        continue;
      }
      // A definition that moved since the last test (or came back): enforcement changes, whichever way it moved.
      if (row.contentHash !== item.hash || row.removedAt !== null) counts.changed++;
      await this.tools.recordSeen(tenantId, tx, row.id, { definition, contentHash: item.hash, matchesApproved, blocked }, now);
    }
    await this.tools.createMany(tenantId, tx, upstream.id, created, now);
    await this.tools.recordSeenUnchanged(tenantId, tx, unchanged, now);
    const gone = [...stored.values()].filter((row) => row.removedAt === null).map((row) => row.id);
    counts.removed = gone.length;
    await this.tools.markRemoved(tenantId, tx, gone, now);
    await this.boundStored(tenantId, tx, upstream, [...stored.values()], now);
    return counts;
  }

  /**
   * Keeps the upstream's stored definitions within `maxStoredDefinitions`. Past it, on an upstream that requires
   * approval, definitions it no longer advertises and nobody approved go first, longest gone first: there a missing row
   * holds an item as a pending one does. Everything else is kept: an approved row pins a definition (forgotten, one that
   * came back changed would count as new), and on a trust-on-first-use upstream a pending row is the only thing that
   * holds its item (without it the item would pass). When the kept rows alone pass the bound the test fails and stores
   * nothing. Before, an upstream that listed new names on every test grew the table without end.
   */
  private async boundStored(tenantId: TenantId, tx: TenantTransaction, upstream: UpstreamRecord, unlisted: readonly UpstreamToolRow[], now: Date): Promise<void> {
    const max = this.options.maxStoredDefinitions ?? DEFAULT_MAX_STORED_DEFINITIONS;
    const total = await this.tools.count(tenantId, tx, upstream.id);
    if (total <= max) return;
    const prunable = unlisted
      .filter((row) => upstream.toolApproval === 'require_approval' && row.approvedHash === null)
      .sort((a, b) => (a.removedAt ?? now).getTime() - (b.removedAt ?? now).getTime())
      .slice(0, total - max)
      .map((row) => row.id);
    if (total - prunable.length > max) throw upstreamErrors.tooManyDefinitions(max);
    await this.tools.deleteMany(tenantId, tx, prunable);
  }

  private async requireUpstream(tenantId: TenantId, tx: TenantTransaction, upstreamId: string): Promise<UpstreamRecord> {
    const upstream = await this.upstreams.find(tenantId, tx, upstreamId);
    if (!upstream) throw upstreamErrors.notFound();
    return upstream;
  }

  /** What the probe connects to, with the sealed headers/env opened in memory for this one connection. */
  private async probeTarget(tenantId: TenantId, tx: TenantTransaction, upstream: UpstreamRecord): Promise<ProbeTarget> {
    if (upstream.transport === 'stdio' && !this.options.stdioCommandAllowlist.includes(upstream.command ?? '')) {
      throw upstreamErrors.commandNotAllowed();
    }
    return this.connection(tenantId, tx, upstream);
  }

  /**
   * The upstream's secrets as a mask for its stored definitions (`maskedDefinition`): made from the same opened
   * configuration a test connection uses, as the gateway makes its own from the configuration it connects with.
   */
  private async secretMask(tenantId: TenantId, tx: TenantTransaction, upstream: UpstreamRecord): Promise<SecretMask> {
    return secretMaskOf(await this.connection(tenantId, tx, upstream));
  }

  /** How the upstream is reached, its sealed headers/env opened in memory (never stored or logged). */
  private async connection(tenantId: TenantId, tx: TenantTransaction, upstream: UpstreamRecord): Promise<ProbeTarget> {
    const sealed = await this.tools.connectionSecrets(tenantId, tx, upstream.id);
    const open = (field: 'headers' | 'env', ciphertext: Uint8Array | null | undefined): Record<string, string> => {
      if (!ciphertext || !sealed?.encryptionKeyId) return {};
      try {
        const value = openJson<Record<string, unknown>>(
          this.options.keyring,
          { keyId: sealed.encryptionKeyId, ciphertext: Buffer.from(ciphertext) },
          upstreamSecretContext(tenantId, upstream.id, field),
        );
        return Object.fromEntries(Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
      } catch {
        throw upstreamErrors.secretsUnreadable();
      }
    };
    const env = upstream.transport === 'stdio' ? open('env', sealed?.envCiphertext) : {};
    return {
      transport: upstream.transport,
      url: upstream.url,
      headers: upstream.transport === 'stdio' ? {} : open('headers', sealed?.headersCiphertext),
      command: upstream.command,
      // As the gateway spawns it: `${NAME}` references resolved (the masks then see the credential where it is passed).
      args: argsWithEnv(upstream.args, env),
      env,
    };
  }

  private async announce(tenantId: TenantId, snapshot: WrittenSnapshot): Promise<void> {
    // The gateway reloads its pins with the upstream registry.
    await this.changes.publish(CHANGE_CHANNELS.upstreams, tenantId);
    await this.snapshots.announce(snapshot);
  }
}
