import { createHash } from 'node:crypto';
import { openJson, SecretBoxError, upstreamSecretContext, type Keyring } from '@portcullis/auth/secrets';
import { argsWithEnv, tenantSettings, type TenantSettings } from '@portcullis/contracts/api';
import type { SystemPrismaClient } from '@portcullis/data/db';
import type { ApiKeyEntry, TenantEntry } from '@portcullis/gateway/core';
import type { SnapshotSource } from '@portcullis/gateway/policy-cache';
import type { UpstreamConfig } from '@portcullis/gateway/mcp';
import type { PinRow } from '@portcullis/gateway/tool-pinning';
import type { Logger } from '@portcullis/shared/util-logger';

/**
 * The gateway's snapshot loaders: cross-tenant reads with the explicitly named system client (ADR 0003),
 * run at boot and on refresh, never per request.
 */

/**
 * Bound on each query of the snapshot loads (and on getting a connection for one). Refreshes share one load, so a load
 * stuck on a lock or a silent server would keep every later refresh waiting: it fails instead, the last snapshot stays.
 */
export const SNAPSHOT_QUERY_TIMEOUT_MS = 15_000;

export async function loadTenants(db: SystemPrismaClient): Promise<TenantEntry[]> {
  const rows = await db.tenant.findMany({ select: { id: true, slug: true, status: true } });
  return rows.map((row) => ({ id: row.id, slug: row.slug, active: row.status === 'active' }));
}

/**
 * Every tenant's settings (rate-limit and audit choices), parsed with the shared contract. Stored settings that do not
 * parse (hand-edited JSON) are logged without the settings themselves, and do not reset what they would set to the
 * defaults, which fail open (audit and rate limits): the tenant keeps its last valid settings (`previous`), or, with
 * none, each section that parses on its own (the defaults only for the others).
 */
export async function loadTenantSettings(db: SystemPrismaClient, logger: Logger, previous: ReadonlyMap<string, TenantSettings> = new Map()): Promise<Map<string, TenantSettings>> {
  const rows = await db.tenant.findMany({ select: { id: true, settings: true } });
  const out = new Map<string, TenantSettings>();
  for (const row of rows) {
    const parsed = tenantSettings.safeParse(row.settings ?? {});
    if (parsed.success) {
      out.set(row.id, parsed.data);
      continue;
    }
    const kept = previous.get(row.id);
    const issues = parsed.error.issues.map((issue) => issue.path.join('.'));
    if (kept !== undefined) {
      logger.error({ tenantId: row.id, issues }, 'tenant settings invalid; the last valid ones stay in force');
      out.set(row.id, kept);
    } else {
      logger.error({ tenantId: row.id, issues }, 'tenant settings invalid; the sections that are valid apply, defaults for the others');
      out.set(row.id, sectionwise(row.settings));
    }
  }
  return out;
}

/** Each section of stored settings that parses on its own, and the defaults for those that do not. */
function sectionwise(stored: unknown): TenantSettings {
  const input = typeof stored === 'object' && stored !== null && !Array.isArray(stored) ? (stored as Record<string, unknown>) : {};
  const defaults = tenantSettings.parse({});
  const audit = tenantSettings.safeParse({ audit: input['audit'] });
  const rateLimits = tenantSettings.safeParse({ rateLimits: input['rateLimits'] });
  return { audit: audit.success ? audit.data.audit : defaults.audit, rateLimits: rateLimits.success ? rateLimits.data.rateLimits : defaults.rateLimits };
}

/**
 * The keys that can still be accepted: revoked and expired ones stay out of every replica's memory (a key the index
 * lacks is refused just as a revoked one is). A key that expires later is loaded, and refused once its expiry passes.
 */
export async function loadApiKeys(db: SystemPrismaClient): Promise<[string, ApiKeyEntry][]> {
  const rows = await db.apiKey.findMany({
    where: { revokedAt: null, OR: [{ expiresAt: null }, { expiresAt: { gt: new Date() } }] },
    select: {
      id: true,
      tenantId: true,
      keyHash: true,
      agentClientId: true,
      userId: true,
      expiresAt: true,
      revokedAt: true,
      agentClient: { select: { disabled: true } },
    },
  });
  return rows.map((row) => [
    row.keyHash,
    {
      apiKeyId: row.id,
      tenantId: row.tenantId,
      agentClientId: row.agentClientId,
      userId: row.userId,
      expiresAt: row.expiresAt?.getTime() ?? null,
      revoked: row.revokedAt !== null || row.agentClient?.disabled === true,
    },
  ]);
}

/**
 * Enabled upstreams with their sealed headers/env opened. An upstream whose secrets cannot be opened
 * (no keyring configured, unknown key id, tampered ciphertext), or a stdio upstream whose command is not in
 * `stdioCommands` (GATEWAY_STDIO_COMMAND_ALLOWLIST, when set), is skipped with a logged reason; the reason never
 * includes the secret, the upstream's address or its command.
 */
export async function loadUpstreams(
  db: SystemPrismaClient,
  keyring: Keyring | null,
  logger: Logger,
  options: { readonly stdioCommands?: ReadonlySet<string> | null } = {},
): Promise<UpstreamConfig[]> {
  const rows = await db.upstream.findMany({
    where: { enabled: true, tenant: { status: 'active' } },
    select: {
      id: true,
      tenantId: true,
      name: true,
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
      version: true,
    },
  });
  const configs: UpstreamConfig[] = [];
  for (const row of rows) {
    const sealed = (field: 'headers' | 'env', ciphertext: Uint8Array | null): Record<string, string> => {
      if (ciphertext === null) return {};
      if (keyring === null) throw new Error('it has sealed secrets and no GATEWAY_SECRETS_KEYRING is configured');
      if (row.encryptionKeyId === null) throw new Error('its sealed secrets name no key id');
      const value = openJson<unknown>(
        keyring,
        { keyId: row.encryptionKeyId, ciphertext: Buffer.from(ciphertext) },
        upstreamSecretContext(row.tenantId, row.id, field),
      );
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`its sealed ${field} are not an object`);
      const out: Record<string, string> = {};
      for (const [key, item] of Object.entries(value)) if (typeof item === 'string') out[key] = item;
      return out;
    };
    try {
      if (row.transport === 'stdio' && options.stdioCommands && !options.stdioCommands.has(row.command ?? '')) {
        throw new Error('its command is not in GATEWAY_STDIO_COMMAND_ALLOWLIST');
      }
      const env = sealed('env', row.envCiphertext);
      configs.push({
        id: row.id,
        tenantId: row.tenantId,
        name: row.name,
        toolPrefix: row.toolPrefix,
        transport: row.transport,
        url: row.url,
        headers: sealed('headers', row.headersCiphertext),
        command: row.command,
        // `${NAME}` references to the env resolved here, once: the process is spawned with, and the masks built from,
        // the arguments it is given.
        args: argsWithEnv(row.args, env),
        env,
        connectTimeoutMs: row.connectTimeoutMs,
        callTimeoutMs: row.callTimeoutMs,
        version: row.version,
        ...sealedDigestOf(row.headersCiphertext, row.envCiphertext),
      });
    } catch (error) {
      // Our own messages and SecretBoxError's name no secret; anything else (a JSON parse error could quote
      // decrypted text) is reduced to its name.
      const reason =
        error instanceof SecretBoxError || (error instanceof Error && error.name === 'Error') ? error.message : error instanceof Error ? error.name : 'unknown';
      logger.warn({ upstream: row.name, upstreamId: row.id, tenantId: row.tenantId, reason }, 'upstream skipped');
    }
  }
  return configs;
}

/**
 * A digest of an upstream's sealed headers and environment (`UpstreamConfig.sealedDigest`): of the ciphertext, which
 * is sealed afresh (a new nonce) on every change of them, so it reveals nothing of the credentials and is safe to keep
 * in session records.
 */
export function sealedDigestOf(headers: Uint8Array | null, env: Uint8Array | null): { sealedDigest?: string } {
  if (headers === null && env === null) return {};
  const hash = createHash('sha256');
  for (const part of [headers, env]) {
    const bytes = part ?? new Uint8Array();
    hash.update(String(bytes.length)).update(':').update(bytes);
  }
  return { sealedDigest: hash.digest('base64url').slice(0, 22) };
}

/**
 * The tenants' active policy snapshots: the cheap (tenantId, version, checksum) listing that reconciliation runs
 * every few seconds, and the full rows (with the compiled IR) for the tenants that changed.
 */
export function policySnapshotSource(db: SystemPrismaClient): SnapshotSource {
  return {
    listActive: () => db.policySnapshot.findMany({ where: { active: true }, select: { tenantId: true, version: true, checksum: true } }),
    loadActive: (tenantIds) =>
      db.policySnapshot.findMany({
        where: { active: true, ...(tenantIds === 'all' ? {} : { tenantId: { in: [...tenantIds] } }) },
        select: { tenantId: true, version: true, checksum: true, ir: true },
      }),
  };
}

/**
 * Tool pins (docs/adr/0013-tool-pinning.md): the stored and approved definition hash of every tool and prompt the
 * upstreams advertise, and of their instructions, and which upstreams require approval for definitions never seen
 * before.
 */
export async function loadToolPins(db: SystemPrismaClient): Promise<{ rows: PinRow[]; requireApproval: string[]; known: string[] }> {
  const [rows, strict, enabled] = await Promise.all([
    db.upstreamTool.findMany({
      // Removed rows too: a tool missing at the last test connection that comes back changed must stay hidden.
      where: { kind: { in: ['tool', 'prompt', 'instructions'] }, upstream: { enabled: true } },
      select: { upstreamId: true, kind: true, name: true, contentHash: true, approvedHash: true, status: true },
    }),
    db.upstream.findMany({ where: { enabled: true, toolApproval: 'require_approval' }, select: { id: true } }),
    db.upstream.findMany({ where: { enabled: true }, select: { id: true } }),
  ]);
  return {
    rows: rows.map((row) => ({
      upstreamId: row.upstreamId,
      kind: row.kind,
      name: row.name,
      contentHash: row.contentHash,
      approvedHash: row.approvedHash,
      blocked: row.status === 'blocked',
    })),
    requireApproval: strict.map((row) => row.id),
    known: enabled.map((row) => row.id),
  };
}
