import { tenantSettings } from '@portcullis/contracts/api';
import type { Admission, RequestInfo } from '@portcullis/gateway/core';
import type { SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { describe, expect, it } from 'vitest';
import { targetKey, type RateLimitSubject } from './keys';
import { rateLimitHooks, TENANT_LIMIT_RULE } from './rate-limit-hooks';
import type { AppliedLimit, RateLimitService } from './rate-limiter';

/** Records what the hooks ask the limiter; always allows (the limiter has its own tests against Redis). */
function recordingLimiter() {
  const asked: { subject: RateLimitSubject; limits: readonly AppliedLimit[]; heldForMs?: number }[] = [];
  const limiter = {
    check(subject: RateLimitSubject, limits: readonly AppliedLimit[], _failMode: unknown, heldForMs?: number) {
      asked.push({ subject, limits, ...(heldForMs === undefined ? {} : { heldForMs }) });
      return { allowed: true as const, degraded: false, holdsSlots: false, release: () => undefined };
    },
  } as unknown as RateLimitService;
  return { limiter, asked };
}

const record = (id: string, principalKind: 'agent_client' | 'user', principalId: string): SessionRecord => ({
  id,
  tenantId: 't1',
  principalKind,
  principalId,
  protocolVersion: '2025-11-25',
  clientInfo: { name: 'spec', version: '1' },
  clientCapabilities: {},
  upstreams: {},
  createdAt: 0,
});
const upstream = (id: string) => ({ id, name: id, toolPrefix: id }) as UpstreamConfig;
const tickets = upstream('up-tickets');
const db = upstream('up-db');

const ruleLimits: NonNullable<Admission['rateLimits']> = Object.freeze([
  { ruleId: 'r1', rateLimit: { scope: ['agent_client', 'tool'], requests: 10, windowSeconds: 60, maxConcurrent: null } },
]);
const prior: Admission = { decision: 'allow', rateLimits: ruleLimits };

function info(session: SessionRecord, target?: { upstream: UpstreamConfig; kind: 'tool' | 'prompt' | 'resource'; name: string }): RequestInfo {
  return { record: session, method: target ? 'tools/call' : 'tools/list', requestId: 1, traceId: 'trace', startedAt: 0, ...(target ? { target } : {}) };
}

describe('rateLimitHooks: how long a concurrency slot is held for', () => {
  it("a call's for its upstream's call timeout, a task read's for its tool's, and a tasks/result's for the hour it may wait", () => {
    const { limiter, asked } = recordingLimiter();
    const hooks = rateLimitHooks({ limiter, settings: () => undefined, logger: createLogger({ service: 'spec', level: 'silent' }) });
    const slow = { ...tickets, callTimeoutMs: 120_000 } as UpstreamConfig;
    const session = record('s9', 'agent_client', 'ac-ci');
    const sink = { canStream: false, send: () => false };
    const ask = (method: string, about: 'target' | 'taskOf') =>
      hooks.admit?.({ record: session, method, requestId: 1, traceId: 't', startedAt: 0, [about]: { upstream: slow, kind: 'tool', name: 'render' } } as RequestInfo, sink, new AbortController().signal as never, prior);
    ask('tools/call', 'target');
    ask('tasks/get', 'taskOf');
    ask('tasks/result', 'taskOf');
    expect(asked.map((entry) => entry.heldForMs)).toEqual([120_000, 120_000, 3_600_000]);
  });
});

describe('rateLimitHooks: what a call is counted as', () => {
  const settings = tenantSettings.parse({ rateLimits: { tenant: { requests: 100, windowSeconds: 1 } } });

  it('hands the limiter the same subject and limits objects for the same session, target and decision', () => {
    const { limiter, asked } = recordingLimiter();
    const hooks = rateLimitHooks({ limiter, settings: () => undefined, logger: createLogger({ service: 'spec', level: 'silent' }) });
    const ci = record('s1', 'agent_client', 'ac-ci');
    for (let i = 0; i < 2; i++) hooks.admit?.(info(ci, { upstream: tickets, kind: 'tool', name: 'create' }), { canStream: false, send: () => false }, new AbortController().signal as never, prior);
    expect(asked).toHaveLength(2);
    expect(asked[1]?.subject).toBe(asked[0]?.subject);
    expect(asked[1]?.limits).toBe(asked[0]?.limits);
    expect(asked[0]?.subject).toEqual({ tenantId: 't1', userId: null, agentClientId: 'ac-ci', tool: 'up-tickets/tool/create' });
    expect(asked[0]?.limits).toEqual([{ ruleId: 'r1', rateLimit: { scope: ['agent_client', 'tool'], requests: 10, windowSeconds: 60 } }]);
    expect(Object.isFrozen(asked[0]?.subject) && Object.isFrozen(asked[0]?.limits)).toBe(true);
  });

  it('keeps sessions, principals, upstreams, kinds and names apart, remembered or not', () => {
    const { limiter, asked } = recordingLimiter();
    const hooks = rateLimitHooks({ limiter, settings: () => settings, logger: createLogger({ service: 'spec', level: 'silent' }) });
    const ci = record('s1', 'agent_client', 'ac-ci');
    const carol = record('s2', 'user', 'u-carol');
    const admit = (session: SessionRecord, target?: Parameters<typeof info>[1]) =>
      hooks.admit?.(info(session, target), { canStream: false, send: () => false }, new AbortController().signal as never, prior);
    admit(ci, { upstream: tickets, kind: 'tool', name: 'create' });
    admit(ci, { upstream: db, kind: 'tool', name: 'create' });
    admit(ci, { upstream: tickets, kind: 'prompt', name: 'create' });
    admit(ci, { upstream: tickets, kind: 'tool', name: 'delete' });
    admit(carol, { upstream: tickets, kind: 'tool', name: 'create' });
    admit(ci);
    admit(ci);
    expect(asked.map(({ subject }) => [subject.userId, subject.agentClientId, subject.tool])).toEqual([
      [null, 'ac-ci', 'up-tickets/tool/create'],
      [null, 'ac-ci', 'up-db/tool/create'],
      [null, 'ac-ci', 'up-tickets/prompt/create'],
      [null, 'ac-ci', 'up-tickets/tool/delete'],
      ['u-carol', null, 'up-tickets/tool/create'],
      [null, 'ac-ci', null],
      [null, 'ac-ci', null],
    ]);
    expect(asked[6]?.subject).toBe(asked[5]?.subject);
    // The tenant's own limit comes first, then the rule's.
    expect(asked[0]?.limits.map((limit) => limit.ruleId)).toEqual([TENANT_LIMIT_RULE, 'r1']);
    // A very long name is counted under its own key but not remembered: a fresh subject each time.
    const longName = `file:///${'z'.repeat(600)}`;
    admit(ci, { upstream: tickets, kind: 'resource', name: longName });
    admit(ci, { upstream: tickets, kind: 'resource', name: longName });
    expect(asked.at(-1)?.subject).not.toBe(asked.at(-2)?.subject);
    // ... and keyed by its hash, not by 600 characters of URI.
    expect(asked.at(-1)?.subject.tool).toBe(targetKey('up-tickets', 'resource', longName));
    expect(asked.at(-1)?.subject.tool).toMatch(/^up-tickets\/resource\/#[\w-]{43}$/);
    // Past the bound on remembered targets a session's subjects are still right (built each time).
    for (let i = 0; i < 300; i++) admit(ci, { upstream: tickets, kind: 'resource', name: `file:///${i}` });
    expect(asked.at(-1)?.subject.tool).toBe('up-tickets/resource/file:///299');
    admit(ci, { upstream: tickets, kind: 'resource', name: 'file:///299' });
    expect(asked.at(-1)?.subject).toEqual(asked.at(-2)?.subject);
  });
});
