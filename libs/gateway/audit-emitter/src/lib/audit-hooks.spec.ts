import { tenantSettings, type TenantSettingsInput } from '@portcullis/contracts/api';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { GatewayRequestError, type RequestInfo, type RequestOutcome } from '@portcullis/gateway/core';
import type { SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { REDACTED } from '@portcullis/shared/util-redact';
import { describe, expect, it } from 'vitest';
import type { AuditEmitter, AuditEmitterStats, EmitResult } from './audit-emitter';
import { auditHooks, type AuditHooks } from './audit-hooks';

const TENANT = '019a0000-0000-7000-8000-0000000000aa';
const AGENT = '019a0000-0000-7000-8000-0000000000bb';
const UPSTREAM = '019a0000-0000-7000-8000-0000000000cc';
const KEY = '019a0000-0000-7000-8000-0000000000dd';

/** Records what it is given; `accepting` is what canAcceptFailClosed answers (the emitter has its own tests). */
class RecordingEmitter implements AuditEmitter {
  readonly events: AuditEventV1[] = [];
  readonly sizeHints: (number | undefined)[] = [];
  accepting = true;
  /** The events reserved and not yet emitted each time it was asked, in order. */
  readonly asked: number[] = [];
  /** Reservations held (`reserve`, given back by a reserved emit or `release`). */
  reserved = 0;
  redis: 'up' | 'down' = 'up';
  emit(event: AuditEventV1, sizeHint?: number, reserved = false): EmitResult {
    this.events.push(event);
    this.sizeHints.push(sizeHint);
    if (reserved) this.reserved -= 1;
    return 'buffered';
  }
  canAcceptFailClosed(inFlight = 0): boolean {
    this.asked.push(this.reserved + inFlight);
    return this.accepting;
  }
  reserve(): void {
    this.reserved += 1;
  }
  release(): void {
    this.reserved -= 1;
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  stats(): AuditEmitterStats {
    return { redis: this.redis, buffered: 0, spoolBytes: 0, sent: 0, jobs: 0, spooled: 0, replayed: 0, dropped: 0 };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const record: SessionRecord = {
  id: 'session-1',
  tenantId: TENANT,
  principalKind: 'agent_client',
  principalId: AGENT,
  protocolVersion: '2025-11-25',
  clientInfo: { name: 'agent', version: '1' },
  clientCapabilities: {},
  upstreams: {},
  createdAt: 0,
};
const upstream = { id: UPSTREAM, name: 'ks', toolPrefix: 'ks' } as UpstreamConfig;

function setup(settings: TenantSettingsInput = {}, spoolDurable = true) {
  const emitter = new RecordingEmitter();
  const parsed = tenantSettings.parse(settings);
  const deferred = auditHooks({ emitter, settings: () => parsed, separator: '__', spoolDurable, logger: createLogger({ service: 'spec', level: 'silent' }) });
  // Events are built after the response (setImmediate); these specs read them at once.
  const hooks: AuditHooks = {
    ...deferred,
    completed: (info, outcome) => {
      deferred.completed?.(info, outcome);
      deferred.drain();
    },
  };
  return { emitter, hooks, deferred };
}

const call = (args: Record<string, unknown>): RequestInfo => ({
  record,
  method: 'tools/call',
  requestId: 1,
  traceId: 'trace-1',
  startedAt: Date.parse('2026-12-01T10:00:00Z'),
  target: { upstream, kind: 'tool', name: 'echo' },
  arguments: args,
});

const ok = (result: Record<string, unknown>): RequestOutcome => ({
  outcome: 'ok',
  admission: { decision: 'allow', reason: 'rule r1 allows', ruleIds: ['r1'], snapshotVersion: 7 },
  result,
  latencyMs: 12.4,
});

describe('auditHooks', () => {
  it('emits one event with actor, session, target, decision and redacted arguments and result', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full', redactPaths: ['$.result.structuredContent.ssn'] } });
    hooks.completed?.(
      call({ q: 'find', token: 'abc', note: 'Bearer abcdefghijklmnopqrstuvwxyz' }),
      ok({ content: [{ type: 'text', text: 'done' }], structuredContent: { ssn: '123-45-6789', name: 'Ada' } }),
    );
    expect(emitter.events).toHaveLength(1);
    expect(emitter.events[0]).toMatchObject({
      v: 1,
      tenantId: TENANT,
      occurredAt: '2026-12-01T10:00:00.000Z',
      kind: 'mcp',
      method: 'tools/call',
      agentClientId: AGENT,
      actorUserId: null,
      mcpSessionId: 'session-1',
      upstreamId: UPSTREAM,
      tool: 'ks__echo',
      decision: 'allow',
      reason: 'rule r1 allows',
      snapshotVersion: 7,
      latencyMs: 12,
      outcome: 'ok',
      errorCode: null,
      traceId: 'trace-1',
      arguments: {
        arguments: { q: 'find', token: '[redacted]', note: '[redacted]' },
        result: { content: [{ type: 'text', text: 'done' }], structuredContent: { ssn: '[redacted]', name: 'Ada' } },
      },
    });
    expect(emitter.events[0]?.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  });

  it('names the API key the request presented, in lower case, and no key for a credential id that is no UUID', () => {
    const { emitter, hooks } = setup();
    hooks.completed?.({ ...call({}), credentialId: KEY.toUpperCase() }, ok({}));
    hooks.completed?.({ record, method: 'initialize', requestId: 0, traceId: 'trace-0', startedAt: 0, credentialId: KEY }, { outcome: 'ok', latencyMs: 3 });
    hooks.completed?.({ ...call({}), credentialId: 'oauth:token-17' }, ok({}));
    hooks.completed?.(call({}), ok({}));
    hooks.completed?.({ ...call({}), credentialId: KEY }, ok({}));
    expect(emitter.events.map((event) => [event.method, event.apiKeyId])).toEqual([
      ['tools/call', KEY],
      ['initialize', KEY],
      ['tools/call', null],
      ['tools/call', null],
      ['tools/call', KEY],
    ]);
  });

  it('records a request about a task as about the tool whose call started it', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full' } });
    const info: RequestInfo = { record, method: 'tasks/result', requestId: 2, traceId: 'trace-2', startedAt: 0, taskOf: { upstream, kind: 'tool', name: 'echo' } };
    hooks.completed?.(info, { outcome: 'ok', result: { content: [{ type: 'text', text: 'late' }] }, latencyMs: 3 });
    // A task id that named no task: about nothing.
    hooks.completed?.({ ...info, taskOf: undefined }, { outcome: 'error', error: { code: -32602, message: 'Failed to retrieve task: Task not found' }, latencyMs: 1 });
    expect(emitter.events.map((event) => [event.method, event.upstreamId, event.tool])).toEqual([
      ['tasks/result', UPSTREAM, 'ks__echo'],
      ['tasks/result', null, null],
    ]);
    expect(emitter.events[0]?.arguments).toEqual({ result: { content: [{ type: 'text', text: 'late' }] } });
  });

  it('makes every string of the event storable: no lone surrogate, no NUL, no pair cut in half at a length limit', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full' } });
    const strings: string[] = [];
    const collect = (value: unknown): void => {
      if (typeof value === 'string') strings.push(value);
      else if (Array.isArray(value)) value.forEach(collect);
      else if (value !== null && typeof value === 'object') {
        for (const [key, child] of Object.entries(value)) {
          strings.push(key);
          collect(child);
        }
      }
    };
    // An upstream error whose message has an emoji across the 2,000-character cut of the reason column.
    const message = `${'e'.repeat(1_999)}\u{1F600} and more`;
    hooks.completed?.(call({ q: 'lone \ud800 half', nul: 'a\u0000b', ['k\udc00\u0000']: 1 }), {
      outcome: 'upstream_error',
      error: { code: -32000, message },
      result: { text: 'x\udbff' },
      latencyMs: 1,
    });
    const event = emitter.events[0];
    collect(event);
    expect(strings.length).toBeGreaterThan(10);
    for (const text of strings) {
      expect((text as unknown as { isWellFormed(): boolean }).isWellFormed()).toBe(true);
      expect(text).not.toContain('\u0000');
    }
    expect(event?.reason).toBe('e'.repeat(1_999));
    expect(event?.arguments).toMatchObject({ arguments: { q: 'lone \uFFFD half', nul: 'a\uFFFDb', 'k\uFFFD\uFFFD': 1 } });
  });

  it('redacts credentials in the free-text columns: a resource URI and an error reason', () => {
    const { emitter, hooks } = setup();
    hooks.completed?.(
      { ...call({}), method: 'resources/read', target: { upstream, kind: 'resource', name: 'postgres://app:hunter2@db/x?token=abc123' } },
      { outcome: 'upstream_error', error: { code: -32000, message: 'refused: bearer abcdefghijklmnop' }, latencyMs: 1 },
    );
    const event = emitter.events[0];
    expect(event?.tool).toBe(`postgres://app:${REDACTED}@db/x?token=${REDACTED}`);
    expect(event?.reason).toBe(`refused: ${REDACTED}`);
  });

  it("redacts credentials in the admission's reason too (the policy names a resource by its URI), whatever the outcome", () => {
    const { emitter, hooks } = setup();
    const uri = 'postgres://app:hunter2secret@db.internal/prod?access_token=tok_abcdef123456';
    // As the policy engine words it (`describeTarget`): the raw URI, quoted.
    const reason = `allow: rule r1 matched resource ${JSON.stringify(uri)} on upstream "ks" for agent client ${AGENT}`;
    const read: RequestInfo = { ...call({}), method: 'resources/read', target: { upstream, kind: 'resource', name: uri } };
    const admission = { decision: 'allow' as const, reason, ruleIds: ['r1'], snapshotVersion: 7 };
    // Twice: the second is answered from what the first worked out.
    for (let i = 0; i < 2; i++) hooks.completed?.(read, { outcome: 'ok', admission, result: { contents: [] }, latencyMs: 1 });
    hooks.completed?.(read, { outcome: 'upstream_error', admission, error: { code: -32000, message: 'gone' }, latencyMs: 1 });
    expect(emitter.events).toHaveLength(3);
    for (const event of emitter.events) {
      expect(event.reason).not.toContain('hunter2');
      expect(event.reason).not.toContain('tok_abcdef123456');
      // Only the credentials go: the rest of the policy's words stay.
      expect(event.reason).toContain(`allow: rule r1 matched resource "postgres://app:${REDACTED}@db.internal/prod?access_token=${REDACTED}`);
      expect(event.reason).toContain(`on upstream "ks" for agent client ${AGENT}`);
    }
    expect(emitter.events[2]?.reason).toMatch(/; gone$/);
  });

  it('redacts credentials used as object keys, in the arguments and in a full result, as it does in values', () => {
    // A map keyed by API key or token: before, keys were made storable but never went through the credential patterns.
    const github = `ghp_${'A1b2C3d4E5'.repeat(4)}`;
    const portcullis = 'pcs_live_9f8e7d6c5b4a39281706';
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLWJ5dGVz';
    const { emitter, hooks } = setup();
    hooks.completed?.(call({ labels: { [github]: 'ci', [portcullis]: 'prod' } }), ok({ content: [] }));
    expect(JSON.stringify(emitter.events[0])).not.toContain(github);
    expect(JSON.stringify(emitter.events[0])).not.toContain(portcullis);
    // Both labels kept, under distinct keys: neither overwrites the other.
    expect(emitter.events[0]?.arguments).toMatchObject({ arguments: { labels: { [REDACTED]: 'ci', [`${REDACTED}#2`]: 'prod' } } });

    const full = setup({ audit: { results: 'full' } });
    full.hooks.completed?.(call({ q: 'sessions' }), ok({ structuredContent: { sessions: { [jwt]: { user: 'ada' } } } }));
    expect(JSON.stringify(full.emitter.events[0])).not.toContain(jwt);
    expect(full.emitter.events[0]?.arguments).toMatchObject({ result: { structuredContent: { sessions: { [REDACTED]: { user: 'ada' } } } } });
  });

  it('redacts a credential key of a result kept as metadata, and takes a credential key out of the rest of the event', () => {
    const secretKey = 'deploy key sk-live0123456789abcdefghij';
    const { emitter, hooks } = setup();
    hooks.completed?.(call({ q: 'x' }), ok({ [secretKey]: [{ type: 'text' }] }));
    expect(emitter.events[0]?.arguments).toEqual({ arguments: { q: 'x' }, result: { [REDACTED]: { count: 1, types: ['text'] } } });
    // The whole key goes, and so does an error or a full result quoting it (the words beside the token included).
    const full = setup({ audit: { results: 'full' } });
    full.hooks.completed?.(call({ keys: { [secretKey]: true } }), ok({ content: [{ type: 'text', text: `rotated ${secretKey}` }] }));
    full.hooks.completed?.(call({ keys: { [secretKey]: true } }), { outcome: 'upstream_error', error: { code: -32000, message: `no ${secretKey}` }, latencyMs: 1 });
    expect(full.emitter.events[0]?.arguments).toEqual({ arguments: { keys: { [REDACTED]: true } }, result: { content: [{ type: 'text', text: `rotated ${REDACTED}` }] } });
    expect(full.emitter.events[1]?.reason).toBe(`no ${REDACTED}`);
    expect(JSON.stringify(full.emitter.events)).not.toContain('deploy key');
  });

  it('redacts before it cuts: a credential the cut falls inside is not stored in part', () => {
    const { emitter, hooks } = setup();
    const password = 'p'.repeat(40);
    // The cut (300 characters for a URI, 2,000 for a reason) falls inside the password, before the `@` its pattern needs.
    const uri = `file:///${'d/'.repeat(125)}x?dsn=postgres://app:${password}@db`; // the password spans characters 279–318
    const message = `${'e'.repeat(1_970)} postgres://u:${password}@h`;
    hooks.completed?.(
      { ...call({}), method: 'resources/read', target: { upstream, kind: 'resource', name: uri } },
      { outcome: 'upstream_error', error: { code: -32000, message }, latencyMs: 1 },
    );
    const event = emitter.events[0];
    expect(event?.tool).not.toContain('pppp');
    expect(event?.reason).not.toContain('pppp');
  });

  it('takes a value redaction removed out of the rest of the event too: an error quoting it, a result echoing it', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full', redactPaths: ['$.arguments.ssn', 'arguments.card'] } });
    const args = { ssn: '123-45-6789', card: { number: 4111111111111111, holder: 'Ada Lovelace' }, password: 'hunter22', pin: '42', q: 'find' };
    hooks.completed?.(call(args), ok({ content: [{ type: 'text', text: 'Found 123-45-6789 for Ada Lovelace (card 4111111111111111)' }] }));
    hooks.completed?.(call(args), {
      outcome: 'upstream_error',
      error: { code: -32000, message: 'no record for 123-45-6789; password hunter22 rejected; pin 42 locked' },
      latencyMs: 1,
    });
    const [found, failed] = emitter.events;
    expect(found?.arguments).toEqual({
      arguments: { ssn: REDACTED, card: REDACTED, password: REDACTED, pin: '42', q: 'find' },
      result: { content: [{ type: 'text', text: `Found ${REDACTED} for ${REDACTED} (card ${REDACTED})` }] },
    });
    // Texts shorter than four characters are not looked for (they would mask unrelated words).
    expect(failed?.reason).toBe(`no record for ${REDACTED}; password ${REDACTED} rejected; pin 42 locked`);
    expect(JSON.stringify(emitter.events)).not.toMatch(/6789|hunter22|Lovelace|4111/);
  });

  it('takes a value redaction removed out of the policy\'s reason too (a failed condition quotes it)', () => {
    const { emitter, hooks } = setup({ audit: { redactPaths: ['$.arguments.account'] } });
    const args = { account: 'DE89370400440532013000', amount: 50 };
    // The reason as the engine words it when a condition's lookup fails on the value (cel-js names the missing key).
    const reason = 'allow: rule r-transfers matched tool "transfer" on "ks"; condition of r-preapproved failed: No such key: DE89370400440532013000';
    hooks.completed?.(call(args), { ...ok({ content: [] }), admission: { decision: 'allow', reason, ruleIds: ['r-transfers'], snapshotVersion: 1 } });
    hooks.drain();
    expect(emitter.events[0]?.reason).toContain(`No such key: ${REDACTED}`);
    expect(JSON.stringify(emitter.events)).not.toContain('DE89370400440532013000');
  });

  it('looks for the values the tenant\'s paths removed first, however many credential values came with them', () => {
    const { emitter, hooks } = setup({ audit: { redactPaths: ['$.arguments.ssn'] } });
    const apiKeys = Array.from({ length: 64 }, (_, index) => `key-value-${index}`);
    hooks.completed?.(call({ ssn: '123-45-6789', api_keys: apiKeys }), {
      outcome: 'upstream_error',
      error: { code: -32000, message: 'no record for 123-45-6789' },
      latencyMs: 1,
    });
    expect(emitter.events[0]?.reason).toBe(`no record for ${REDACTED}`);
  });

  it('looks for a credential quoted in an error however many values the tenant\'s paths removed', () => {
    const { emitter, hooks } = setup({ audit: { redactPaths: ['$.arguments.patient'] } });
    const patient = Object.fromEntries(Array.from({ length: 70 }, (_, index) => [`field${index}`, `value-${index}`]));
    hooks.completed?.(call({ patient, password: 'hunter22' }), {
      outcome: 'upstream_error',
      error: { code: -32000, message: 'login failed: password hunter22 rejected for value-3' },
      latencyMs: 1,
    });
    expect(emitter.events[0]?.reason).toBe(`login failed: password ${REDACTED} rejected for ${REDACTED}`);
  });

  it('looks for a credential however it is placed: deep inside an object a path removes whole, or beside a large credential object', () => {
    const { emitter, hooks } = setup({ audit: { redactPaths: ['$.arguments.patient'] } });
    const many = Object.fromEntries(Array.from({ length: 70 }, (_, index) => [`field${index}`, `value-${index}`]));
    const failed = { outcome: 'upstream_error' as const, error: { code: -32000, message: 'login failed: password hunter22 rejected' }, latencyMs: 1 };
    hooks.completed?.(call({ patient: { ...many, password: 'hunter22' } }), failed);
    hooks.completed?.(call({ headers: many, password: 'hunter22' }), failed);
    for (const event of emitter.events) expect(event.reason).toBe(`login failed: password ${REDACTED} rejected`);
  });

  it('looks for what the tenant\'s paths removed as it came: every field of a lone object, strings other rules rewrite, values inside credential keys', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full', redactPaths: ['$.arguments.patient', '$.arguments.dsn', '$.arguments.env.PATIENT_ID'] } });
    const patient = Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`f${index}`, `Patient-${String.fromCharCode(65 + index)}`]));
    const env = { ...Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`VAR_${index}`, `setting-${index}`])), PATIENT_ID: 'P-77123' };
    const dsn = 'postgres://alice:hunter22@db.internal.acme/patients';
    hooks.completed?.(call({ patient, dsn, env }), {
      outcome: 'upstream_error',
      error: { code: -32000, message: `no record for Patient-T; could not connect to ${dsn}; unknown patient P-77123` },
      latencyMs: 1,
    });
    expect(emitter.events[0]?.reason).toBe(`no record for ${REDACTED}; could not connect to ${REDACTED}; unknown patient ${REDACTED}`);
  });

  it('takes removed values out of a kept result as the rest of redaction rewrote them, and removed numbers too', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full', redactPaths: ['$.arguments.dsn', '$.arguments.note', '$.arguments.ssn', '$.arguments.card'] } });
    const dsn = 'postgres://alice:hunter22@db.internal.acme/patients';
    const note = 'John Q Patient, key sk-abcdefghijklmnopqrstuvwxyz';
    hooks.completed?.(
      call({ dsn, note, ssn: 'SSN\u0000123-45-6789', card: 4111111111111111 }),
      ok({ content: [{ type: 'text', text: `connected to ${dsn}; note: ${note}; found SSN\u0000123-45-6789` }], structuredContent: { card: 4111111111111111 } }),
    );
    expect(emitter.events[0]?.arguments).toMatchObject({
      result: { content: [{ type: 'text', text: `connected to ${REDACTED}; note: ${REDACTED}; found ${REDACTED}` }], structuredContent: { card: REDACTED } },
    });
  });

  it('keeps looking for every removed value however many or how large the others are', () => {
    const { emitter, hooks } = setup({ audit: { redactPaths: ['$.arguments.ids', '$.arguments.ssn'] } });
    const failed = (message: string) => ({ outcome: 'upstream_error' as const, error: { code: -32000, message }, latencyMs: 1 });
    // Thousands of tiny parts in one removed value, and many removed values with no text worth looking for.
    hooks.completed?.(call({ privateKey: Array.from({ length: 2_000 }, (_, index) => index % 256), password: 'hunter22' }), failed('password hunter22 rejected'));
    hooks.completed?.(call({ requests: Array.from({ length: 64 }, () => ({ prompt: 'hi', max_tokens: 256 })), password: 'hunter22' }), failed('password hunter22 rejected'));
    hooks.completed?.(call({ ids: Array.from({ length: 2_000 }, (_, index) => index % 100), ssn: '123-45-6789' }), failed('no record for 123-45-6789'));
    expect(emitter.events.map((event) => event.reason)).toEqual([`password ${REDACTED} rejected`, `password ${REDACTED} rejected`, `no record for ${REDACTED}`]);
  });

  it('takes a path-removed value out of the result when the other arguments are too deep to keep', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full', redactPaths: ['$.arguments.ssn'] } });
    let deep: Record<string, unknown> = {};
    for (let level = 0; level < 200_000; level++) deep = { a: deep };
    hooks.completed?.(call({ ssn: '123-45-6789', deep }), ok({ content: [{ type: 'text', text: 'Found 123-45-6789' }] }));
    expect(emitter.events[0]?.arguments).toEqual({ arguments: { unserialisable: true }, result: { content: [{ type: 'text', text: `Found ${REDACTED}` }] } });
  });

  it('leaves the event as it is when nothing was removed, and the arguments untouched by the scrubbing', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full', redactPaths: ['$.arguments.ssn'] } });
    const args = { q: 'find 123-45-6789' };
    hooks.completed?.(call(args), { outcome: 'upstream_error', error: { code: -32000, message: 'no record for 123-45-6789' }, latencyMs: 1 });
    expect(emitter.events[0]?.reason).toBe('no record for 123-45-6789');
    expect(emitter.events[0]?.arguments).toEqual({ arguments: { q: 'find 123-45-6789' } });
    expect(args).toEqual({ q: 'find 123-45-6789' });
  });

  it('builds events after the response: completed only queues, the next turn of the event loop emits', async () => {
    const { emitter, deferred } = setup();
    deferred.completed?.(call({ a: 1 }), ok({}));
    deferred.completed?.(call({ a: 2 }), ok({}));
    expect(emitter.events).toHaveLength(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(emitter.events.map((event) => event.arguments)).toEqual([{ arguments: { a: 1 }, result: expect.anything() }, { arguments: { a: 2 }, result: expect.anything() }]);
  });

  it('stores the result as metadata or not at all, per tenant', () => {
    const result = { content: [{ type: 'text', text: 'secretless but private' }, { type: 'image', data: 'xx' }], isError: false };
    const metadata = setup({ audit: { results: 'metadata' } });
    metadata.hooks.completed?.(call({}), ok(result));
    expect(metadata.emitter.events[0]?.arguments).toEqual({ arguments: {}, result: { content: { count: 2, types: ['text', 'image'] }, isError: false } });
    // An upstream's `__proto__` key is recorded like any other (assigned, it would vanish from the metadata).
    const odd = setup({ audit: { results: 'metadata' } });
    odd.hooks.completed?.(call({}), ok(JSON.parse('{"__proto__": [{"type": "text"}], "isError": true}') as Record<string, unknown>));
    expect(JSON.parse(JSON.stringify(odd.emitter.events[0]?.arguments))).toEqual(JSON.parse('{"arguments": {}, "result": {"__proto__": {"count": 1, "types": ["text"]}, "isError": true}}'));
    const none = setup({ audit: { results: 'none' } });
    none.hooks.completed?.(call({ a: 1 }), ok(result));
    expect(none.emitter.events[0]?.arguments).toEqual({ arguments: { a: 1 } });
  });

  it('records a refusal: denied by policy, or rate-limited with the policy decision noted before it', () => {
    const { emitter, hooks } = setup();
    hooks.completed?.(call({}), { outcome: 'denied', error: { code: -32030, message: 'Tool was denied.', data: { snapshotVersion: 3 } }, latencyMs: 1 });
    const limited = call({});
    hooks.note(limited, { prior: { decision: 'allow', reason: 'rule r2 allows', snapshotVersion: 3 } });
    hooks.completed?.(limited, { outcome: 'rate_limited', error: { code: -32029, message: 'Rate limit exceeded' }, latencyMs: 1 });
    expect(emitter.events.map((e) => [e.outcome, e.decision, e.snapshotVersion, e.errorCode, e.reason])).toEqual([
      ['denied', 'deny', 3, '-32030', 'Tool was denied.'],
      ['rate_limited', 'allow', 3, '-32029', 'rule r2 allows; Rate limit exceeded'],
    ]);
  });

  it('records a call held for approval with the policy decision and snapshot version, however it ends', () => {
    const { emitter, hooks } = setup();
    const prior = { decision: 'require_approval', reason: 'rule r1 needs a person', snapshotVersion: 3 } as const;
    const approvalId = '0190f0a1-b2c3-7d4e-8f90-a1b2c3d4e5f6';
    const ends: RequestOutcome[] = [
      // Cancelled by the agent while it waited.
      { outcome: 'cancelled', prior, error: { code: -32054, message: 'cancelled', data: { approvalId, reason: 'approval_cancelled' } }, latencyMs: 1 },
      // Refused because the session already had 32 calls waiting (no approval row).
      { outcome: 'rate_limited', prior, error: { code: -32029, message: 'too many waiting', data: { reason: 'too_many_calls_awaiting_approval' } }, latencyMs: 1 },
      // Denied by an approver, and expired.
      { outcome: 'denied', prior, error: { code: -32032, message: 'An approver denied this call', data: { approvalId, reason: 'approval_denied' } }, latencyMs: 1 },
      { outcome: 'denied', prior, error: { code: -32033, message: 'none was given', data: { approvalId, reason: 'approval_expired' } }, latencyMs: 1 },
      // Approved, then refused by the policy in force after the wait (its error names the newer snapshot).
      { outcome: 'denied', prior: { ...prior, approvalId }, error: { code: -32030, message: 'now denied', data: { snapshotVersion: 4, approvalId } }, latencyMs: 1 },
    ];
    for (const end of ends) hooks.completed?.(call({}), end);
    // Before: null (cancelled, rate-limited) or deny (denied, expired), and no snapshot version but the error's.
    expect(emitter.events.map((e) => [e.outcome, e.errorCode, e.decision, e.snapshotVersion, e.approvalId])).toEqual([
      ['cancelled', '-32054', 'require_approval', 3, approvalId],
      ['rate_limited', '-32029', 'require_approval', 3, null],
      ['denied', '-32032', 'require_approval', 3, approvalId],
      ['denied', '-32033', 'require_approval', 3, approvalId],
      ['denied', '-32030', 'require_approval', 3, approvalId],
    ]);
    expect(emitter.events[0]?.reason).toBe('rule r1 needs a person; cancelled');
  });

  it("records a denial of a call the policy allowed as the refusing check's (deny, its reason), not with the allow", () => {
    const { emitter, hooks } = setup();
    const prior = { decision: 'allow', reason: 'rule r1 allows', snapshotVersion: 3 } as const;
    hooks.completed?.(call({}), { outcome: 'denied', prior, error: { code: -32003, message: 'Tool pin changed', data: { reason: 'tool_pin_changed' } }, latencyMs: 1 });
    // A refusal other than a denial keeps the allow, as a rate-limited call does (the audit trail's fail-closed check).
    hooks.completed?.(call({}), { outcome: 'error', prior, error: { code: -32053, message: 'audit unavailable' }, latencyMs: 1 });
    expect(emitter.events.map((e) => [e.outcome, e.decision, e.snapshotVersion, e.reason])).toEqual([
      ['denied', 'deny', null, 'Tool pin changed'],
      ['error', 'allow', 3, 'rule r1 allows; audit unavailable'],
    ]);
  });

  it("redacts a credential in the request's method, as in the reason (the method is the agent's to write)", () => {
    const { emitter, hooks } = setup();
    const token = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
    const info: RequestInfo = { record, method: `Bearer ${token}`, requestId: 1, traceId: 'trace-1', startedAt: 0 };
    hooks.completed?.(info, { outcome: 'error', error: { code: -32601, message: `Method not found: Bearer ${token}` }, latencyMs: 1 });
    hooks.completed?.({ ...info, method: 'tools/list' }, { outcome: 'ok', latencyMs: 1 });
    // Before: the method column kept the token.
    expect(emitter.events.map((e) => [e.method.includes(token), e.reason?.includes(token) ?? false])).toEqual([
      [false, false],
      [false, false],
    ]);
    expect(emitter.events.map((e) => e.method)).toEqual([REDACTED, 'tools/list']);
  });

  it("prefixes errorCode with upstream: only for the upstream's own error, not the gateway's upstream failures", () => {
    const { emitter, hooks } = setup();
    hooks.completed?.(call({}), { outcome: 'upstream_error', error: { code: -32000, message: 'upstream says no' }, fromUpstream: true, latencyMs: 1 });
    // A timeout, a refused connection, an open circuit: the agent got the gateway's -32054 / -32050.
    hooks.completed?.(call({}), { outcome: 'upstream_error', error: { code: -32054, message: 'no answer within 1000 ms' }, latencyMs: 1 });
    hooks.completed?.(call({}), { outcome: 'upstream_error', error: { code: -32050, message: 'upstream unavailable' }, latencyMs: 1 });
    // Before: upstream:-32054 and upstream:-32050.
    expect(emitter.events.map((e) => [e.outcome, e.errorCode])).toEqual([
      ['error', 'upstream:-32000'],
      ['timeout', '-32054'],
      ['error', '-32050'],
    ]);
  });

  it("takes no snapshot version or approval id from an upstream's error data, and writes ids in lower case", () => {
    const { emitter, hooks } = setup();
    const data = { snapshotVersion: 3_000_000_000, approvalId: '0190F0A1-B2C3-7D4E-8F90-A1B2C3D4E5F6' };
    hooks.completed?.(call({}), { outcome: 'upstream_error', error: { code: -32000, message: 'no', data }, latencyMs: 1 });
    // The upstream's error answered after the agent cancelled: still the upstream's data.
    hooks.completed?.(call({}), { outcome: 'cancelled', error: { code: -32000, message: 'no', data }, fromUpstream: true, latencyMs: 1 });
    // The gateway's own refusal (an approval denied) names its approval: kept, in lower case.
    hooks.completed?.(call({}), { outcome: 'denied', error: { code: -32031, message: 'Denied by an approver.', data }, latencyMs: 1 });
    expect(emitter.events.map((e) => [e.outcome, e.snapshotVersion, e.approvalId])).toEqual([
      ['error', null, null],
      ['cancelled', null, null],
      ['denied', 3_000_000_000, '0190f0a1-b2c3-7d4e-8f90-a1b2c3d4e5f6'],
    ]);
  });

  it('records a call whose arguments are nested too deeply to copy or serialise, with a note in their place', () => {
    const { emitter, hooks } = setup();
    // A 120 KB body: JSON.parse takes it, but anything that recurses through it runs out of stack.
    const deep = JSON.parse(`${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`) as Record<string, unknown>;
    hooks.completed?.(call(deep), ok({ content: [{ type: 'text', text: 'done' }] }));
    // And the other way round (full results): a result too deep to keep leaves the call's arguments in the trail.
    const full = setup({ audit: { results: 'full' } });
    full.hooks.completed?.(call({ path: '/srv/a', token: 'abc' }), ok({ structuredContent: deep }));
    expect(emitter.events).toHaveLength(1);
    expect(emitter.events[0]).toMatchObject({
      method: 'tools/call',
      tool: 'ks__echo',
      outcome: 'ok',
      arguments: { arguments: { unserialisable: true }, result: { content: { count: 1, types: ['text'] } } },
    });
    expect(full.emitter.events[0]?.arguments).toEqual({ arguments: { path: '/srv/a', token: REDACTED }, result: { unserialisable: true } });
  });

  it('keeps arguments and results with nothing to redact as they are, and copies only those with something to hide', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full' } });
    const plain = { q: 'find', page: 2, tags: ['a', 'b'] };
    const result = { content: [{ type: 'text', text: 'done' }] };
    hooks.completed?.(call(plain), ok(result));
    const kept = emitter.events[0]?.arguments as Record<string, unknown>;
    expect(kept['arguments']).toBe(plain);
    expect(kept['result']).toBe(result);
    const secret = { q: 'find', note: 'postgres://app:hunter2@db/x' };
    hooks.completed?.(call(secret), ok(result));
    const copied = emitter.events[1]?.arguments as Record<string, unknown>;
    expect(copied['arguments']).toEqual({ q: 'find', note: `postgres://app:${REDACTED}@db/x` });
    expect(secret.note).toBe('postgres://app:hunter2@db/x');
  });

  it('replaces oversized arguments with a size note', () => {
    const { emitter, hooks } = setup();
    hooks.completed?.(call({ blob: 'x'.repeat(40_000) }), ok({}));
    // The (small) result metadata stays; only the arguments are replaced.
    expect(emitter.events[0]?.arguments).toEqual({ arguments: { truncated: true, bytes: expect.any(Number), keys: ['blob'] }, result: {} });
  });

  it('lets a large result give way before the arguments: a big file read keeps the call’s arguments', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full' } });
    hooks.completed?.(call({ path: '/srv/report.csv' }), ok({ content: [{ type: 'text', text: 'x'.repeat(40_000) }] }));
    expect(emitter.events[0]?.arguments).toEqual({ arguments: { path: '/srv/report.csv' }, result: { truncated: true, bytes: expect.any(Number), keys: ['content'] } });
  });

  it('fail-closed tenants are refused when the emitter cannot keep the event; fail-open ones never', () => {
    const closed = setup({ audit: { failMode: 'closed' } }, false);
    expect(closed.hooks.admit?.(call({}), { canStream: false, send: () => false }, new AbortController().signal, undefined)).toBeUndefined();
    closed.emitter.redis = 'down'; // a memory-only spool does not count as kept
    expect(() => closed.hooks.admit?.(call({}), { canStream: false, send: () => false }, new AbortController().signal, undefined)).toThrow(GatewayRequestError);
    const open = setup({ audit: { failMode: 'open' } });
    open.emitter.accepting = false;
    expect(open.hooks.admit?.(call({}), { canStream: false, send: () => false }, new AbortController().signal, undefined)).toBeUndefined();
  });

  it('counts fail-closed calls admitted but not yet recorded when judging room for the next one', async () => {
    // `deferred`: events built after the response, as in the gateway (not at once, as the other specs have it).
    const { emitter, deferred: hooks } = setup({ audit: { failMode: 'closed' } }, false);
    const sink = { canStream: false, send: () => false };
    const [first, second, third] = [call({ n: 1 }), call({ n: 2 }), call({ n: 3 })];
    for (const info of [first, second, third]) hooks.admit?.(info, sink, new AbortController().signal, undefined);
    // Each saw the calls admitted before it still waiting to be recorded.
    expect(emitter.asked).toEqual([0, 1, 2]);
    hooks.completed?.(first, ok({}));
    hooks.completed?.(second, ok({}));
    // Completed but not yet built into events (that happens off the response path): still counted.
    hooks.admit?.(call({ n: 4 }), sink, new AbortController().signal, undefined);
    expect(emitter.asked.at(-1)).toBe(3);
    await new Promise((resolve) => setImmediate(resolve));
    expect(emitter.events).toHaveLength(2);
    hooks.admit?.(call({ n: 5 }), sink, new AbortController().signal, undefined);
    expect(emitter.asked.at(-1)).toBe(2);
  });

  it('hands the emitter a size hint that is never below the event\'s real JSON size', () => {
    const { emitter, hooks } = setup({ audit: { results: 'full' } });
    const awkward = 'ü"\\\u0001😀'.repeat(200);
    hooks.completed?.(call({ q: 'find' }), ok({ content: [{ type: 'text', text: 'done' }] }));
    hooks.completed?.(call({ text: awkward, nested: { list: [awkward, 1, null] } }), ok({ structuredContent: { echo: awkward } }));
    hooks.completed?.(call({ blob: 'x'.repeat(40_000) }), ok({}));
    hooks.completed?.({ ...call({}), target: { upstream, kind: 'tool', name: awkward.slice(0, 100) } }, {
      outcome: 'denied',
      error: { code: -32030, message: awkward, data: { snapshotVersion: 3 } },
      latencyMs: 1,
    });
    hooks.completed?.({ record, method: 'initialize', requestId: 0, traceId: 'trace-0', startedAt: 0 }, { outcome: 'ok', latencyMs: 3 });
    // Almost nothing but the fixed part: a ping.
    hooks.completed?.({ record, method: 'ping', requestId: 2, traceId: 't', startedAt: 0 }, { outcome: 'ok', latencyMs: 0 });
    // Every id column set (the API key's too), the longest enum and the largest numbers.
    hooks.completed?.(
      { ...call({}), credentialId: KEY, startedAt: Date.parse('+275760-09-13T00:00:00Z') },
      { outcome: 'rate_limited', admission: { decision: 'require_approval', snapshotVersion: 2_147_483_647, approvalId: KEY }, error: { code: -32029, message: '' }, latencyMs: 1e12 },
    );
    expect(emitter.events).toHaveLength(7);
    expect(emitter.events[6]).toMatchObject({ apiKeyId: KEY, approvalId: KEY, upstreamId: UPSTREAM, agentClientId: AGENT });
    emitter.events.forEach((event, index) => {
      const real = Buffer.byteLength(JSON.stringify(event));
      const hint = emitter.sizeHints[index] ?? 0;
      expect(hint).toBeGreaterThanOrEqual(real);
      // An upper bound, not a wild one: jobs stay well filled.
      expect(hint).toBeLessThan(real * 8 + 2_048);
    });
  });
});
