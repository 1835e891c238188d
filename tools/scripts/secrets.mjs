#!/usr/bin/env node
// @ts-check
// Secrets at rest, operator commands (package.json secrets:* scripts):
//
//   npm run secrets:reseal [-- --dry-run]   seal every upstream's stored secrets again under the active key
//
// Key rotation: put the new key first in CONTROL_PLANE_SECRETS_KEYRING and GATEWAY_SECRETS_KEYRING, keeping the old
// one after it; restart; run this; when it reports nothing left under the old key, remove the old key from both.
// Environment: DATABASE_SYSTEM_URL (portcullis_system), CONTROL_PLANE_SECRETS_KEYRING (the first key is the active
// one). Prints counts and upstream ids only, never a secret. Exit 0 when everything is under the active key.
import { importSource } from './lib/harness.mjs';

const args = process.argv.slice(2);
const [command, ...flags] = args;
if (command !== 'reseal' || flags.some((flag) => flag !== '--dry-run')) {
  console.error('usage: npm run secrets:reseal [-- --dry-run]');
  process.exit(2);
}
const url = process.env.DATABASE_SYSTEM_URL;
const spec = process.env.CONTROL_PLANE_SECRETS_KEYRING;
if (!url || !spec) {
  console.error('DATABASE_SYSTEM_URL and CONTROL_PLANE_SECRETS_KEYRING are required');
  process.exit(2);
}
const { parseKeyring } = await importSource('libs/auth/secrets/src/index.ts');
const { createSystemPrismaClient, databaseErrorSummary } = await importSource('libs/data/db/src/index.ts');
const { resealUpstreamSecrets } = await importSource('libs/control-plane/feature-upstreams/src/lib/reseal-secrets.ts');

let keyring;
try {
  keyring = parseKeyring(spec);
} catch (error) {
  console.error(`CONTROL_PLANE_SECRETS_KEYRING: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(2);
}
const db = createSystemPrismaClient({ url, applicationName: 'secrets-reseal' });
try {
  const dryRun = flags.includes('--dry-run');
  const result = await resealUpstreamSecrets(db, keyring, { dryRun });
  console.log(`${result.found} upstream(s) under another key than ${keyring.activeKeyId}; ${dryRun ? 'would reseal' : 'resealed'} ${result.resealed}`);
  for (const failure of result.failed) console.log(`not resealed: upstream ${failure.upstreamId} (tenant ${failure.tenantId}): ${failure.reason}`);
  process.exitCode = result.failed.length === 0 ? 0 : 1;
} catch (error) {
  // One line for the operator, no stack trace; Prisma's own sentence names the server's host:port, never the URL.
  const database = databaseErrorSummary(error);
  if (database === undefined) throw error;
  console.error(`secrets reseal: database error: ${database}`);
  process.exitCode = 1;
} finally {
  await db.$disconnect();
}
