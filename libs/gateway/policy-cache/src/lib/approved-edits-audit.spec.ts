import { tenantSettings } from '@portcullis/contracts/api';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { auditHooks, type AuditEmitter, type AuditEmitterStats, type EmitResult } from '@portcullis/gateway/audit-emitter';
import { composeHooks, GatewayRequestError, NO_STREAM, type ApprovalGate, type RequestInfo } from '@portcullis/gateway/core';
import type { SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { compile } from '@portcullis/policy/engine';
import { createLogger } from '@portcullis/shared/util-logger';
import { describe, expect, it } from 'vitest';
import { policyHooks } from './policy-hooks';

// A call approved with edited arguments that the policy's check after the wait denies is refused (-32030) and audited
// as a denial of what was refused: the approver's edits. Before, the event recorded the agent's arguments, which
// nothing had refused (the hold's admission was lost with the refusal).
const TENANT = '019a0000-0000-7000-8000-0000000000aa';
const AGENT = '019a0000-0000-7000-8000-0000000000bb';
const APPROVAL = '019a0000-0000-7000-8000-0000000000dd';

class RecordingEmitter implements AuditEmitter {
  readonly events: AuditEventV1[] = [];
  emit(event: AuditEventV1): EmitResult {
    this.events.push(event);
    return 'buffered';
  }
  canAcceptFailClosed(): boolean {
    return true;
  }
  reserve(): void {
    // Nothing is reserved: the spec's events are kept in memory.
  }
  release(): void {
    // As reserve.
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  stats(): AuditEmitterStats {
    return { redis: 'up', buffered: 0, spoolBytes: 0, sent: 0, jobs: 0, spooled: 0, replayed: 0, dropped: 0 };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const rules: PolicyRuleSource[] = [
  { id: 'refunds-need-a-human', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'tickets', name: 'refund' }], effect: 'require_approval' },
  { id: 'no-huge-refunds', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'tickets', name: 'refund' }], effect: 'deny', condition: 'args.amount > 1000.0' },
];

describe('audit of an approved call whose edited arguments the policy denies at release', () => {
  it('records the edited arguments that were refused, not the agent\'s', async () => {
    const compiled = compile({ tenantId: TENANT, version: 3, defaultEffect: 'deny', directory: { members: [], groups: [], agentClients: [{ id: AGENT }] }, upstreams: [], rules });
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    const snapshot = compiled.snapshot;
    const gate: ApprovalGate = { hold: async () => ({ approvalId: APPROVAL, arguments: { amount: 5_000 } }) };
    const policy = policyHooks({ get: (id) => (id === TENANT ? snapshot : undefined) }, gate);
    const emitter = new RecordingEmitter();
    const audit = auditHooks({ emitter, settings: () => tenantSettings.parse({}), separator: '__', spoolDurable: true, logger: createLogger({ service: 'spec', level: 'silent' }) });
    // As apps/gateway/src/data-plane.ts composes them: policy, ..., audit, the hold, the checks after it.
    const hooks = composeHooks([policy, audit, policy.hold]);
    const info: RequestInfo = {
      record: { id: 'session-1', tenantId: TENANT, principalKind: 'agent_client', principalId: AGENT, protocolVersion: '2025-11-25', clientInfo: null, clientCapabilities: {}, upstreams: {}, createdAt: 0 } as SessionRecord,
      method: 'tools/call',
      requestId: 1,
      traceId: 'trace',
      startedAt: Date.now(),
      target: { upstream: { id: '019a0000-0000-7000-8000-0000000000cc', tenantId: TENANT, name: 'tickets', toolPrefix: 'tickets' } as UpstreamConfig, kind: 'tool', name: 'refund' },
      arguments: { amount: 500 },
    };
    const error = (await Promise.resolve(hooks.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).catch((e: unknown) => e)) as GatewayRequestError;
    expect(error).toBeInstanceOf(GatewayRequestError);
    expect(error.message).toMatch(/edited arguments, which the policy denies/);
    // What the engine reports for a refused request.
    hooks.completed?.(info, { outcome: 'denied', error: { code: error.rpcCode, message: error.message, data: error.data }, latencyMs: 1 });
    audit.drain();
    const event = emitter.events[0];
    expect(event).toMatchObject({ outcome: 'denied', errorCode: '-32030', approvalId: APPROVAL });
    // The refused call was { amount: 5000 } (the approver's edit); the agent's { amount: 500 } was never denied.
    expect(event?.arguments).toMatchObject({ arguments: { amount: 5_000 } });
  });
});
