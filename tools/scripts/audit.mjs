#!/usr/bin/env node
// @ts-check
// Audit operator commands (package.json audit:* scripts):
//
//   npm run audit:dlq -- list [--limit N] [--json]         dead-lettered audit events
//   npm run audit:dlq -- replay [--id ID ...]              back onto the audit queue (all, or the given ids)
//   npm run audit:verify -- --tenant <slug>                verify a tenant's hash chain (exit 0 OK, 1 broken, 3 not run)
//   npm run audit:verify -- --export <file> --manifest <file>   verify an export offline
//     (either with --public-key <file>: also check the signed anchors with the worker's public key; --tenant also with
//     --anchors <file>: anchors kept outside the database, from the worker's log or the audit API, against the live chain)
//   npm run audit:keygen -- --out <prefix>                 an Ed25519 key pair for signing chain heads
//
// The logic is TypeScript in libs/audit/core (runAuditCli), loaded with jiti and the tsconfig path aliases, as
// db.mjs loads the seed. Environment: REDIS_URL, QUEUE_PREFIX, DATABASE_SYSTEM_URL.
import { importSource } from './lib/harness.mjs';

process.env.CHECKPOINT_DISABLE ??= '1';

/** @type {{ runAuditCli: (argv: string[], env: Record<string, string | undefined>, io: { out: (l: string) => void, err: (l: string) => void }) => Promise<number> }} */
const cli = await importSource('libs/audit/core/src/index.ts');
process.exitCode = await cli.runAuditCli(process.argv.slice(2), process.env, {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
});
