/**
 * Review (audit-2): credential-looking strings are redacted "anywhere" (docs/audit.md §1) — in values only. A token
 * that is an object key (a map keyed by API key or token, in the arguments or in a `full` result) reaches the stored
 * event as it came: `redactSecrets` makes keys storable but never runs the credential patterns over them.
 */
import { tenantSettings, type TenantSettingsInput } from '@portcullis/contracts/api';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import type { RequestInfo, RequestOutcome } from '@portcullis/gateway/core';
import type { SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { describe, expect, it } from 'vitest';
import type { AuditEmitter, EmitResult } from './audit-emitter';
import { auditHooks } from './audit-hooks';

const TENANT = '019a0000-0000-7000-8000-0000000000aa';
const record = {
  id: 'session-1',
  tenantId: TENANT,
  principalKind: 'agent_client',
  principalId: '019a0000-0000-7000-8000-0000000000bb',
  protocolVersion: '2025-11-25',
  clientInfo: { name: 'agent', version: '1' },
  clientCapabilities: {},
  upstreams: {},
  createdAt: 0,
} as SessionRecord;
const upstream = { id: '019a0000-0000-7000-8000-0000000000cc', name: 'ks', toolPrefix: 'ks' } as UpstreamConfig;

function eventFor(settings: TenantSettingsInput, args: Record<string, unknown>, result: Record<string, unknown>): AuditEventV1 {
  const events: AuditEventV1[] = [];
  const emitter = {
    emit: (event: AuditEventV1): EmitResult => (events.push(event), 'buffered'),
    canAcceptFailClosed: () => true,
    reserve: () => undefined,
    release: () => undefined,
    flush: async () => undefined,
    stats: () => ({ redis: 'up', buffered: 0, spoolBytes: 0, sent: 0, jobs: 0, spooled: 0, replayed: 0, dropped: 0 }),
    close: async () => undefined,
  } satisfies AuditEmitter;
  const parsed = tenantSettings.parse(settings);
  const hooks = auditHooks({ emitter, settings: () => parsed, separator: '__', spoolDurable: true, logger: createLogger({ service: 'spec', level: 'silent' }) });
  const info = { record, method: 'tools/call', requestId: 1, traceId: 't', startedAt: 0, target: { upstream, kind: 'tool', name: 'rotate' }, arguments: args } as RequestInfo;
  const outcome = { outcome: 'ok', admission: { decision: 'allow', reason: 'rule r1 allows', ruleIds: ['r1'], snapshotVersion: 1 }, result, latencyMs: 3 } as RequestOutcome;
  hooks.completed?.(info, outcome);
  hooks.drain();
  expect(events).toHaveLength(1);
  return events[0] as AuditEventV1;
}

const GITHUB_TOKEN = `ghp_${'A1b2C3d4E5'.repeat(4)}`;
const PORTCULLIS_KEY = 'pcs_live_9f8e7d6c5b4a39281706';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLWJ5dGVz';

describe('audit-2: credentials used as object keys', () => {
  it('are redacted in the arguments, as they are in values', () => {
    const event = eventFor({}, { labels: { [GITHUB_TOKEN]: 'ci', [PORTCULLIS_KEY]: 'prod' } }, { content: [] });
    const stored = JSON.stringify(event);
    expect(stored).not.toContain(GITHUB_TOKEN);
    expect(stored).not.toContain(PORTCULLIS_KEY);
  });

  it('are redacted in a full result', () => {
    const event = eventFor({ audit: { results: 'full' } }, { q: 'sessions' }, { structuredContent: { sessions: { [JWT]: { user: 'ada' } } } });
    expect(JSON.stringify(event)).not.toContain(JWT);
  });
});
