import { open, seal, SecretBoxError, upstreamSecretContext, type Keyring } from '@portcullis/auth/secrets';
import type { SystemPrismaClient } from '@portcullis/data/db';

/** The sealed columns of an upstream, all under one key id (`encryption_key_id`). */
const FIELDS = [
  { field: 'headers', column: 'headersCiphertext' },
  { field: 'env', column: 'envCiphertext' },
  { field: 'credentials', column: 'credentialsCiphertext' },
] as const;

export interface ResealResult {
  /** Upstreams whose secrets were under another key than the active one. */
  readonly found: number;
  readonly resealed: number;
  /** Those that could not be opened (their key is not in the keyring, or the ciphertext is damaged): left as they are. */
  readonly failed: readonly { readonly upstreamId: string; readonly tenantId: string; readonly reason: string }[];
}

/**
 * Seals every upstream's stored secrets again under the keyring's active key, so that an older key (rotated out, or
 * suspected compromised) can then be removed from the control plane's and the gateways' keyrings. Each upstream is
 * opened with the key its row names and written back in its own transaction, locked and checked against the key id
 * it was read with (an edit meanwhile wins). The values never leave memory; the configuration version does not
 * change (what the upstream receives is the same). Cross-tenant: run as `portcullis_system`.
 */
export async function resealUpstreamSecrets(db: SystemPrismaClient, keyring: Keyring, options: { readonly dryRun?: boolean } = {}): Promise<ResealResult> {
  const stale = await db.upstream.findMany({
    where: { encryptionKeyId: { not: null }, NOT: { encryptionKeyId: keyring.activeKeyId } },
    select: { id: true, tenantId: true, encryptionKeyId: true },
    orderBy: { id: 'asc' },
  });
  const failed: { upstreamId: string; tenantId: string; reason: string }[] = [];
  let resealed = 0;
  for (const upstream of stale) {
    const keyId = upstream.encryptionKeyId as string;
    if (!keyring.keys.has(keyId)) {
      failed.push({ upstreamId: upstream.id, tenantId: upstream.tenantId, reason: `key ${keyId} is not in the keyring` });
      continue;
    }
    try {
      const done = await db.$transaction(async (tx) => {
        await tx.$queryRaw`SELECT id FROM upstreams WHERE id = ${upstream.id}::uuid FOR UPDATE`;
        const row = await tx.upstream.findFirst({
          where: { id: upstream.id, tenantId: upstream.tenantId, encryptionKeyId: keyId },
          select: { headersCiphertext: true, envCiphertext: true, credentialsCiphertext: true },
        });
        if (row === null) return false; // edited (and so re-sealed) since it was listed
        const data: Record<string, Uint8Array | string> = { encryptionKeyId: keyring.activeKeyId };
        for (const { field, column } of FIELDS) {
          const stored = row[column];
          if (stored === null) continue;
          const context = upstreamSecretContext(upstream.tenantId, upstream.id, field);
          const plaintext = open(keyring, { keyId, ciphertext: Buffer.from(stored) }, context);
          data[column] = new Uint8Array(seal(keyring, plaintext, context).ciphertext);
          plaintext.fill(0);
        }
        if (options.dryRun) return true;
        await tx.upstream.updateMany({ where: { id: upstream.id, tenantId: upstream.tenantId, encryptionKeyId: keyId }, data });
        return true;
      });
      if (done) resealed += 1;
    } catch (error) {
      // A SecretBoxError names key ids only; anything else is summarised (a driver message could quote values).
      const code = (error as { code?: unknown } | null)?.code;
      const reason = error instanceof SecretBoxError ? error.message : `database error${typeof code === 'string' ? ` ${code}` : ''}`;
      failed.push({ upstreamId: upstream.id, tenantId: upstream.tenantId, reason });
    }
  }
  return { found: stale.length, resealed, failed };
}
