import { Injectable } from '@nestjs/common';
import type { TenantTransaction, ToolApprovalMode, UpstreamTransport } from '@portcullis/data/db';
import type { PageRequest } from '@portcullis/control-plane/http';
import type { TenantId } from '@portcullis/shared/util-ids';
import { toUpstreamRecord, upstreamSelect, type UpstreamRecord } from './upstreams.mapper';

/** A sealed secret as stored: ciphertext, or null to clear; undefined leaves the column alone. */
export type SealedColumn = Uint8Array<ArrayBuffer> | null | undefined;

export interface NewUpstream {
  readonly id: string;
  readonly name: string;
  readonly description: string | null;
  readonly toolPrefix: string;
  readonly transport: UpstreamTransport;
  readonly url: string | null;
  readonly command: string | null;
  readonly args: readonly string[];
  readonly headersCiphertext: SealedColumn;
  readonly envCiphertext: SealedColumn;
  readonly encryptionKeyId: string | null;
  readonly connectTimeoutMs?: number | undefined;
  readonly callTimeoutMs?: number | undefined;
  readonly enabled?: boolean | undefined;
  readonly toolApproval?: ToolApprovalMode | undefined;
}

export type UpstreamChanges = Partial<Omit<NewUpstream, 'id' | 'transport'>>;

/** Queries only. Every method takes the tenant first and puts it in the where clause. */
@Injectable()
export class UpstreamsRepository {
  async list(tenantId: TenantId, tx: TenantTransaction, page: PageRequest): Promise<UpstreamRecord[]> {
    const rows = await tx.upstream.findMany({
      where: { tenantId, ...(page.after === undefined ? {} : { id: { gt: page.after } }) },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: upstreamSelect,
    });
    return rows.map(toUpstreamRecord);
  }

  async find(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<UpstreamRecord | null> {
    const row = await tx.upstream.findUnique({ where: { tenantId_id: { tenantId, id } }, select: upstreamSelect });
    return row ? toUpstreamRecord(row) : null;
  }

  /** The upstream holding a name or tool prefix, if any. */
  async findHolder(
    tenantId: TenantId,
    tx: TenantTransaction,
    by: { name: string } | { toolPrefix: string },
  ): Promise<{ id: string; name: string } | null> {
    return tx.upstream.findFirst({ where: { tenantId, ...by }, select: { id: true, name: true } });
  }

  async create(tenantId: TenantId, tx: TenantTransaction, upstream: NewUpstream): Promise<UpstreamRecord> {
    const row = await tx.upstream.create({
      data: {
        tenantId,
        id: upstream.id,
        name: upstream.name,
        description: upstream.description,
        toolPrefix: upstream.toolPrefix,
        transport: upstream.transport,
        url: upstream.url,
        command: upstream.command,
        args: [...upstream.args],
        headersCiphertext: upstream.headersCiphertext ?? null,
        envCiphertext: upstream.envCiphertext ?? null,
        encryptionKeyId: upstream.encryptionKeyId,
        ...(upstream.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: upstream.connectTimeoutMs }),
        ...(upstream.callTimeoutMs === undefined ? {} : { callTimeoutMs: upstream.callTimeoutMs }),
        ...(upstream.enabled === undefined ? {} : { enabled: upstream.enabled }),
        ...(upstream.toolApproval === undefined ? {} : { toolApproval: upstream.toolApproval }),
      },
      select: upstreamSelect,
    });
    return toUpstreamRecord(row);
  }

  /** Applies the changes and bumps `version` (the gateway's registry compares it). Null when no such upstream. */
  /**
   * Applies `changes` if the row is still at `expectedVersion` when given (compare-and-set: a concurrent update that
   * committed first makes this one change nothing). Null when nothing was changed.
   */
  async update(
    tenantId: TenantId,
    tx: TenantTransaction,
    id: string,
    changes: UpstreamChanges,
    expectedVersion?: number,
  ): Promise<UpstreamRecord | null> {
    const data = Object.fromEntries(
      Object.entries({ ...changes, args: changes.args === undefined ? undefined : [...changes.args] }).filter(
        ([, value]) => value !== undefined,
      ),
    );
    const { count } = await tx.upstream.updateMany({
      where: { tenantId, id, ...(expectedVersion === undefined ? {} : { version: expectedVersion }) },
      data: { ...data, version: { increment: 1 } },
    });
    return count === 0 ? null : this.find(tenantId, tx, id);
  }

  /** One stored ciphertext, only for re-sealing it under the active key. Never leaves the service. */
  async sealedSecret(
    tenantId: TenantId,
    tx: TenantTransaction,
    id: string,
    field: 'headers' | 'env',
  ): Promise<Uint8Array | null> {
    const row = await tx.upstream.findUnique({
      where: { tenantId_id: { tenantId, id } },
      select: { headersCiphertext: field === 'headers', envCiphertext: field === 'env' },
    });
    return (field === 'headers' ? row?.headersCiphertext : row?.envCiphertext) ?? null;
  }

  async delete(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<boolean> {
    const { count } = await tx.upstream.deleteMany({ where: { tenantId, id } });
    return count > 0;
  }
}
