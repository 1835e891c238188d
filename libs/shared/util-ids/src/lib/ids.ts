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

/** A new time-ordered identifier (UUIDv7): sorts by creation time, so indexes stay append-mostly. */
export function newId<T extends string = string>(): T {
  return uuidv7() as T;
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
