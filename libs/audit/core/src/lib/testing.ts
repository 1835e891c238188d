import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { newId } from '@portcullis/shared/util-ids';

/** A valid audit event for tests and benchmarks; fields overridable. */
export function sampleAuditEvent(tenantId: string, overrides: Partial<AuditEventV1> = {}): AuditEventV1 {
  return {
    v: 1,
    eventId: newId(),
    tenantId,
    occurredAt: new Date().toISOString(),
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
    reason: 'rule r1 allows',
    snapshotVersion: 1,
    approvalId: null,
    latencyMs: 12,
    outcome: 'ok',
    errorCode: null,
    arguments: { title: 'printer on fire', priority: 2 },
    traceId: null,
    traceparent: null,
    ...overrides,
  };
}
