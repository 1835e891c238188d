import { Injectable } from '@nestjs/common';
import { Prisma, type TenantTransaction, type UpstreamToolKind } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';

export const upstreamToolSelect = {
  id: true,
  kind: true,
  name: true,
  definition: true,
  contentHash: true,
  status: true,
  approvedHash: true,
  approvedDefinition: true,
  approvedById: true,
  approvedAt: true,
  firstSeenAt: true,
  lastSeenAt: true,
  removedAt: true,
} satisfies Prisma.UpstreamToolSelect;

export type UpstreamToolRow = Prisma.UpstreamToolGetPayload<{ select: typeof upstreamToolSelect }>;

export interface NewUpstreamTool {
  readonly id: string;
  readonly kind: UpstreamToolKind;
  readonly name: string;
  readonly definition: Prisma.InputJsonValue;
  readonly contentHash: string;
  /** Set when the definition is approved as it is created (trust on first use). */
  readonly approvedById: string | null;
  readonly approved: boolean;
}

/** Rows written per statement (each row binds about a dozen parameters; Postgres takes at most 65,535). */
const WRITE_CHUNK = 1_000;

/** Queries only; `tenantId` first and always in the where (ADR 0003). */
@Injectable()
export class UpstreamToolsRepository {
  /** Serialises test connections of one upstream (two storing the same new tool at once would collide). */
  async lockUpstream(tenantId: TenantId, tx: TenantTransaction, upstreamId: string): Promise<void> {
    // $executeRaw: the function returns `void`, which $queryRaw cannot deserialise.
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:upstream-tools:${tenantId}:${upstreamId}`}, 0))`;
  }

  /**
   * The upstream's configuration version, its row held (FOR SHARE) until the transaction ends: an edit not yet committed
   * (by any control-plane process) is waited for and its version read, and a later one waits for this transaction.
   * Undefined when the upstream is gone.
   */
  async heldVersion(tenantId: TenantId, tx: TenantTransaction, upstreamId: string): Promise<number | undefined> {
    const rows = await tx.$queryRaw<{ version: number }[]>`
      SELECT version FROM upstreams WHERE tenant_id = ${tenantId}::uuid AND id = ${upstreamId}::uuid FOR SHARE`;
    return rows[0]?.version;
  }

  /**
   * One page in id order (`limit + 1` rows: the last says whether there are more), filtered by kind and state in the
   * query (`state`'s rule is `toolState`'s: removed, else never approved, else approved hash equal to the current one).
   */
  async page(
    tenantId: TenantId,
    tx: TenantTransaction,
    upstreamId: string,
    query: { readonly kind?: UpstreamToolKind | undefined; readonly state?: 'approved' | 'changed' | 'pending' | 'removed' | undefined; readonly after: string | undefined; readonly limit: number },
  ): Promise<UpstreamToolRow[]> {
    const sameHash = { approvedHash: { equals: tx.upstreamTool.fields.contentHash } };
    const state: Prisma.UpstreamToolWhereInput =
      query.state === 'removed'
        ? { removedAt: { not: null } }
        : query.state === 'pending'
          ? { removedAt: null, approvedHash: null }
          : query.state === 'approved'
            ? { removedAt: null, ...sameHash }
            : query.state === 'changed'
              ? { removedAt: null, approvedHash: { not: null }, NOT: sameHash }
              : {};
    return tx.upstreamTool.findMany({
      where: { tenantId, upstreamId, ...(query.kind ? { kind: query.kind } : {}), ...state, ...(query.after ? { id: { gt: query.after } } : {}) },
      orderBy: { id: 'asc' },
      take: query.limit + 1,
      select: upstreamToolSelect,
    });
  }

  async list(tenantId: TenantId, tx: TenantTransaction, upstreamId: string): Promise<UpstreamToolRow[]> {
    return tx.upstreamTool.findMany({
      where: { tenantId, upstreamId },
      orderBy: [{ kind: 'asc' }, { name: 'asc' }],
      select: upstreamToolSelect,
    });
  }

  async find(tenantId: TenantId, tx: TenantTransaction, upstreamId: string, id: string): Promise<UpstreamToolRow | null> {
    return tx.upstreamTool.findFirst({ where: { tenantId, upstreamId, id }, select: upstreamToolSelect });
  }

  /** Stores definitions seen for the first time, in multi-row inserts (a test may find thousands). */
  async createMany(tenantId: TenantId, tx: TenantTransaction, upstreamId: string, tools: readonly NewUpstreamTool[], now: Date): Promise<void> {
    for (let start = 0; start < tools.length; start += WRITE_CHUNK) {
      await tx.upstreamTool.createMany({
        data: tools.slice(start, start + WRITE_CHUNK).map((tool) => ({
          tenantId,
          upstreamId,
          id: tool.id,
          kind: tool.kind,
          name: tool.name,
          definition: tool.definition,
          contentHash: tool.contentHash,
          status: tool.approved ? ('approved' as const) : ('pending' as const),
          approvedHash: tool.approved ? tool.contentHash : null,
          approvedDefinition: tool.approved ? tool.definition : Prisma.DbNull,
          approvedById: tool.approved ? tool.approvedById : null,
          approvedAt: tool.approved ? now : null,
          firstSeenAt: now,
          lastSeenAt: now,
        })),
      });
    }
  }

  /** The upstream still advertises these items exactly as stored: only when it was last seen moves. */
  async recordSeenUnchanged(tenantId: TenantId, tx: TenantTransaction, ids: readonly string[], now: Date): Promise<void> {
    for (let start = 0; start < ids.length; start += WRITE_CHUNK) {
      await tx.upstreamTool.updateMany({ where: { tenantId, id: { in: ids.slice(start, start + WRITE_CHUNK) } }, data: { lastSeenAt: now } });
    }
  }

  /**
   * The upstream advertises the item (again): store what it advertises now and whether that is the approved one. A
   * blocked item (`blocked`) stays blocked.
   */
  async recordSeen(
    tenantId: TenantId,
    tx: TenantTransaction,
    id: string,
    seen: { readonly definition: Prisma.InputJsonValue; readonly contentHash: string; readonly matchesApproved: boolean; readonly blocked: boolean },
    now: Date,
  ): Promise<void> {
    await tx.upstreamTool.updateMany({
      where: { tenantId, id },
      data: {
        definition: seen.definition,
        contentHash: seen.contentHash,
        status: seen.blocked ? 'blocked' : seen.matchesApproved ? 'approved' : 'pending',
        lastSeenAt: now,
        removedAt: null,
      },
    });
  }

  /** Replaces a row's stored definitions with their masked texts (`maskedDefinition`); its hashes are left as they are. */
  async storeMasked(
    tenantId: TenantId,
    tx: TenantTransaction,
    id: string,
    masked: { readonly definition: Prisma.InputJsonValue; readonly approvedDefinition: Prisma.InputJsonValue | null },
  ): Promise<void> {
    await tx.upstreamTool.updateMany({
      where: { tenantId, id },
      data: { definition: masked.definition, approvedDefinition: masked.approvedDefinition ?? Prisma.DbNull },
    });
  }

  async count(tenantId: TenantId, tx: TenantTransaction, upstreamId: string): Promise<number> {
    return tx.upstreamTool.count({ where: { tenantId, upstreamId } });
  }

  async deleteMany(tenantId: TenantId, tx: TenantTransaction, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await tx.upstreamTool.deleteMany({ where: { tenantId, id: { in: [...ids] } } });
  }

  /** Deletes the upstream's stored definitions (only those marked removed, with `onlyRemoved`); how many went. */
  async forget(tenantId: TenantId, tx: TenantTransaction, upstreamId: string, onlyRemoved: boolean): Promise<number> {
    const { count } = await tx.upstreamTool.deleteMany({ where: { tenantId, upstreamId, ...(onlyRemoved ? { removedAt: { not: null } } : {}) } });
    return count;
  }

  async markRemoved(tenantId: TenantId, tx: TenantTransaction, ids: readonly string[], now: Date): Promise<void> {
    if (ids.length === 0) return;
    await tx.upstreamTool.updateMany({ where: { tenantId, id: { in: [...ids] }, removedAt: null }, data: { removedAt: now } });
  }

  /**
   * Approves the stored definition if it still is the one with `contentHash` (compare-and-set). False when it is
   * not (a newer test connection stored another definition in between) or the row is gone.
   */
  async approve(
    tenantId: TenantId,
    tx: TenantTransaction,
    row: Pick<UpstreamToolRow, 'id' | 'contentHash' | 'definition'>,
    actorUserId: string,
    now: Date,
  ): Promise<boolean> {
    const { count } = await tx.upstreamTool.updateMany({
      where: { tenantId, id: row.id, contentHash: row.contentHash },
      data: {
        status: 'approved',
        approvedHash: row.contentHash,
        approvedDefinition: row.definition ?? {},
        approvedById: actorUserId,
        approvedAt: now,
      },
    });
    return count > 0;
  }

  /** The outcome of the last test connection, on the upstream (no version bump: the gateway needs no reload). */
  async recordSync(tenantId: TenantId, tx: TenantTransaction, upstreamId: string, error: string | null, now: Date): Promise<void> {
    await tx.upstream.updateMany({ where: { tenantId, id: upstreamId }, data: { lastSyncedAt: now, lastSyncError: error } });
  }

  /** The upstream's sealed secrets and how to open them, for a test connection. Never leaves the service. */
  async connectionSecrets(
    tenantId: TenantId,
    tx: TenantTransaction,
    upstreamId: string,
  ): Promise<{ headersCiphertext: Uint8Array | null; envCiphertext: Uint8Array | null; encryptionKeyId: string | null } | null> {
    return tx.upstream.findFirst({
      where: { tenantId, id: upstreamId },
      select: { headersCiphertext: true, envCiphertext: true, encryptionKeyId: true },
    });
  }
}
