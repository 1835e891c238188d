import type { TenantTransaction } from './with-tenant';

/**
 * The user with this (lowercased) email, created if there is none, in one race-free step: `INSERT … ON CONFLICT DO
 * NOTHING` waits for a concurrent insert of the same email and then leaves it be, and the read that follows sees it.
 * Looking up and then creating let two requests adding the same new person (to two tenants, say) collide on the
 * unique email, and the loser was told the person was already a member, or that a slug was taken.
 */
export async function findOrCreateUser(tx: TenantTransaction, email: string): Promise<{ id: string }> {
  await tx.$executeRaw`INSERT INTO users (email, name, updated_at) VALUES (${email}, ${email}, now()) ON CONFLICT (email) DO NOTHING`;
  return tx.user.findUniqueOrThrow({ where: { email }, select: { id: true } });
}
