import { createSystemPrismaClient, databaseErrorSummary, type SystemPrismaClient } from '@portcullis/data/db';
import { auditKeyId, auditVerificationKeys, AuditKeyError } from '@portcullis/audit/chain';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { AuditDlq } from './audit-dlq';
import { checkArchivedAnchors, parseArchivedAnchors } from './audit-anchors';
import { verifyTenantChain } from './verify-tenant-chain';

export interface AuditCliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export interface AuditCliEnv {
  readonly REDIS_URL?: string;
  readonly QUEUE_PREFIX?: string;
  readonly DATABASE_SYSTEM_URL?: string;
}

const DEFAULTS = {
  redisUrl: 'redis://127.0.0.1:6379',
  queuePrefix: 'portcullis',
  systemUrl: 'postgresql://portcullis_system@127.0.0.1:5432/portcullis',
};

/** How long `audit dlq` waits for Redis to answer before it gives up. */
const REDIS_READY_TIMEOUT_MS = 5_000;

export const AUDIT_CLI_USAGE = `Usage:
  audit dlq list [--limit N] [--json]             dead-lettered audit jobs (single events, or batches)
  audit dlq replay [--id ID ...]                  put them (all, or the given DLQ/job ids) back on the audit queue
  audit verify --tenant SLUG                      verify a tenant's hash chain in Postgres
  audit verify --export FILE --manifest FILE      verify an export file offline against its manifest
    [--public-key FILE]                           also check the signed anchors with the worker's public key(s)
                                                  (a PEM file of one or more PUBLIC KEY blocks)
  audit verify --tenant SLUG --public-key FILE --anchors FILE
                                                  also check anchors kept outside the database (the worker's log lines,
                                                  the audit API's anchor pages, export manifests) against the live chain
  audit keygen --out PREFIX                       make an Ed25519 key pair for signing chain heads: PREFIX.key
                                                  (private, mode 600: AUDIT_SIGNING_KEY_FILE) and PREFIX.pub

Environment: REDIS_URL, QUEUE_PREFIX (BullMQ prefix, as the worker's), DATABASE_SYSTEM_URL (portcullis_system).
Exit codes: 0 ok, 1 verification failed / nothing done, 2 usage error, 3 could not run (Redis or the database out
of reach, a database error): nothing was checked, which a monitor must not read as a broken chain.`;

class UsageError extends Error {}

/**
 * The exit code when a command could not do its work (a dependency out of reach, a database error): apart from 1, so
 * that a scheduled `audit verify` tells "the chain is broken" (tampering) from "the check did not run" (an outage).
 */
export const COULD_NOT_RUN = 3;

/** A failure the command reports in one line (exit 3, COULD_NOT_RUN), such as a dependency out of reach. */
class CommandError extends Error {}

/**
 * Redis's or the client's own sentence for a command that failed once Redis was reached (a full Redis refusing writes
 * with OOM, a replica's READONLY, a connection dropped or a command not answered in time), for a one-line message;
 * undefined for any other error. Redis's replies name no password; the connection's URL is not in them.
 */
function redisFailure(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const redisError = ['ReplyError', 'MaxRetriesPerRequestError', 'AbortError'].includes(error.name) || /^(Connection is closed|Command timed out|Stream isn't writeable)/.test(error.message);
  if (!redisError) return undefined;
  // A Lua script's reply carries the script's hash and line after the reason.
  return (error.message.split('\n')[0] ?? error.name).replace(/\. script: .*$/, '');
}

/** Where a Redis URL points (host:port), never its user or password. */
function redisAddress(url: string): string {
  try {
    const { hostname, port } = new URL(url);
    return `${hostname}:${port || '6379'}`;
  } catch {
    return 'REDIS_URL';
  }
}

/** The verification keys in `file`; a file that cannot be read or holds no usable key is the caller's mistake. */
async function readKeys(file: string): Promise<ReadonlyMap<string, KeyObject>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--public-key ${file}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  try {
    return auditVerificationKeys(text);
  } catch (error) {
    if (error instanceof AuditKeyError) throw new UsageError(`--public-key ${file}: ${error.message}`);
    throw error;
  }
}

async function withSystemDb<T>(env: AuditCliEnv, fn: (db: SystemPrismaClient) => Promise<T>): Promise<T> {
  const db = createSystemPrismaClient({
    url: env.DATABASE_SYSTEM_URL ?? DEFAULTS.systemUrl,
    applicationName: 'audit-cli',
  });
  try {
    return await fn(db);
  } finally {
    await db.$disconnect();
  }
}

async function dlqCommand(args: string[], env: AuditCliEnv, io: AuditCliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { id: { type: 'string', multiple: true }, limit: { type: 'string' }, json: { type: 'boolean' } },
  });
  const redisUrl = env.REDIS_URL ?? DEFAULTS.redisUrl;
  const dlq = new AuditDlq({
    connection: { url: redisUrl, maxRetriesPerRequest: 2 },
    prefix: env.QUEUE_PREFIX ?? DEFAULTS.queuePrefix,
  });
  try {
    return await dlqSubcommand(dlq, redisUrl, positionals[0], values, io);
  } catch (error) {
    const failure = redisFailure(error);
    if (failure !== undefined) throw new CommandError(`Redis at ${redisAddress(redisUrl)} failed a command: ${failure}`);
    throw error;
  } finally {
    await dlq.close();
  }
}

/** `audit dlq list|replay` on a DLQ the caller closes; Redis errors are the caller's to turn into one line. */
async function dlqSubcommand(
  dlq: AuditDlq,
  redisUrl: string,
  subcommand: string | undefined,
  values: { readonly id?: string[]; readonly limit?: string; readonly json?: boolean },
  io: AuditCliIo,
): Promise<number> {
  if (!(await dlq.ready(REDIS_READY_TIMEOUT_MS))) throw new CommandError(`Redis is not reachable at ${redisAddress(redisUrl)}`);
  switch (subcommand) {
    case 'list': {
      const limit = values.limit ? Number(values.limit) : 1_000;
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
      if (values.json) {
        for await (const entry of dlq.entries(limit)) io.out(JSON.stringify(entry));
      } else {
        const total = await dlq.count();
        io.out(`${total} dead-lettered audit job(s)${total > limit ? `, the first ${limit} below` : ''}`);
        for await (const entry of dlq.entries(limit)) {
          // A batch's events (v1) or rows (v2, dead-lettered as received when the batch itself was refused).
          const payload = entry.payload as { events?: unknown; rows?: unknown } | null;
          const events = payload?.events ?? payload?.rows;
          const count = Array.isArray(events) ? `\tevents=${events.length}` : '';
          io.out(`${entry.dlqJobId}\t${entry.failedAt}\tattempts=${entry.attempts}${count}\t${entry.error}`);
        }
      }
      return 0;
    }
    case 'replay': {
      const { replayed, skipped } = await dlq.replay(values.id);
      io.out(`replayed ${replayed.length} job(s)${replayed.length ? `: ${replayed.join(', ')}` : ''}`);
      for (const s of skipped) io.err(`skipped ${s.id}: ${s.reason}`);
      return skipped.length > 0 || (values.id !== undefined && replayed.length === 0) ? 1 : 0;
    }
    default:
      throw new UsageError('dlq needs list or replay');
  }
}

async function verifyCommand(args: string[], env: AuditCliEnv, io: AuditCliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      tenant: { type: 'string' },
      export: { type: 'string' },
      manifest: { type: 'string' },
      'public-key': { type: 'string' },
      anchors: { type: 'string' },
    },
  });
  if (values.anchors !== undefined && (values['public-key'] === undefined || values.tenant === undefined)) {
    throw new UsageError('--anchors goes with --tenant and --public-key');
  }
  const keys = values['public-key'] === undefined ? undefined : await readKeys(values['public-key']);
  if (values.export !== undefined || values.manifest !== undefined) {
    if (!values.export || !values.manifest) throw new UsageError('--export and --manifest go together');
    const { verifyExportFile } = await import('./audit-export');
    const report = await verifyExportFile(values.export, values.manifest, keys ? { keys } : {});
    if (report.ok) {
      io.out(
        `OK export ${values.export}: ${report.rows} row(s), sha256 ${report.sha256}, chain ${report.chain}`,
      );
      io.out(`NOTE ${report.anchor}`);
      return 0;
    }
    io.out(`BROKEN export ${values.export}: ${report.problem}`);
    return 1;
  }
  if (!values.tenant) throw new UsageError('verify needs --tenant SLUG (or --export FILE --manifest FILE)');
  const slug = values.tenant;
  return withSystemDb(env, async (db) => {
    const tenant = await db.tenant.findUnique({ where: { slug }, select: { id: true } });
    if (!tenant) {
      io.err(`no tenant with slug ${slug}`);
      return 1;
    }
    const report = await verifyTenantChain(db, tenant.id, keys ? { keys } : {});
    if (report.ok) {
      const from = report.fromSeq === '0' ? '' : ` (from retention checkpoint seq ${report.fromSeq})`;
      io.out(
        `OK ${slug}: ${report.checked} event(s)${from}, last seq ${report.lastSeq}, last hash ${report.lastHash ?? '-'}`,
      );
      if (report.anchors) {
        const last = report.anchors.last;
        io.out(
          last
            ? `ANCHORED ${slug}: ${report.anchors.checked} signed anchor(s) match; proven through seq ${last.seq} (signed ${last.signedAt}, key ${last.keyId})${last.seq === report.lastSeq ? '' : `; seq ${BigInt(last.seq) + 1n}..${report.lastSeq} not signed yet`}`
            : `UNANCHORED ${slug}: no signed anchor; the chain is consistent, not proven`,
        );
        // Asked for proof, and events that no anchor covers at all: not proven (anchors removed, or none signed yet).
        if (!last && report.checked > 0) return 1;
      }
      if (values.anchors !== undefined && keys) return checkArchive(db, tenant.id, slug, values.anchors, keys, io);
      return 0;
    }
    const { id, seq, problem } = report.brokenAt;
    io.out(
      `BROKEN ${slug}: first broken link at seq ${seq} (id ${id ?? '-'}): ${problem}; ${report.checked} event(s) verified before it`,
    );
    return 1;
  });
}

/** Writes a new Ed25519 key pair; never overwrites a file (a lost signing key cannot be made again). */
async function keygenCommand(args: string[], io: AuditCliIo): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: 'string' } } });
  if (!values.out) throw new UsageError('keygen needs --out PREFIX');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyFile = `${values.out}.key`;
  const pubFile = `${values.out}.pub`;
  const refused = (error: unknown) => {
    const e = error as NodeJS.ErrnoException;
    io.err(`not written: ${e.code === 'EEXIST' ? `${e.path ?? 'a file'} exists` : e.message}`);
    return 1;
  };
  // The public half first: a pair is written whole or not at all (a private key whose public half is someone else's
  // file would be a key nobody can verify with).
  try {
    await writeFile(pubFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
  } catch (error) {
    return refused(error);
  }
  try {
    await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    await rm(pubFile, { force: true });
    return refused(error);
  }
  io.out(`wrote ${keyFile} (AUDIT_SIGNING_KEY_FILE, keep it from the database's administrators) and ${pubFile} (for audit:verify --public-key); key id ${auditKeyId(publicKey)}`);
  return 0;
}

/** `--anchors FILE`: the archived anchors of the tenant, each against the live chain. */
async function checkArchive(
  db: SystemPrismaClient,
  tenantId: string,
  slug: string,
  file: string,
  keys: ReadonlyMap<string, KeyObject>,
  io: AuditCliIo,
): Promise<number> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--anchors ${file}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const anchors = parseArchivedAnchors(text).filter((anchor) => anchor.tenantId === tenantId);
  if (anchors.length === 0) {
    io.out(`ARCHIVE ${slug}: ${file} holds no anchor of this tenant`);
    return 1;
  }
  const result = await checkArchivedAnchors(db, tenantId, anchors, keys);
  if (result.broken) {
    io.out(`BROKEN ${slug}: archived anchor at seq ${result.broken.seq}: ${result.broken.problem}; ${result.matched} archived anchor(s) matched before it`);
    return 1;
  }
  const pruned = result.pruned > 0 ? ` (${result.pruned} more name events retention has deleted)` : '';
  io.out(`ARCHIVE ${slug}: ${result.matched} archived anchor(s) match the live chain${pruned}`);
  return 0;
}

/** `npm run audit:<command> -- ...`. Returns the process exit code. */
export async function runAuditCli(
  argv: readonly string[],
  env: AuditCliEnv,
  io: AuditCliIo,
): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'dlq':
        return await dlqCommand(rest, env, io);
      case 'verify':
        return await verifyCommand(rest, env, io);
      case 'keygen':
        return await keygenCommand(rest, io);
      default:
        throw new UsageError(command ? `unknown command ${command}` : 'no command');
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`${(error as Error).message}\n\n${AUDIT_CLI_USAGE}`);
      return 2;
    }
    // One line naming what failed, for the operator: no stack trace, no URL (Prisma's own sentence names host:port).
    if (error instanceof CommandError) {
      io.err(`audit ${command}: ${error.message}`);
      return COULD_NOT_RUN;
    }
    const database = databaseErrorSummary(error);
    if (database !== undefined) {
      io.err(`audit ${command}: database error: ${database}`);
      return COULD_NOT_RUN;
    }
    throw error;
  }
}
