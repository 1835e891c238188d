import type { UpstreamResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

/** The columns the repository reads. Ciphertexts are read only to say whether a secret is stored. */
export const upstreamSelect = {
  id: true,
  name: true,
  description: true,
  toolPrefix: true,
  transport: true,
  url: true,
  command: true,
  args: true,
  headersCiphertext: true,
  envCiphertext: true,
  encryptionKeyId: true,
  connectTimeoutMs: true,
  callTimeoutMs: true,
  enabled: true,
  toolApproval: true,
  version: true,
  createdAt: true,
  updatedAt: true,
} satisfies Prisma.UpstreamSelect;

type UpstreamRow = Prisma.UpstreamGetPayload<{ select: typeof upstreamSelect }>;

/** An upstream as the service works with it: no secret values, sealed or not, beyond this point. */
export interface UpstreamRecord extends Omit<UpstreamResponse, 'createdAt' | 'updatedAt'> {
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** Key id the stored secrets were sealed with (for re-sealing after a key rotation). */
  readonly encryptionKeyId: string | null;
}

export function toUpstreamRecord(row: UpstreamRow): UpstreamRecord {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    toolPrefix: row.toolPrefix,
    transport: row.transport,
    url: row.url,
    command: row.command,
    args: row.args,
    hasHeaders: row.headersCiphertext !== null,
    hasEnv: row.envCiphertext !== null,
    encryptionKeyId: row.encryptionKeyId,
    connectTimeoutMs: row.connectTimeoutMs,
    callTimeoutMs: row.callTimeoutMs,
    enabled: row.enabled,
    toolApproval: row.toolApproval,
    version: row.version,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export function toUpstreamResponse(record: UpstreamRecord): UpstreamResponse {
  return {
    id: record.id,
    name: record.name,
    description: record.description,
    toolPrefix: record.toolPrefix,
    transport: record.transport,
    url: record.url,
    command: record.command,
    args: [...record.args],
    hasHeaders: record.hasHeaders,
    hasEnv: record.hasEnv,
    connectTimeoutMs: record.connectTimeoutMs,
    callTimeoutMs: record.callTimeoutMs,
    enabled: record.enabled,
    toolApproval: record.toolApproval,
    version: record.version,
    createdAt: record.createdAt.toISOString(),
    updatedAt: record.updatedAt.toISOString(),
  };
}
