import { z } from 'zod';

export const createApiKeyRequest = z.strictObject({
  name: z.string().trim().min(1).max(100),
  /** The agent client the key authenticates as. */
  agentClientId: z.uuid(),
  expiresAt: z.iso
    .datetime({ offset: true })
    .refine((value) => Date.parse(value) > Date.now(), 'must be in the future')
    // A year that stays 9999 in UTC: `9999-12-31T23:59:59-15:59` is year 10000 there, which Postgres stores but no
    // ISO 8601 timestamp of four-digit years can give back.
    .refine((value) => new Date(value).getUTCFullYear() <= 9999, 'must be before the year 10000 (UTC)')
    .optional(),
});
export type CreateApiKeyRequest = z.infer<typeof createApiKeyRequest>;

/** An API key as listed: the display prefix identifies it; the secret is never stored or returned. */
export const apiKeyResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  displayPrefix: z.string(),
  agentClientId: z.uuid().nullable(),
  expiresAt: z.iso.datetime({ offset: true }).nullable(),
  lastUsedAt: z.iso.datetime({ offset: true }).nullable(),
  revokedAt: z.iso.datetime({ offset: true }).nullable(),
  createdAt: z.iso.datetime({ offset: true }),
});
export type ApiKeyResponse = z.infer<typeof apiKeyResponse>;

/** The answer to a create: the only time the secret is shown. */
export const createdApiKeyResponse = apiKeyResponse.extend({ secret: z.string() });
export type CreatedApiKeyResponse = z.infer<typeof createdApiKeyResponse>;
