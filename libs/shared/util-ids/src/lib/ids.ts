import { v7 as uuidv7, validate as uuidValidate } from 'uuid';

declare const brand: unique symbol;

/** A nominal type: a `T` that only its own constructor function produces. */
export type Brand<T, Name extends string> = T & { readonly [brand]: Name };

export type TenantId = Brand<string, 'TenantId'>;
export type UserId = Brand<string, 'UserId'>;
export type UpstreamId = Brand<string, 'UpstreamId'>;
export type AgentClientId = Brand<string, 'AgentClientId'>;
export type ApiKeyId = Brand<string, 'ApiKeyId'>;
export type PolicyId = Brand<string, 'PolicyId'>;
export type SnapshotId = Brand<string, 'SnapshotId'>;
export type AuditEventId = Brand<string, 'AuditEventId'>;
export type ApprovalId = Brand<string, 'ApprovalId'>;

// Random bytes for ids come from a pool refilled 4 KiB at a time (one getRandomValues per 256 ids: the
// gateway mints one per audit event), with the same monotonic (time, counter) state as the library keeps.
const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let poolOffset = POOL_BYTES;
const v7State = { msecs: Number.NEGATIVE_INFINITY, seq: 0 };

function randomBlock(): Uint8Array {
  if (poolOffset === POOL_BYTES) {
    globalThis.crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  const block = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  return block;
}

/** A new time-ordered identifier (UUIDv7): sorts by creation time, so indexes stay append-mostly. */
export function newId<T extends string = string>(): T {
  const random = randomBlock();
  const now = Date.now();
  if (now > v7State.msecs) {
    // A fresh 31-bit counter each millisecond, as the library seeds it.
    v7State.seq = (((random[6] ?? 0) & 0x7f) << 24) | ((random[7] ?? 0) << 16) | ((random[8] ?? 0) << 8) | (random[9] ?? 0);
    v7State.msecs = now;
  } else {
    v7State.seq = (v7State.seq + 1) | 0;
    if (v7State.seq === 0) v7State.msecs++;
  }
  return uuidv7({ random, msecs: v7State.msecs, seq: v7State.seq }) as T;
}

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && uuidValidate(value);
}

export class InvalidIdError extends Error {
  constructor(kind: string) {
    super(`${kind} must be a UUID`);
    this.name = 'InvalidIdError';
  }
}

function brandUuid<T>(kind: string, value: string): T {
  if (!isUuid(value)) throw new InvalidIdError(kind);
  return value.toLowerCase() as T;
}

/**
 * Produces a TenantId. Only the authentication layer (which resolved the tenant from a credential or
 * a route it has checked), trusted loaders and test factories call this.
 */
export const tenantId = (value: string): TenantId => brandUuid<TenantId>('tenantId', value);
export const userId = (value: string): UserId => brandUuid<UserId>('userId', value);
export const upstreamId = (value: string): UpstreamId => brandUuid<UpstreamId>('upstreamId', value);
export const agentClientId = (value: string): AgentClientId => brandUuid<AgentClientId>('agentClientId', value);
export const apiKeyId = (value: string): ApiKeyId => brandUuid<ApiKeyId>('apiKeyId', value);
export const policyId = (value: string): PolicyId => brandUuid<PolicyId>('policyId', value);
export const snapshotId = (value: string): SnapshotId => brandUuid<SnapshotId>('snapshotId', value);
export const auditEventId = (value: string): AuditEventId => brandUuid<AuditEventId>('auditEventId', value);
export const approvalId = (value: string): ApprovalId => brandUuid<ApprovalId>('approvalId', value);
