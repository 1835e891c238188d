/**
 * ops review: GATEWAY_AUDIT_SPOOL_DIR. The spool holds every tenant's audit events (tool-call arguments and results)
 * while Redis is away, but FileAuditSpool creates its directory and files with the process umask only (0755 / 0644
 * under the usual 022): any local user can read them, the stdio upstream servers that GATEWAY_STDIO_RUN_AS /
 * GATEWAY_STDIO_UID_RANGE run as other users precisely so they cannot read the gateway's data included. The audit
 * worker's export files, the same data, are written 0640 (libs/audit/core audit-export.ts).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { afterEach, describe, expect, it } from 'vitest';
import { FileAuditSpool } from './audit-spool';

const event = (n: number): AuditEventV1 => ({
  v: 1,
  eventId: `019a0000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`,
  tenantId: '019a0000-0000-7000-8000-0000000000aa',
  occurredAt: '2026-11-22T08:00:00.000Z',
  kind: 'mcp',
  method: 'tools/call',
  actorUserId: null,
  agentClientId: null,
  apiKeyId: null,
  mcpSessionId: null,
  upstreamId: null,
  tool: 'crm__update_customer',
  targetType: null,
  targetId: null,
  decision: 'allow',
  reason: null,
  snapshotVersion: 1,
  approvalId: null,
  latencyMs: 3,
  outcome: 'ok',
  errorCode: null,
  arguments: { customer: 'ACME', iban: 'DE89370400440532013000' },
  traceId: null,
  traceparent: null,
});

describe('FileAuditSpool (GATEWAY_AUDIT_SPOOL_DIR): who may read the spooled events', () => {
  const cleanup: string[] = [];
  const previousUmask = process.umask(0o022);
  afterEach(() => {
    for (const dir of cleanup.splice(0)) rmSync(dir, { recursive: true, force: true });
    process.umask(previousUmask);
  });

  it('keeps the spool directory and its files from other users, whatever the umask', async () => {
    process.umask(0o022);
    const parent = mkdtempSync(path.join(tmpdir(), 'pcs-spool-mode-'));
    cleanup.push(parent);
    const dir = path.join(parent, 'spool');
    const spool = new FileAuditSpool(dir, 1_000_000);
    expect(spool.append([event(1), event(2)]).written).toBe(2);
    const modes = {
      dir: (statSync(dir).mode & 0o777).toString(8),
      file: (statSync(path.join(dir, 'audit-spool.jsonl')).mode & 0o777).toString(8),
    };
    await spool.close();
    // No access at all for "other" (o=---), as the audit exports (0640).
    expect({ dirOther: Number.parseInt(modes.dir, 8) & 0o007, fileOther: Number.parseInt(modes.file, 8) & 0o007 }, JSON.stringify(modes)).toEqual({ dirOther: 0, fileOther: 0 });
  });
});
