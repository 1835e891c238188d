import { describe, expect, it } from 'vitest';
import { assertHandlersCover, isJobName, jobIdFor, parseJobPayload, QUEUES, type JobPayload } from './jobs';

const event: JobPayload<'audit.event.ingest'> = {
  v: 1,
  eventId: '019a0000-0000-7000-8000-000000000001',
  tenantId: '019a0000-0000-7000-8000-0000000000aa',
  occurredAt: '2026-11-22T08:00:00.000Z',
  kind: 'mcp',
  method: 'tools/call',
  actorUserId: null,
  agentClientId: null,
  apiKeyId: null,
  mcpSessionId: 'session-1',
  upstreamId: null,
  tool: 'tickets__create_ticket',
  targetType: null,
  targetId: null,
  decision: 'allow',
  reason: null,
  snapshotVersion: 3,
  approvalId: null,
  latencyMs: 4,
  outcome: 'ok',
  errorCode: null,
  arguments: { title: 'x' },
  traceId: null,
  traceparent: null,
};

describe('job contracts', () => {
  it('accepts a well-formed audit event and derives its job id from the event id', () => {
    expect(parseJobPayload('audit.event.ingest', event)).toEqual(event);
    expect(jobIdFor('audit.event.ingest', event)).toBe(`audit-${event.eventId}`);
  });

  it('rejects payloads of another version or shape', () => {
    expect(() => parseJobPayload('audit.event.ingest', { ...event, v: 2 })).toThrow();
    expect(() => parseJobPayload('audit.event.ingest', { ...event, tenantId: 'acme' })).toThrow();
    expect(() => parseJobPayload('audit.event.ingest', { ...event, decision: 'maybe' })).toThrow();
  });

  it('knows its job names', () => {
    expect(isJobName('audit.event.ingest')).toBe(true);
    expect(isJobName('audit.event.delete')).toBe(false);
  });

  it('refuses a handler set that misses a job of the queue', () => {
    expect(() => assertHandlersCover(QUEUES.audit, {})).toThrow('no handler for job(s) audit.event.ingest');
    expect(() => assertHandlersCover(QUEUES.audit, { 'audit.event.ingest': async () => undefined })).not.toThrow();
  });
});
