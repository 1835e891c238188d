import { chmodSync, chownSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AUDIT_EVENT_FIELDS, auditBatchJobId, parseAuditEventBatch, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createAuditEmitter,
  type AuditEmitter,
  type AuditEmitterOptions,
  type AuditJob,
} from './audit-emitter';
import { FileAuditSpool, MemoryAuditSpool } from './audit-spool';

let counter = 0;
function event(): AuditEventV1 {
  counter += 1;
  const suffix = counter.toString(16).padStart(12, '0');
  return {
    v: 1,
    eventId: `019a0000-0000-7000-8000-${suffix}`,
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
    arguments: { n: suffix },
    traceId: null,
    traceparent: null,
  };
}

function validEvents(payload: unknown): AuditEventV1[] {
  const { valid, invalid } = parseAuditEventBatch(payload);
  expect(invalid).toEqual([]);
  return valid;
}

/** A producer whose reachability the test switches, recording what it accepted. */
class FakeProducer {
  up = true;
  hang = false;
  readonly accepted: AuditJob[] = [];
  calls = 0;
  async addBulk(jobs: AuditJob[]): Promise<void> {
    this.calls += 1;
    if (this.hang) return new Promise(() => undefined);
    if (!this.up) throw new Error('ECONNREFUSED');
    this.accepted.push(...jobs);
  }
  /** The events of every accepted job, decoded and checked as the worker does. */
  events(): AuditEventV1[] {
    return this.accepted.flatMap((job) => (job.name === 'audit.events.ingest' ? validEvents(job.data) : [job.data]));
  }
  ids(): string[] {
    return this.events().map((e) => e.eventId);
  }
  sizes(): number[] {
    return this.accepted.map((job) => (job.name === 'audit.events.ingest' ? validEvents(job.data).length : 1));
  }
}

const logger = { info: vi.fn(), warn: vi.fn(), error: vi.fn() };
const emitters: AuditEmitter[] = [];

function make(overrides: Partial<AuditEmitterOptions> = {}) {
  const producer = new FakeProducer();
  const spool = new MemoryAuditSpool(overrides.spoolMaxBytes ?? 1_000_000);
  let clock = 0;
  const emitter = createAuditEmitter({
    producer,
    maxBuffer: 100,
    flushEveryMs: 60_000, // flushed explicitly by the tests
    batchSize: 10,
    spoolDir: null,
    spoolMaxBytes: 1_000_000,
    logger,
    spool,
    sendTimeoutMs: 50,
    probeEveryMs: 1_000,
    now: () => clock,
    ...overrides,
  });
  emitters.push(emitter);
  return { emitter, producer, spool, advance: (ms: number) => (clock += ms) };
}

afterEach(async () => {
  await Promise.all(emitters.splice(0).map((e) => e.close()));
  vi.clearAllMocks();
});

describe('audit emitter', () => {
  it('buffers without waiting and flushes one batch job per batch, its id derived from its event ids', async () => {
    const { emitter, producer } = make();
    const events = Array.from({ length: 25 }, event);
    for (const e of events) expect(emitter.emit(e)).toBe('buffered');
    await emitter.flush();
    expect(producer.ids()).toEqual(events.map((e) => e.eventId));
    const first = events.slice(0, 10);
    // Payload v2: the field names once, then one row of values per event, which decode to the events sent.
    expect(producer.accepted[0]).toEqual({
      name: 'audit.events.ingest',
      data: { v: 2, fields: AUDIT_EVENT_FIELDS, rows: first.map((e) => AUDIT_EVENT_FIELDS.map((field) => e[field])) },
      opts: { jobId: auditBatchJobId(first.map((e) => e.eventId)), attempts: 5, backoff: { type: 'exponential', delay: 1_000 } },
    });
    expect(producer.events()).toEqual(events);
    // 25 events in jobs of at most 10 (the first may start as soon as 10 are buffered).
    expect(producer.sizes().every((n) => n <= 10)).toBe(true);
    expect(producer.accepted.length).toBeGreaterThanOrEqual(3);
    expect(emitter.stats()).toMatchObject({ sent: 25, buffered: 0, spooled: 0, dropped: 0, redis: 'up' });
    expect(emitter.stats().jobs).toBe(producer.accepted.length);
  });

  it('sends what was buffered when a flush began; events emitted during its send wait for the next flush', async () => {
    const producer = new FakeProducer();
    let release: () => void = () => undefined;
    const firstSend = new Promise<void>((resolve) => (release = resolve));
    const sent: number[] = [];
    const slow = {
      // The first send waits for the test; later ones answer at once.
      addBulk: async (jobs: AuditJob[]) => {
        if (sent.length === 0) await firstSend;
        await producer.addBulk(jobs);
        sent.push(producer.ids().length);
      },
    };
    const gated = createAuditEmitter({ producer: slow, maxBuffer: 100, flushEveryMs: 60_000, batchSize: 10, spoolDir: null, spoolMaxBytes: 1_000_000, logger });
    emitters.push(gated);
    for (let i = 0; i < 3; i++) gated.emit(event());
    const first = gated.flush();
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 2; i++) gated.emit(event()); // while the first send is in flight
    release();
    await first;
    expect(sent).toEqual([3]);
    expect(gated.stats()).toMatchObject({ sent: 3, buffered: 2, jobs: 1 });
    await gated.flush();
    expect(sent).toEqual([3, 5]);
    expect(gated.stats()).toMatchObject({ sent: 5, buffered: 0, jobs: 2 });
  });

  it('bounds a job by bytes: a flush that would exceed maxJobBytes becomes several jobs', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer } = make({ batchSize: 10, maxJobBytes: one * 3 + 1 });
    const events = Array.from({ length: 10 }, event);
    for (const e of events) emitter.emit(e);
    await emitter.flush();
    expect(producer.sizes()).toEqual([3, 3, 3, 1]);
    expect(producer.calls).toBe(1); // still one round trip for the flush
    expect(producer.ids()).toEqual(events.map((e) => e.eventId));
    // An event bigger than the bound on its own still goes, alone.
    const big = { ...event(), arguments: { blob: 'x'.repeat(one * 4) } };
    emitter.emit(big);
    emitter.emit(event());
    await emitter.flush();
    expect(producer.sizes().slice(4)).toEqual([1, 1]);
  });

  it('cuts jobs by the size hints given with the events, when there are some', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer } = make({ batchSize: 10, maxJobBytes: one * 3 + 1 });
    // Hinted at 1.4 × their measured size: two fit in a job where three would by measure.
    for (let i = 0; i < 6; i++) emitter.emit(event(), Math.floor(one * 1.4));
    await emitter.flush();
    expect(producer.sizes()).toEqual([2, 2, 2]);
  });

  it('keeps each size hint with its own event across flushes, and measures the events that came without one', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer } = make({ batchSize: 4, maxJobBytes: one * 3 });
    // Hinted at twice their size: such an event fills a job with one other unhinted event at most.
    const hinted = [true, false, false, true, false, true];
    for (const big of hinted) emitter.emit(event(), big ? one * 2 : undefined);
    await emitter.flush();
    // First flush [big, small, small, big] → [big] [small, small] [big]; then [small, big] → [small] [big].
    expect(producer.sizes()).toEqual([1, 2, 1, 1, 1]);
  });

  it("sends batch payload v1 (event objects) with jobFormat 'batch-v1' (workers older than v2), the same job ids", async () => {
    const { emitter, producer } = make({ jobFormat: 'batch-v1' });
    const events = Array.from({ length: 4 }, event);
    for (const e of events) emitter.emit(e);
    await emitter.flush();
    expect(producer.accepted).toEqual([
      { name: 'audit.events.ingest', data: { v: 1, events }, opts: { jobId: auditBatchJobId(events.map((e) => e.eventId)), attempts: 5, backoff: { type: 'exponential', delay: 1_000 } } },
    ]);
  });

  it("sends one job per event with jobFormat 'event' (workers older than batch jobs)", async () => {
    const { emitter, producer } = make({ jobFormat: 'event' });
    const events = Array.from({ length: 3 }, event);
    for (const e of events) emitter.emit(e);
    await emitter.flush();
    expect(producer.accepted).toEqual(
      events.map((e) => ({ name: 'audit.event.ingest', data: e, opts: { jobId: `audit-${e.eventId}`, attempts: 5, backoff: { type: 'exponential', delay: 1_000 } } })),
    );
  });

  it('spools while Redis is unreachable and replays the spool when it returns', async () => {
    const { emitter, producer, spool, advance } = make();
    producer.up = false;
    const events = Array.from({ length: 30 }, event);
    for (const e of events) emitter.emit(e);
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ redis: 'down', spooled: 30, sent: 0 });
    expect(producer.calls).toBe(1); // one failed attempt, then straight to the spool until the next probe
    expect(spool.hasPending()).toBe(true);
    expect(logger.warn).toHaveBeenCalledWith(
      expect.anything(),
      'audit queue unreachable: spooling events locally',
    );

    producer.up = true;
    advance(1_000);
    const later = Array.from({ length: 5 }, event);
    for (const e of later) emitter.emit(e);
    await emitter.flush();
    expect(spool.hasPending()).toBe(false);
    expect(new Set(producer.ids())).toEqual(new Set([...events, ...later].map((e) => e.eventId)));
    expect(emitter.stats()).toMatchObject({ redis: 'up', replayed: 30, sent: 5, dropped: 0 });
  });

  it('treats a send that does not answer as a failure (spools) instead of waiting', async () => {
    const { emitter, producer } = make();
    producer.hang = true;
    emitter.emit(event());
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ redis: 'down', spooled: 1 });
  });

  it('spools synchronously when the buffer is full, and counts drops when the spool is full too', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer } = make({ maxBuffer: 5, batchSize: 100, spoolMaxBytes: one * 3 });
    producer.up = false;
    const results = Array.from({ length: 10 }, () => emitter.emit(event()));
    expect(results.slice(0, 5)).toEqual(Array(5).fill('buffered'));
    expect(results.slice(5, 8)).toEqual(Array(3).fill('spooled'));
    expect(results.slice(8)).toEqual(['dropped', 'dropped']);
    expect(emitter.stats().dropped).toBe(2);
    expect(logger.error).toHaveBeenCalledWith(
      expect.objectContaining({ dropped: 1, droppedTotal: 1 }), // the first drop at once, later ones every 10 s
      'audit events dropped: buffer and spool are full',
    );
  });

  it('can accept fail-closed calls only while an event can certainly be kept', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer, advance } = make({ maxBuffer: 2, batchSize: 100, spoolMaxBytes: one * 2 });
    expect(emitter.canAcceptFailClosed()).toBe(true);
    producer.up = false;
    emitter.emit(event());
    await emitter.flush(); // Redis found down; the event is spooled (1 of 2 slots)
    expect(emitter.stats().redis).toBe('down');
    expect(emitter.canAcceptFailClosed()).toBe(true);
    emitter.emit(event()); // buffered, and will need the last spool slot
    expect(emitter.canAcceptFailClosed()).toBe(false);
    await emitter.flush();
    expect(emitter.canAcceptFailClosed()).toBe(false); // spool full
    producer.up = true;
    advance(1_000);
    await emitter.flush(); // replay empties the spool
    expect(emitter.canAcceptFailClosed()).toBe(true);
  });

  it('counts the events of calls admitted earlier and still running against the room left', async () => {
    // Until something is spooled the emitter reckons 1 KiB an event: the spool holds three.
    const { emitter, producer } = make({ maxBuffer: 2, batchSize: 100, spoolMaxBytes: 3 * 1_024 });
    // Redis up: the buffer takes two events, the spool three more.
    expect(emitter.canAcceptFailClosed(1)).toBe(true);
    expect(emitter.canAcceptFailClosed(4)).toBe(true);
    expect(emitter.canAcceptFailClosed(5)).toBe(false);
    // Redis down: everything goes to the spool, at the size of the events spooled so far.
    producer.up = false;
    emitter.emit(event());
    await emitter.flush();
    expect(emitter.stats().redis).toBe('down');
    const one = emitter.stats().spoolBytes;
    const room = Math.floor((3 * 1_024 - one) / one);
    expect(emitter.canAcceptFailClosed(room - 1)).toBe(true);
    expect(emitter.canAcceptFailClosed(room)).toBe(false);
  });

  it('keeps spool room for the event of a fail-closed call admitted earlier: other events cannot take it meanwhile', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer } = make({ maxBuffer: 100, batchSize: 100, spoolMaxBytes: one * 3 });
    producer.up = false;
    emitter.emit(event());
    await emitter.flush(); // Redis found down; the size estimate is now one event's
    expect(emitter.canAcceptFailClosed()).toBe(true);
    emitter.reserve(); // a fail-closed call admitted: it runs (or waits for approval) a while
    // Meanwhile other tenants' events arrive: they may take the spool but the reserved room.
    for (let i = 0; i < 10; i++) emitter.emit(event());
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ spooled: 2, dropped: 9 });
    expect(emitter.canAcceptFailClosed()).toBe(false);
    // The call's own event is kept.
    const own = event();
    emitter.emit(own, undefined, true);
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ spooled: 3, dropped: 9 });
  });

  it('cannot accept fail-closed calls while the spool fails to write (disk full), and can once it writes again', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pcs-spool-'));
    try {
      // Every write to /dev/full fails with ENOSPC; the spool's size never grows, so room alone would look ample.
      symlinkSync('/dev/full', path.join(dir, 'audit-spool.jsonl'));
      const { emitter, producer, advance } = make({ spool: new FileAuditSpool(dir, 1_000_000) });
      producer.up = false;
      emitter.emit(event());
      await emitter.flush(); // Redis found down; spooling the event fails
      expect(emitter.stats()).toMatchObject({ redis: 'down', spooled: 0, dropped: 1 });
      expect(emitter.canAcceptFailClosed()).toBe(false);
      // Still failing: the next flush's probe writes to the same full device.
      advance(1_000);
      await emitter.flush();
      expect(emitter.canAcceptFailClosed()).toBe(false);
      expect(logger.error).toHaveBeenCalledWith(expect.anything(), expect.stringContaining('audit spool cannot be written'));
      // The disk takes writes again (here: the path is a regular file again); the next flush finds out.
      rmSync(path.join(dir, 'audit-spool.jsonl'));
      await emitter.flush();
      expect(emitter.canAcceptFailClosed()).toBe(true);
      expect(emitter.stats().spoolBytes).toBe(0); // the probe left nothing behind
      emitter.emit(event());
      await emitter.flush();
      expect(emitter.stats()).toMatchObject({ spooled: 1, dropped: 1 });
      expect(emitter.canAcceptFailClosed()).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cannot accept fail-closed calls after the spool refused an event for room, until it keeps events again', async () => {
    const one = Buffer.byteLength(JSON.stringify(event())) + 1;
    const { emitter, producer, advance } = make({ spoolMaxBytes: one * 4 });
    producer.up = false;
    emitter.emit(event());
    await emitter.flush(); // spooled: room for three more events of its size
    expect(emitter.canAcceptFailClosed()).toBe(true);
    const large = { ...event(), arguments: { text: 'x'.repeat(one * 4) } };
    emitter.emit(large);
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ spooled: 1, dropped: 1 });
    // The size estimate still sees room for three, but the spool has just lost an event.
    expect(emitter.canAcceptFailClosed()).toBe(false);
    emitter.emit(event());
    await emitter.flush(); // kept whole again
    expect(emitter.stats()).toMatchObject({ spooled: 2, dropped: 1 });
    expect(emitter.canAcceptFailClosed()).toBe(true);
    // Refused again; then Redis returns and the replay empties the spool: room again.
    emitter.emit(large);
    await emitter.flush();
    expect(emitter.canAcceptFailClosed()).toBe(false);
    producer.up = true;
    advance(1_000);
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ redis: 'up', spoolBytes: 0 });
    expect(emitter.canAcceptFailClosed()).toBe(true);
  });

  it('close() flushes what is buffered and refuses later events', async () => {
    const { emitter, producer } = make();
    const events = Array.from({ length: 7 }, event);
    for (const e of events) emitter.emit(e);
    await emitter.close();
    expect(producer.ids()).toEqual(events.map((e) => e.eventId));
    expect(emitter.emit(event())).toBe('dropped');
    expect(emitter.canAcceptFailClosed()).toBe(false);
  });

  it('keeps the unsent rest in the spool when a replay fails half-way', async () => {
    const { emitter, producer, spool, advance } = make({ batchSize: 5 });
    producer.up = false;
    for (let i = 0; i < 20; i += 1) emitter.emit(event());
    await emitter.flush();
    expect(emitter.stats().spooled).toBe(20);
    producer.up = true;
    advance(1_000);
    const addBulk = producer.addBulk.bind(producer);
    let calls = 0;
    producer.addBulk = async (jobs) => {
      calls += 1;
      if (calls === 3) throw new Error('ECONNRESET');
      return addBulk(jobs);
    };
    await emitter.flush();
    expect(emitter.stats().redis).toBe('down');
    expect(spool.hasPending()).toBe(true);
    advance(1_000);
    await emitter.flush();
    expect(spool.hasPending()).toBe(false);
    expect(new Set(producer.ids()).size).toBe(20);
  });
});

const ACTIVE = 'audit-spool.jsonl';

async function replayAll(spool: FileAuditSpool): Promise<{ events: AuditEventV1[]; corrupt: number }> {
  const events: AuditEventV1[] = [];
  const { corrupt } = await spool.replay(async (batch) => void events.push(...batch), 100);
  return { events, corrupt };
}

describe('FileAuditSpool', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pcs-spool-'));
    dirs.push(dir);
    return dir;
  };

  // Found by review: Node's bare EEXIST / ENOTDIR stopped the gateway, the variable never named.
  it('names GATEWAY_AUDIT_SPOOL_DIR when the directory cannot be made: a file there, a file above it', () => {
    const file = path.join(tempDir(), 'spool');
    writeFileSync(file, '');
    expect(() => new FileAuditSpool(file, 1_000_000)).toThrow(/^audit spool directory .* cannot be made \(EEXIST\): give GATEWAY_AUDIT_SPOOL_DIR/);
    expect(() => new FileAuditSpool(path.join(file, 'below'), 1_000_000)).toThrow(/cannot be made \(ENOTDIR\): give GATEWAY_AUDIT_SPOOL_DIR/);
  });

  // ops review: the spool holds every tenant's events (tool arguments and results) while Redis is away; it was made
  // with the umask only (0755 / 0644 under 022), readable by any local user, the stdio upstream servers run as other
  // users (GATEWAY_STDIO_RUN_AS / GATEWAY_STDIO_UID_RANGE) included. The audit worker's exports are 0640.
  describe('who may read the spooled events', () => {
    const modeOf = (file: string): string => (statSync(file).mode & 0o777).toString(8);
    let previousUmask = 0;
    beforeEach(() => {
      previousUmask = process.umask(0o022);
    });
    afterEach(() => {
      process.umask(previousUmask);
    });

    it('keeps the spool directory and its files from other users, whatever the umask', async () => {
      const dir = path.join(tempDir(), 'spool');
      const spool = new FileAuditSpool(dir, 1_000_000);
      expect(spool.append([event(), event()]).written).toBe(2);
      const modes = { dir: modeOf(dir), file: modeOf(path.join(dir, ACTIVE)) };
      await spool.close();
      // No access at all for "other" (o=---), as the audit exports (0640).
      expect({ dirOther: Number.parseInt(modes.dir, 8) & 0o007, fileOther: Number.parseInt(modes.file, 8) & 0o007 }, JSON.stringify(modes)).toEqual({ dirOther: 0, fileOther: 0 });
      expect(modes).toEqual({ dir: '700', file: '600' });
    });

    it('a replay file is 0600 too, and the fresh active file after it', async () => {
      const dir = tempDir();
      const spool = new FileAuditSpool(dir, 1_000_000);
      spool.append([event()]);
      const seen: string[] = [];
      await spool.replay(async () => {
        for (const name of readdirSync(dir)) seen.push(`${name}:${modeOf(path.join(dir, name))}`);
      }, 100);
      await spool.close();
      expect(seen.map((entry) => entry.replace(/\.\d{13}-\d{6}\./, '.N.')).sort()).toEqual(['audit-spool.N.replay.jsonl:600', 'audit-spool.jsonl:600']);
    });

    it('tightens a directory and files an older gateway (or a volume mount) left open to others', async () => {
      const dir = tempDir();
      chmodSync(dir, 0o755);
      writeFileSync(path.join(dir, ACTIVE), `${JSON.stringify(event())}\n`, { mode: 0o644 });
      const replayFile = path.join(dir, 'audit-spool.1764000000000-000000.replay.jsonl');
      writeFileSync(replayFile, `${JSON.stringify(event())}\n`, { mode: 0o644 });
      const spool = new FileAuditSpool(dir, 1_000_000);
      expect({ dir: modeOf(dir), active: modeOf(path.join(dir, ACTIVE)), replay: modeOf(replayFile) }).toEqual({ dir: '700', active: '600', replay: '600' });
      expect((await replayAll(spool)).events).toHaveLength(2);
      await spool.close();
    });

    it('refuses a shared sticky directory (such as /tmp) rather than taking it over, naming it', () => {
      const dir = path.join(tempDir(), 'shared');
      mkdirSync(dir);
      chmodSync(dir, 0o1777);
      expect(() => new FileAuditSpool(dir, 1_000_000)).toThrow(new RegExp(`audit spool directory ${dir} is shared .*GATEWAY_AUDIT_SPOOL_DIR`));
      expect(modeOf(dir)).toBe('777');
    });

    // Another user who owns a directory above the spool (a deploy user's /srv/portcullis) could point it at a directory
    // of root's (chmod-ed 0700, every tenant's events written into it), or swap the gateway's spool directory for one of
    // theirs after start so that a replay sent their forged events into a tenant's trail (found in review). Refused at
    // start; the path stays the gateway's, as only root or its user may change directories that pass.
    it.runIf(process.getuid?.() === 0)('refuses a spool path that is a symlink, or lies under a directory another user controls, touching nothing', async () => {
      const base = tempDir();
      chmodSync(base, 0o755);
      const target = path.join(base, 'target');
      mkdirSync(target, { mode: 0o755 });
      chmodSync(target, 0o755);
      const parent = path.join(base, 'srv');
      mkdirSync(parent, { mode: 0o755 });
      chownSync(parent, 65534, 65534);
      const linked = path.join(parent, 'spool');
      symlinkSync(target, linked);
      lchownSync(linked, 65534, 65534);
      expect(() => new FileAuditSpool(linked, 1_000_000)).toThrow(/symbolic link|lies under/);
      expect({ targetMode: modeOf(target), spoolFileInTarget: existsSync(path.join(target, ACTIVE)) }).toEqual({ targetMode: '755', spoolFileInTarget: false });
      // The directory itself the gateway's, the one above another user's: refused too (they could swap it after start).
      const fresh = path.join(parent, 'fresh');
      expect(() => new FileAuditSpool(fresh, 1_000_000)).toThrow(new RegExp(`lies under ${parent} .*owner uid 65534`));
      // A symlink the gateway's own user made is refused as well: the spool is named by the directory itself.
      const ownLink = path.join(base, 'own-link');
      symlinkSync(target, ownLink);
      expect(() => new FileAuditSpool(ownLink, 1_000_000)).toThrow(/symbolic link/);
      // Group- or world-writable above it without the sticky bit: anyone in it could rename the spool away.
      const open = path.join(base, 'open');
      mkdirSync(open);
      chmodSync(open, 0o777);
      expect(() => new FileAuditSpool(path.join(open, 'spool'), 1_000_000)).toThrow(/lies under/);
      expect(modeOf(target)).toBe('755');
    });

    // Its owner could swap the spool's files at will (a symlink where the active file goes): a gateway running as root
    // took another user's 0700 directory, fchmod-ed the link's target to 0600 and appended every tenant's events to it
    // (found in review). Only as root can a spec make a directory of another user.
    it.runIf(process.getuid?.() === 0)('refuses another user\'s directory even when it is 0700 already, touching nothing in it', async () => {
      const base = tempDir();
      const victim = path.join(base, 'victim.conf');
      writeFileSync(victim, 'important=1\n', { mode: 0o644 });
      const spoolDir = path.join(base, 'spool');
      mkdirSync(spoolDir, { mode: 0o700 });
      symlinkSync(victim, path.join(spoolDir, ACTIVE));
      chownSync(spoolDir, 65534, 65534);
      chmodSync(spoolDir, 0o700);
      let spool: FileAuditSpool | undefined;
      let refused: unknown;
      try {
        spool = new FileAuditSpool(spoolDir, 1_000_000);
      } catch (error) {
        refused = error;
      }
      await spool?.close();
      expect({ refused: refused instanceof Error ? /owner uid 65534/.test(refused.message) : false, victimMode: modeOf(victim), victim: readFileSync(victim, 'utf8') }).toEqual({
        refused: true,
        victimMode: '644',
        victim: 'important=1\n',
      });
    });
  });

  it('ends a line cut off by a crash before appending, so the next event is not lost with it', async () => {
    const dir = tempDir();
    const first = event();
    const second = event();
    writeFileSync(path.join(dir, ACTIVE), `${JSON.stringify(first)}\n{"v":1,"eventId":"019a0000-00`);
    const spool = new FileAuditSpool(dir, 1_000_000);
    expect(spool.append([second])).toEqual({ written: 1, refused: 0 });
    const { events, corrupt } = await replayAll(spool);
    expect(events.map((e) => e.eventId)).toEqual([first.eventId, second.eventId]);
    expect(corrupt).toBe(1);
    await spool.close();
  });

  it('refuses events it cannot write (disk full) instead of throwing', async () => {
    const dir = tempDir();
    // Every write to /dev/full fails with ENOSPC.
    symlinkSync('/dev/full', path.join(dir, ACTIVE));
    const spool = new FileAuditSpool(dir, 1_000_000);
    expect(() => spool.append([event(), event()])).not.toThrow();
    expect(spool.append([event()])).toEqual({ written: 0, refused: 1 });
    expect(spool.hasPending()).toBe(false);
    expect(spool.writable).toBe(false);
    expect(spool.probe()).toBe(false);
    await spool.close();
  });

  it('a probe reopens the file by its path, ends a line a failed write cut off, and leaves a whole file as it was', async () => {
    const dir = tempDir();
    symlinkSync('/dev/full', path.join(dir, ACTIVE));
    const spool = new FileAuditSpool(dir, 1_000_000);
    spool.append([event()]);
    expect(spool.writable).toBe(false);
    // The path is a file again, holding a line cut off mid-write (as a write that failed half-way leaves one).
    const first = event();
    rmSync(path.join(dir, ACTIVE));
    writeFileSync(path.join(dir, ACTIVE), `${JSON.stringify(first)}\n{"v":1,"eventId":"019a0000-00`);
    const cutOff = Buffer.byteLength(`${JSON.stringify(first)}\n{"v":1,"eventId":"019a0000-00`);
    expect(spool.probe()).toBe(true);
    expect(spool.writable).toBe(true);
    expect(spool.bytes).toBe(cutOff + 1);
    expect(spool.probe()).toBe(true); // whole lines now: the probe's line end is taken back
    expect(spool.bytes).toBe(cutOff + 1);
    const second = event();
    expect(spool.append([second])).toEqual({ written: 1, refused: 0 });
    const { events, corrupt } = await replayAll(spool);
    expect(events.map((e) => e.eventId)).toEqual([first.eventId, second.eventId]);
    expect(corrupt).toBe(1);
    await spool.close();
  });
});
