import { describe, expect, it } from 'vitest';
import { AUDIT_JSON_MAX_DEPTH } from './audit-event';
import { AUDIT_BATCH_MAX_EVENTS, AUDIT_EVENT_FIELDS, encodeAuditEventBatchV2, parseAuditEvent, parseAuditEventBatch, PART_TOO_DEEP } from './audit-event-batch';
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

describe('audit event contract', () => {
  it('takes ids in any case and gives them in lower case (as Postgres reads them back, and the chain hashes them)', () => {
    const parsed = parseAuditEvent({ ...event, eventId: event.eventId.toUpperCase(), approvalId: '0190F0A1-B2C3-7D4E-8F90-A1B2C3D4E5F6' });
    expect([parsed.eventId, parsed.approvalId]).toEqual([event.eventId, '0190f0a1-b2c3-7d4e-8f90-a1b2c3d4e5f6']);
  });

  it('refuses numbers its integer columns cannot hold, rather than fail the insert later', () => {
    expect(() => parseAuditEvent({ ...event, snapshotVersion: 2_147_483_648 })).toThrow();
    expect(() => parseAuditEvent({ ...event, latencyMs: 2 ** 40 })).toThrow();
    expect(parseAuditEvent({ ...event, snapshotVersion: 2_147_483_647 }).snapshotVersion).toBe(2_147_483_647);
  });

  it('refuses an occurredAt its timestamptz column cannot hold (year 0000, or an offset carrying it past 0001..9999)', () => {
    for (const occurredAt of ['0000-01-01T00:00:00Z', '0000-12-31T23:59:59.999Z', '0001-01-01T00:30:00+01:00', '9999-12-31T23:30:00-01:00']) {
      expect(() => parseAuditEvent({ ...event, occurredAt }), occurredAt).toThrow(/occurredAt/);
    }
    for (const occurredAt of ['0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z', '2026-11-22T09:00:00+01:00']) {
      expect(parseAuditEvent({ ...event, occurredAt }).occurredAt, occurredAt).toBe(occurredAt);
    }
    // A batch keeps such an event apart as invalid, with the rest valid (the worker dead-letters it, never crashes).
    const batch = parseAuditEventBatch({ v: 1, events: [event, { ...event, eventId: '019a0000-0000-7000-8000-000000000002', occurredAt: '0000-01-01T00:00:00Z' }] });
    expect(batch.valid).toEqual([event]);
    expect(batch.invalid).toEqual([expect.objectContaining({ eventId: '019a0000-0000-7000-8000-000000000002' })]);
  });
});

describe('audit event arguments', () => {
  // As the gateway parsed the agent's body and forwarded it to the upstream: `__proto__` an own key, at any depth.
  const ARGUMENTS_JSON =
    '{"arguments":{"message":"hello","__proto__":{"command":"rm -rf /srv/data","polluted":true},"list":[{"__proto__":{"x":1}}]},' +
    '"result":{"__proto__":{"present":true}}}';
  const withOwnProto = (eventId: string) => ({ ...event, eventId, arguments: JSON.parse(ARGUMENTS_JSON) as typeof event.arguments });

  /** The arguments kept exactly as they came: own `__proto__` data properties, ordinary prototypes, nothing polluted. */
  const expectKept = (args: unknown) => {
    expect(JSON.stringify(args)).toBe(ARGUMENTS_JSON);
    const inner = (args as { arguments: object }).arguments;
    expect(Object.keys(inner)).toEqual(['message', '__proto__', 'list']);
    expect(Object.getOwnPropertyDescriptor(inner, '__proto__')).toMatchObject({ value: { command: 'rm -rf /srv/data', polluted: true }, enumerable: true, writable: true });
    expect(Object.getPrototypeOf(inner)).toBe(Object.prototype);
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(({} as Record<string, unknown>)['command']).toBeUndefined();
  };

  it('keeps an own __proto__ key in a single event (parseAuditEvent, the job contract), passing the value on uncopied', () => {
    const raw = JSON.parse(JSON.stringify(withOwnProto(event.eventId))) as typeof event;
    expect(JSON.stringify(raw.arguments)).toBe(ARGUMENTS_JSON);
    const parsed = parseAuditEvent(raw);
    expectKept(parsed.arguments);
    expect(parsed.arguments).toBe(raw.arguments);
    expectKept(parseJobPayload('audit.event.ingest', JSON.parse(JSON.stringify(raw))).arguments);
  });

  it('keeps an own __proto__ key in a batch, v1 and v2 (parseAuditEventBatch, the job contract)', () => {
    const events = [withOwnProto(event.eventId), withOwnProto('019a0000-0000-7000-8000-000000000002')];
    for (const payload of [{ v: 1, events }, encodeAuditEventBatchV2(events)]) {
      const wire = JSON.parse(JSON.stringify(payload)) as unknown;
      const parsed = parseAuditEventBatch(wire);
      expect(parsed.invalid).toEqual([]);
      expect(parsed.valid).toHaveLength(2);
      for (const valid of parsed.valid) expectKept(valid.arguments);
      for (const job of parseJobPayload('audit.events.ingest', JSON.parse(JSON.stringify(payload))).events) expectKept(job.arguments);
    }
  });

  it('refuses what is not JSON (non-finite numbers, undefined, functions, class instances) and takes every JSON value', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, { a: undefined }, [1, undefined], { f: () => 1 }, new Date(0), { d: new Map() }, 1n, undefined]) {
      expect(() => parseAuditEvent({ ...event, arguments: bad }), String(bad)).toThrow(/arguments/);
    }
    for (const good of [null, true, 0, -1.5, 'text', [], {}, [null, [{ a: [] }]], Object.assign(Object.create(null) as object, { a: 1 })]) {
      expect(parseAuditEvent({ ...event, arguments: good }).arguments).toBe(good);
    }
  });

  it(`keeps arguments nested ${AUDIT_JSON_MAX_DEPTH} levels, and puts a note in place of the deeper parts only`, () => {
    const nested = (depth: number) => JSON.parse(`${'['.repeat(depth - 1)}{"x":1}${']'.repeat(depth - 1)}`) as typeof event.arguments;
    const deepest = nested(AUDIT_JSON_MAX_DEPTH);
    expect(parseAuditEvent({ ...event, arguments: deepest }).arguments).toBe(deepest);
    const noted = JSON.parse(`${'['.repeat(AUDIT_JSON_MAX_DEPTH)}${JSON.stringify(PART_TOO_DEEP)}${']'.repeat(AUDIT_JSON_MAX_DEPTH)}`) as unknown;
    expect(parseAuditEvent({ ...event, arguments: nested(AUDIT_JSON_MAX_DEPTH + 1) }).arguments).toEqual(noted);
    // One deep sibling no longer takes the rest out of the trail (found in review: a call's real arguments beside a 2 KB
    // padding nested 1,001 levels were stored as a note alone), nor the result beside them; own __proto__ keys stay.
    const pad = `${'['.repeat(AUDIT_JSON_MAX_DEPTH + 1)}${']'.repeat(AUDIT_JSON_MAX_DEPTH + 1)}`;
    const envelope = JSON.parse(`{"arguments":{"command":"rm -rf /srv/data","__proto__":{"x":"y"},"pad":${pad}},"result":{"content":[{"type":"text","text":"done"}]}}`) as typeof event.arguments;
    for (const payload of [{ ...event, arguments: envelope }, JSON.parse(JSON.stringify(encodeAuditEventBatchV2([{ ...event, arguments: envelope }])))]) {
      const stored = ('events' in payload || 'rows' in payload ? parseAuditEventBatch(payload).valid[0] : parseAuditEvent(payload))?.arguments as Record<string, Record<string, unknown>>;
      expect(stored['arguments']?.['command']).toBe('rm -rf /srv/data');
      expect(Object.prototype.hasOwnProperty.call(stored['arguments'], '__proto__')).toBe(true);
      expect(stored['result']).toEqual({ content: [{ type: 'text', text: 'done' }] });
      expect(JSON.stringify(stored['arguments']?.['pad'])).toContain(PART_TOO_DEEP);
    }
    // Another fault of the event still makes it invalid.
    expect(() => parseAuditEvent({ ...event, tenantId: 'acme', arguments: nested(AUDIT_JSON_MAX_DEPTH + 1) })).toThrow(/tenantId/);
  });
});

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

  it('derives a batch job id from its event ids, in order', () => {
    const second = { ...event, eventId: '019a0000-0000-7000-8000-000000000002' };
    const id = jobIdFor('audit.events.ingest', { v: 1, events: [event, second] });
    expect(id).toMatch(/^audit-batch-[0-9a-f]{32}$/);
    expect(jobIdFor('audit.events.ingest', { v: 1, events: [{ ...event, tool: 'other' }, second] })).toBe(id);
    expect(jobIdFor('audit.events.ingest', { v: 1, events: [second, event] })).not.toBe(id);
    expect(jobIdFor('audit.events.ingest', { v: 1, events: [event] })).not.toBe(id);
  });

  it('accepts a batch of 1..max valid events and nothing else', () => {
    expect(parseJobPayload('audit.events.ingest', { v: 1, events: [event] })).toEqual({ v: 1, events: [event] });
    expect(() => parseJobPayload('audit.events.ingest', { v: 1, events: [] })).toThrow();
    expect(() => parseJobPayload('audit.events.ingest', { v: 2, events: [event] })).toThrow();
    expect(() => parseJobPayload('audit.events.ingest', { v: 3, events: [event] })).toThrow();
    const tooMany = Array.from({ length: AUDIT_BATCH_MAX_EVENTS + 1 }, () => event);
    expect(() => parseJobPayload('audit.events.ingest', { v: 1, events: tooMany })).toThrow();
  });

  it('parses a batch event by event, keeping invalid events apart with their id and reason', () => {
    const bad = { ...event, eventId: '019a0000-0000-7000-8000-000000000003', tenantId: 'acme' };
    const parsed = parseAuditEventBatch({ v: 1, events: [event, bad, 42] });
    expect(parsed.valid).toEqual([event]);
    expect(parsed.invalid).toEqual([
      { index: 1, raw: bad, eventId: bad.eventId, error: expect.stringContaining('tenantId') },
      { index: 2, raw: 42, eventId: null, error: expect.any(String) },
    ]);
    expect(() => parseAuditEventBatch({ v: 1, events: 'nope' })).toThrow();
    expect(() => parseAuditEventBatch([event])).toThrow();
  });

  it('keeps an event whose arguments are nested too deeply to validate, with a note in their place, and the rest of the batch', () => {
    // 2,500 levels: serialisable (the gateway sent it), but the recursive arguments schema runs out of stack on it.
    const depth = 2_500;
    const deep = { ...event, eventId: '019a0000-0000-7000-8000-000000000004', arguments: JSON.parse(`${'{"x":'.repeat(depth)}1${'}'.repeat(depth)}`) as typeof event.arguments };
    const second = { ...event, eventId: '019a0000-0000-7000-8000-000000000005' };
    // What is kept: the levels up to AUDIT_JSON_MAX_DEPTH, a note in place of the rest.
    const deepNoted = JSON.parse(`${'{"x":'.repeat(AUDIT_JSON_MAX_DEPTH)}${JSON.stringify(PART_TOO_DEEP)}${'}'.repeat(AUDIT_JSON_MAX_DEPTH)}`) as unknown;
    for (const payload of [{ v: 1, events: [event, deep, second] }, JSON.parse(JSON.stringify(encodeAuditEventBatchV2([event, deep, second])))]) {
      const parsed = parseAuditEventBatch(payload);
      expect(parsed.invalid).toEqual([]);
      expect(parsed.valid.map((e) => e.eventId)).toEqual([event.eventId, deep.eventId, second.eventId]);
      expect(parsed.valid[1]).toEqual({ ...deep, arguments: deepNoted });
      expect(parsed.valid[2]).toEqual(second);
    }
    // A single-event job too (GATEWAY_AUDIT_JOB_FORMAT=event, the control plane).
    expect(parseAuditEvent(JSON.parse(JSON.stringify(deep)))).toEqual({ ...deep, arguments: deepNoted });
    expect(parseAuditEvent(event)).toEqual(event);
    expect(() => parseAuditEvent({ ...event, tenantId: 'acme' })).toThrow();
  });

  it('encodes a v2 batch as field names once and one row per event, which parses back to the same events', () => {
    const second = { ...event, eventId: '019a0000-0000-7000-8000-000000000002', arguments: { nested: [1, { a: null }] } };
    const batch = encodeAuditEventBatchV2([event, second]);
    expect(batch.v).toBe(2);
    expect(batch.fields).toEqual(Object.keys(event).filter((key) => key !== 'v'));
    expect(batch.rows[0]).toEqual(AUDIT_EVENT_FIELDS.map((field) => event[field]));
    // Survives the trip through JSON (what BullMQ stores) and is smaller than v1.
    const wire = JSON.parse(JSON.stringify(batch)) as unknown;
    expect(parseAuditEventBatch(wire)).toEqual({ valid: [event, second], invalid: [], events: [event, second] });
    expect(parseJobPayload('audit.events.ingest', wire)).toEqual({ v: 1, events: [event, second] });
    expect(JSON.stringify(batch).length).toBeLessThan(0.75 * JSON.stringify({ v: 1, events: [event, second] }).length);
  });

  it('reads a v2 batch by its own field names: reordered columns, unknown columns skipped, bad rows apart', () => {
    const fields = ['traceparent', 'fromTheFuture', '__proto__', ...AUDIT_EVENT_FIELDS.filter((f) => f !== 'traceparent')];
    const rowOf = (e: typeof event) => [e.traceparent, 'x', { polluted: true }, ...AUDIT_EVENT_FIELDS.filter((f) => f !== 'traceparent').map((f) => e[f])];
    const short = rowOf(event).slice(0, 5);
    const parsed = parseAuditEventBatch({ v: 2, fields, rows: [rowOf(event), short, 'not a row'] });
    expect(parsed.valid).toEqual([event]);
    expect(Object.getPrototypeOf(parsed.events[0])).toBe(Object.prototype);
    expect(parsed.invalid.map((i) => [i.index, i.error])).toEqual([
      [1, `row: 5 values for ${fields.length} fields`],
      [2, 'row: not an array'],
    ]);
    // A whole event object where a row belongs is a bad row, not an event.
    expect(parseAuditEventBatch({ v: 2, fields, rows: [event] }).invalid).toMatchObject([{ index: 0, error: 'row: not an array' }]);
    expect(() => parseAuditEventBatch({ v: 2, fields: ['eventId', 'eventId'], rows: [[event.eventId, event.eventId]] })).toThrow(/distinct/);
    expect(() => parseAuditEventBatch({ v: 2, fields, rows: [] })).toThrow();
    expect(() => parseAuditEventBatch({ v: 2, rows: [rowOf(event)] })).toThrow();
    expect(() => parseJobPayload('audit.events.ingest', { v: 2, fields, rows: [rowOf(event), short] })).toThrow();
  });

  it('knows its job names', () => {
    expect(isJobName('audit.event.ingest')).toBe(true);
    expect(isJobName('audit.events.ingest')).toBe(true);
    expect(isJobName('audit.event.delete')).toBe(false);
  });

  it('refuses a handler set that misses a job of the queue', () => {
    expect(() => assertHandlersCover(QUEUES.audit, {})).toThrow(
      'no handler for job(s) audit.event.ingest, audit.events.ingest',
    );
    expect(() => assertHandlersCover(QUEUES.audit, { 'audit.event.ingest': async () => undefined })).toThrow(
      'no handler for job(s) audit.events.ingest',
    );
    const both = { 'audit.event.ingest': async () => undefined, 'audit.events.ingest': async () => undefined };
    expect(() => assertHandlersCover(QUEUES.audit, both)).not.toThrow();
  });
});
