import { Inject, Injectable } from '@nestjs/common';
import type {
  ParsedPutPolicyRequest,
  ParsedSimulatePolicyRequest,
  PolicyResponse,
  SavedPolicyResponse,
  SimulatePolicyResponse,
} from '@portcullis/contracts/api';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter } from '@portcullis/control-plane/change-events';
import { isUniqueViolation, parseIfMatch } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { evaluate, loadSnapshot, visibleTools, type PolicySnapshot } from '@portcullis/policy/engine';
import { policyErrors } from './policies.errors';
import { policyEtag, toPolicyResponse } from './policies.mapper';
import { PoliciesRepository } from './policies.repository';
import { PolicySnapshotWriter } from './policy-snapshot.writer';

const NO_SNAPSHOT_REASON = 'no active policy snapshot: the gateway denies every call for this tenant (fail safe)';
const NO_SNAPSHOT_MESSAGE = 'This tenant has no active policy yet, so every call is denied.';

@Injectable()
export class PoliciesService {
  /** Loaded snapshots for simulation, by checksum (immutable, so never stale); bounded. */
  private readonly loaded = new Map<string, PolicySnapshot>();

  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: PoliciesRepository,
    private readonly writer: PolicySnapshotWriter,
    private readonly audit: AuditEmitter,
  ) {}

  async get(scope: TenantScope): Promise<{ policy: PolicyResponse; etag: string }> {
    const policy = await withTenant(this.db, scope.tenantId, async (tx) => {
      const row = await this.repository.findPolicy(scope.tenantId, tx);
      const rules = row ? await this.repository.rules(scope.tenantId, tx, row.id) : [];
      return toPolicyResponse(row, rules, await this.repository.activeVersion(scope.tenantId, tx));
    });
    return { policy, etag: policyEtag(policy.version) };
  }

  /**
   * Replaces the policy (default effect and every rule) if `If-Match` names the current version, compiles it
   * against the tenant's directory and registry, and writes the new active snapshot, all in one transaction.
   * Compile errors are a 400 naming each rule and path; nothing is saved then.
   */
  async put(scope: TenantScope, ifMatch: string | string[] | undefined, body: ParsedPutPolicyRequest): Promise<{ policy: SavedPolicyResponse; etag: string }> {
    const expected = parseIfMatch(ifMatch);
    if (expected === undefined) throw policyErrors.ifMatchRequired();
    if (expected === null) throw policyErrors.ifMatchMalformed();
    const { tenantId } = scope;
    const data = { defaultEffect: body.defaultEffect, description: body.description ?? null, actorId: scope.actor.userId };

    const outcome = await this.writer.transaction(scope, 'tenant:policies:write', async (tx) => {
      // Serialise with every other snapshot writer of this tenant before reading the version.
      await this.repository.lockSnapshots(tenantId, tx);
      const existing = await this.repository.findPolicy(tenantId, tx);
      const beforeRules = existing ? await this.repository.rules(tenantId, tx, existing.id) : [];
      const before = existing ? toPolicyResponse(existing, beforeRules, null) : null;
      if ((existing?.version ?? 0) !== expected) throw policyErrors.stale(existing?.version ?? 0);
      const saved = existing
        ? await this.repository.updatePolicyIfVersion(tenantId, tx, existing.id, expected, data)
        : await this.repository.createPolicy(tenantId, tx, data);
      if (!saved) throw policyErrors.stale((await this.repository.findPolicy(tenantId, tx))?.version ?? 0);
      await this.repository.replaceRules(tenantId, tx, saved.id, body.rules);
      const result = await this.writer.rebuild(tenantId, tx, {
        actorUserId: scope.actor.userId,
        comment: 'policy.update',
        override: { defaultEffect: body.defaultEffect, rules: body.rules },
        newRules: true,
      });
      if (!result.ok) throw policyErrors.doesNotCompile(result.errors);
      const rules = await this.repository.rules(tenantId, tx, saved.id);
      const after = toPolicyResponse(saved, rules, result.snapshot.version);
      const staged = await this.audit.stage(tx, {
        tenantId,
        actor: scope.actor,
        action: before ? 'policy.update' : 'policy.create',
        target: { type: 'policy', id: tenantId },
        before,
        after,
        snapshotVersion: result.snapshot.version,
      });
      return { after, snapshot: result.snapshot, staged };
    }).catch((error: unknown) => {
      // Two first saves racing: the loser hits the unique (tenant, name) and must reload.
      throw isUniqueViolation(error) ? policyErrors.stale(1) : error;
    });

    await this.audit.publish(outcome.staged);
    await this.writer.announce(outcome.snapshot);
    return {
      policy: { ...outcome.after, snapshot: { version: outcome.snapshot.version, checksum: outcome.snapshot.checksum } },
      etag: policyEtag(outcome.after.version),
    };
  }

  /** The decision (or the visible list) from the tenant's ACTIVE snapshot, with the evaluator the gateway runs. */
  async simulate(scope: TenantScope, body: ParsedSimulatePolicyRequest): Promise<SimulatePolicyResponse> {
    const { active, directory } = await withTenant(this.db, scope.tenantId, async (tx) => ({
      active: await this.repository.active(scope.tenantId, tx),
      directory: body.tool === undefined ? await this.repository.directory(scope.tenantId, tx) : null,
    }));
    const snapshot = active ? this.load(active.checksum, active.ir) : null;
    const principal = { userId: body.subject.userId ?? null, agentClientId: body.subject.agentClientId ?? null };

    if (body.tool !== undefined) {
      if (!snapshot) {
        return {
          kind: 'decision',
          decision: {
            effect: 'deny',
            ruleIds: [],
            reason: NO_SNAPSHOT_REASON,
            agentMessage: NO_SNAPSHOT_MESSAGE,
            defaulted: true,
            snapshotVersion: null,
            conditionErrors: [],
            rateLimits: [],
          },
        };
      }
      const decision = evaluate(snapshot, {
        principal,
        target: { kind: body.tool.kind, upstream: body.tool.upstream, name: body.tool.name },
        arguments: body.arguments ?? {},
        context: { time: body.context?.time ?? new Date(), ip: body.context?.ip ?? null },
      });
      return {
        kind: 'decision',
        decision: {
          effect: decision.effect,
          ruleIds: [...decision.ruleIds],
          reason: decision.reason,
          agentMessage: decision.agentMessage,
          defaulted: decision.defaulted,
          snapshotVersion: decision.snapshotVersion,
          conditionErrors: decision.conditionErrors.map((error) => ({ ...error })),
          rateLimits: decision.rateLimits.map((limit) => ({ ruleId: limit.ruleId, rateLimit: limit.rateLimit })),
        },
      };
    }

    const known = (directory?.upstreams ?? []).flatMap((upstream) =>
      upstream.tools
        .filter((tool): tool is typeof tool & { kind: 'tool' | 'prompt' | 'resource' } => tool.kind !== 'resource_template')
        .map((tool) => ({ kind: tool.kind, upstream: upstream.name, name: tool.name })),
    );
    return {
      kind: 'visibility',
      snapshotVersion: active?.version ?? null,
      considered: known.length,
      visible: snapshot ? visibleTools(snapshot, principal, known) : [],
    };
  }

  private load(checksum: string, ir: unknown): PolicySnapshot {
    const cached = this.loaded.get(checksum);
    if (cached) return cached;
    const snapshot = loadSnapshot(ir);
    if (this.loaded.size >= 64) this.loaded.delete(this.loaded.keys().next().value as string);
    this.loaded.set(checksum, snapshot);
    return snapshot;
  }
}
