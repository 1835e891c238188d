#!/usr/bin/env node
// @ts-check
// Audit operator commands (package.json audit:* scripts):
//
//   npm run audit:dlq -- list [--limit N] [--json]         dead-lettered audit events
//   npm run audit:dlq -- replay [--id ID ...]              back onto the audit queue (all, or the given ids)
//   npm run audit:verify -- --tenant <slug>                verify a tenant's hash chain (exit 0 OK, 1 broken)
//   npm run audit:verify -- --export <file> --manifest <file>   verify an export offline
//
// The logic is TypeScript in libs/audit/core (runAuditCli), loaded with jiti and the tsconfig path aliases, as
// db.mjs loads the seed. Environment: REDIS_URL, QUEUE_PREFIX, DATABASE_SYSTEM_URL.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
process.env.CHECKPOINT_DISABLE ??= '1';

const { createJiti } = await import('jiti');
const tsconfig = JSON.parse(readFileSync(path.join(repoRoot, 'tsconfig.base.json'), 'utf8'));
/** @type {Record<string, string>} */
const alias = {};
for (const [name, [target]] of Object.entries(tsconfig.compilerOptions.paths ?? {})) {
  alias[name] = path.join(repoRoot, target);
}
const jiti = createJiti(import.meta.url, { alias });
/** @type {{ runAuditCli: (argv: string[], env: Record<string, string | undefined>, io: { out: (l: string) => void, err: (l: string) => void }) => Promise<number> }} */
const cli = await jiti.import(path.join(repoRoot, 'libs/audit/core/src/index.ts'));
process.exitCode = await cli.runAuditCli(process.argv.slice(2), process.env, {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
});
