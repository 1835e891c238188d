import { parseArgs } from 'node:util';
import { issueAccessToken } from '@portcullis/control-plane/auth';
import { tenantSlug } from '@portcullis/contracts/api';
import { createSystemPrismaClient, databaseErrorSummary } from '@portcullis/data/db';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { newId, tenantId as toTenantId } from '@portcullis/shared/util-ids';
import { z } from 'zod';
import { bootstrapConfigSchema } from './config';

/**
 * `npm run bootstrap -- --email admin@example.com --tenant acme [--name "Acme"]`
 *
 * Creates the first platform admin, the first tenant (with the admin as its owner) and prints a short-lived access
 * token. Runs once: when a platform admin already exists it refuses (exit 1) and changes nothing.
 * `--token-for <email>` prints a fresh token for an existing platform admin (development convenience; anyone able
 * to run this already holds the signing secret).
 */
const USAGE = 'usage: npm run bootstrap -- --email <email> --tenant <slug> [--name <tenant name>] | --token-for <email>';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { email: { type: 'string' }, tenant: { type: 'string' }, name: { type: 'string' }, 'token-for': { type: 'string' } },
    strict: true,
  });
  const config = loadConfigOrExit('bootstrap', bootstrapConfigSchema);
  // The system role: making a platform administrator is not the application role's to do (a trigger refuses it).
  const db = createSystemPrismaClient({ url: config.database.systemUrl, applicationName: 'control-plane-bootstrap' });
  try {
    if (values['token-for']) {
      const user = await db.user.findUnique({ where: { email: values['token-for'].toLowerCase() }, select: { id: true, platformRole: true } });
      if (user?.platformRole !== 'platform_admin') {
        process.stderr.write('bootstrap: no platform admin with that email.\n');
        return 1;
      }
      return printToken(config.token, user.id);
    }
    const parsed = z
      .object({ email: z.email().toLowerCase(), tenant: tenantSlug, name: z.string().trim().min(1).max(200).optional() })
      .safeParse(values);
    if (!parsed.success) {
      process.stderr.write(`bootstrap: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}\n${USAGE}\n`);
      return 2;
    }
    const { email, tenant: slug, name } = parsed.data;
    const id = toTenantId(newId());
    const outcome = await db.$transaction(async (tx) => {
      // One bootstrap at a time, and only the first: the advisory lock serialises concurrent runs.
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('portcullis.bootstrap'))`;
      const existing = await tx.user.findFirst({ where: { platformRole: 'platform_admin' }, select: { email: true } });
      if (existing) return { refused: `already bootstrapped: platform admin ${existing.email} exists` } as const;
      if (await tx.tenant.findUnique({ where: { slug }, select: { id: true } })) return { refused: `tenant ${slug} already exists` } as const;
      const user = await tx.user.upsert({
        where: { email },
        create: { email, name: email, platformRole: 'platform_admin' },
        update: { platformRole: 'platform_admin' },
        select: { id: true },
      });
      await tx.tenant.create({ data: { id, slug, name: name ?? slug }, select: { id: true } });
      await tx.membership.create({ data: { tenantId: id, userId: user.id, role: 'owner', displayName: email }, select: { id: true } });
      return { userId: user.id } as const;
    });
    if ('refused' in outcome) {
      process.stderr.write(`bootstrap: ${outcome.refused}. Nothing changed. (Use --token-for <email> for a new token.)\n`);
      return 1;
    }
    process.stderr.write(`Created platform admin ${email} and tenant ${slug} (${id}) with them as owner.\n`);
    if (config.usingDevelopmentSecret) process.stderr.write('Note: signed with the development-only JWT secret.\n');
    return printToken(config.token, outcome.userId);
  } finally {
    await db.$disconnect();
  }
}

async function printToken(settings: Parameters<typeof issueAccessToken>[0], userId: string): Promise<number> {
  const { token, expiresAt } = await issueAccessToken(settings, { userId });
  process.stderr.write(`Access token (expires ${expiresAt.toISOString()}):\n`);
  process.stdout.write(`${token}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Prisma's message carries the invocation (file path, model, arguments) above its reason: only the reason.
    const database = databaseErrorSummary(error);
    const reason = database === undefined ? (error instanceof Error ? error.message : String(error)) : `database error: ${database}`;
    process.stderr.write(`bootstrap failed: ${reason}\n`);
    process.exit(1);
  },
);
