import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { afterEach, describe, expect, it } from 'vitest';
import { FileAuditSpool } from './audit-spool';

const ACTIVE = 'audit-spool.jsonl';
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const tempDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pcs-spool-'));
  dirs.push(dir);
  return dir;
};

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
  tool: 'tickets__create_ticket',
  targetType: null,
  targetId: null,
  decision: 'allow',
  reason: null,
  snapshotVersion: 1,
  approvalId: null,
  latencyMs: 3,
  outcome: 'ok',
  errorCode: null,
  arguments: { n },
  traceId: null,
  traceparent: null,
});

async function replayAll(spool: FileAuditSpool): Promise<{ events: AuditEventV1[]; corrupt: number }> {
  const events: AuditEventV1[] = [];
  const { corrupt } = await spool.replay(async (batch) => void events.push(...batch), 100);
  return { events, corrupt };
}

describe('FileAuditSpool', () => {
  it('ends a line cut off by a crash before appending, so the next event is not lost with it', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, ACTIVE), `${JSON.stringify(event(1))}\n{"v":1,"eventId":"019a0000-00`);
    const spool = new FileAuditSpool(dir, 1_000_000);
    expect(spool.append([event(2)])).toEqual({ written: 1, refused: 0 });
    const { events, corrupt } = await replayAll(spool);
    expect(events.map((e) => e.arguments)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(corrupt).toBe(1);
    await spool.close();
  });

  it('refuses events it cannot write (disk full) instead of throwing', async () => {
    const dir = tempDir();
    // Every write to /dev/full fails with ENOSPC.
    symlinkSync('/dev/full', path.join(dir, ACTIVE));
    const spool = new FileAuditSpool(dir, 1_000_000);
    expect(() => spool.append([event(1), event(2)])).not.toThrow();
    expect(spool.append([event(3)])).toEqual({ written: 0, refused: 1 });
    expect(spool.hasPending()).toBe(false);
    await spool.close();
  });
});
