import type { ApiKeyResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

/** Never the hash: it identifies the key to the gateway and has no business in the API. */
export const apiKeySelect = {
  id: true,
  name: true,
  displayPrefix: true,
  agentClientId: true,
  expiresAt: true,
  lastUsedAt: true,
  revokedAt: true,
  createdAt: true,
} satisfies Prisma.ApiKeySelect;
export type ApiKeyRow = Prisma.ApiKeyGetPayload<{ select: typeof apiKeySelect }>;

export function toApiKeyResponse(row: ApiKeyRow): ApiKeyResponse {
  return {
    id: row.id,
    name: row.name,
    displayPrefix: row.displayPrefix,
    agentClientId: row.agentClientId,
    expiresAt: row.expiresAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
  };
}
