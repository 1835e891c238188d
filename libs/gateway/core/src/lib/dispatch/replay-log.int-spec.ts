import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '@portcullis/shared/util-logger';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { newStreamId, RedisReplayLog, REPLACED_MARK, type ReplayEntry, type ReplayLogOptions } from './replay-log';

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.quit());

const logger = createLogger({
  service: 'replay-log-int',
  level: 'silent',
  destination: { write: () => undefined },
});
const OPTIONS: ReplayLogOptions = { ttlMs: 60_000, leaseMs: 60_000, maxEntries: 100, maxBytes: 1024 * 1024, maxFollowers: 8 };
const session = () => randomBytes(32).toString('base64url');
const settle = () => redis.ping();

describe('RedisReplayLog (real Redis)', () => {
  it('keeps a stream per session: entries after an id, final flag, TTL; unknown streams and other sessions read nothing', async () => {
    const log = new RedisReplayLog(redis, OPTIONS, logger);
    const sessionId = session();
    const streamId = newStreamId('p');
    const writer = log.open(sessionId, streamId);
    writer.append(1, '{"n":1}', false);
    writer.append(2, '{"n":2}', false);
    expect(await log.finished(sessionId, streamId)).toBe(false);
    writer.append(3, '{"n":3}', true);
    await settle();
    expect(await log.read(sessionId, streamId, 1)).toEqual([
      { seq: 2, data: '{"n":2}', final: false },
      { seq: 3, data: '{"n":3}', final: true },
    ]);
    expect(await log.read(sessionId, streamId, 3)).toEqual([]);
    expect(await log.finished(sessionId, streamId)).toBe(true);
    expect(await log.read(session(), streamId, 0)).toBeUndefined();
    expect(await log.read(sessionId, newStreamId('p'), 0)).toBeUndefined();
    const ttl = await redis.pttl(`pcs:replay:${sessionId}:${streamId}`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('tells a standalone stream another took the place of (its final entry the replaced mark) from one that ended otherwise', async () => {
    const log = new RedisReplayLog(redis, OPTIONS, logger);
    const sessionId = session();
    const [replaced, ended, running] = [newStreamId('s'), newStreamId('s'), newStreamId('s')];
    log.open(sessionId, replaced).append(1, '{"n":1}', false);
    log.open(sessionId, replaced).append(2, REPLACED_MARK, true);
    log.open(sessionId, ended).append(1, '', true);
    log.open(sessionId, running).append(1, REPLACED_MARK, false);
    await settle();
    expect(await log.replaced(sessionId, replaced)).toBe(true);
    expect(await log.replaced(sessionId, ended)).toBe(false);
    expect(await log.replaced(sessionId, running)).toBe(false);
    expect(await log.replaced(session(), replaced)).toBe(false);
  });

  // A follower ends a dead writer's stream with an error per pending request, as a writer of its own. Before, that
  // writer trimmed the stream to its first entry: everything the dead writer had logged went, and an agent resuming
  // a second time (its connection dropped again) got the errors only.
  it('keeps what the writer before logged when another writer continues its stream, within the stream\'s bound', async () => {
    const log = new RedisReplayLog(redis, { ...OPTIONS, maxEntries: 5 }, logger);
    const sessionId = session();
    const streamId = newStreamId('p');
    const writer = log.open(sessionId, streamId, [7]);
    for (let seq = 1; seq <= 3; seq += 1) writer.append(seq, `{"progress":${seq}}`, false);
    await settle();
    const follower = log.open(sessionId, streamId, undefined, true);
    follower.append(4, '{"id":7,"error":{}}', true);
    await settle();
    expect((await log.read(sessionId, streamId, 1))?.map((entry) => entry.seq)).toEqual([2, 3, 4]);
    // Bounded all the same: the newest maxEntries stay.
    for (let seq = 5; seq <= 8; seq += 1) follower.append(seq, '{}', false);
    await settle();
    expect((await log.read(sessionId, streamId, 0))?.map((entry) => entry.seq)).toEqual([4, 5, 6, 7, 8]);
  });

  /** A POST stream's log, kept once before its first message (as a priming event sent by a keep-alive makes it). */
  async function keptStream(options: ReplayLogOptions) {
    const log = new RedisReplayLog(redis, options, logger);
    const sessionId = session();
    const streamId = newStreamId('p');
    const writer = log.open(sessionId, streamId);
    writer.keep?.();
    await settle();
    return { log, sessionId, streamId, key: `pcs:replay:${sessionId}:${streamId}`, writer };
  }

  it('knows a stream kept before its first message (a priming event id): empty, running, renewed, then followed', async () => {
    const { log, sessionId, streamId, key, writer } = await keptStream({ ...OPTIONS, ttlMs: 2_000 });
    expect(await log.read(sessionId, streamId, 0)).toEqual([]);
    expect(await log.finished(sessionId, streamId)).toBe(false);
    // Kept again while it waits: its lifetime starts over.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    writer.keep?.();
    await settle();
    expect(await redis.pttl(key)).toBeGreaterThan(1_500);
    const seen: ReplayEntry[] = [];
    const following = log.follow(sessionId, streamId, 0, (entry) => seen.push(entry), new AbortController().signal);
    setTimeout(() => writer.append(1, 'answer', true), 100);
    expect(await following).toBe('final');
    expect(seen).toEqual([{ seq: 1, data: 'answer', final: true }]);
    expect(await log.finished(sessionId, streamId)).toBe(true);
    // A stream never made is still unknown, and counts as finished.
    expect(await log.finished(sessionId, newStreamId('p'))).toBe(true);
  });

  it('makes a kept stream again once it is gone (a failover lost it): the renewal after finds it missing', async () => {
    const { log, sessionId, streamId, key, writer } = await keptStream(OPTIONS);
    await redis.del(key);
    // This renewal finds nothing to renew; the next one makes the stream again. (A pipeline's reply is handled a
    // little after a later command's: a short pause, where keeps are seconds apart in service.)
    writer.keep?.();
    await settle();
    await new Promise((resolve) => setTimeout(resolve, 50));
    writer.keep?.();
    await settle();
    expect(await log.read(sessionId, streamId, 0)).toEqual([]);
    expect(await log.finished(sessionId, streamId)).toBe(false);
  });

  describe("a running POST stream's writer lease", () => {
    const LEASE: ReplayLogOptions = { ...OPTIONS, leaseMs: 300 };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    /** Milliseconds the writer's lease has left, on Redis's clock. */
    async function leaseLeft(key: string): Promise<number> {
      const [[seconds, micros], until] = await Promise.all([redis.time(), redis.hget(`${key}:w`, 'until')]);
      return Number(until) - (Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000));
    }

    it.each([
      { name: 'with a blocking read', maxFollowers: 8 },
      { name: 'by polling', maxFollowers: 0 },
    ])('lapses when the writer stops renewing it: the follower reports the stream lost, and its requests ($name)', async ({ maxFollowers }) => {
      const log = new RedisReplayLog(redis, { ...LEASE, maxFollowers }, logger);
      const sessionId = session();
      const streamId = newStreamId('p');
      log.open(sessionId, streamId, [7, 'b']).keep?.();
      await settle();
      expect(await log.finished(sessionId, streamId)).toBe(false);
      // The writer dies here: nothing renews the lease any more, while the log itself lives on for a minute.
      const started = Date.now();
      expect(await log.follow(sessionId, streamId, 0, () => undefined, new AbortController().signal)).toBe('lost');
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(await redis.pttl(`pcs:replay:${sessionId}:${streamId}`)).toBeGreaterThan(50_000);
      expect(await log.pendingRequests(sessionId, streamId)).toEqual([7, 'b']);
    });

    it('reads a lease that is missing (evicted, lost in a failover) as unknown, never as a dead writer', async () => {
      const log = new RedisReplayLog(redis, LEASE, logger);
      const sessionId = session();
      const streamId = newStreamId('p');
      log.open(sessionId, streamId, [7]).keep?.();
      await settle();
      await redis.del(`pcs:replay:${sessionId}:${streamId}:w`);
      const controller = new AbortController();
      const following = log.follow(sessionId, streamId, 0, () => undefined, controller.signal);
      await sleep(1_000);
      controller.abort();
      expect(await following).toBe('aborted');
    });

    it('holds while the writer renews it, by keeps and by messages, many lease lengths long; the answer ends it', async () => {
      const log = new RedisReplayLog(redis, LEASE, logger);
      const sessionId = session();
      const streamId = newStreamId('p');
      const writer = log.open(sessionId, streamId, [1]);
      writer.keep?.();
      await settle();
      const seen: number[] = [];
      const following = log.follow(sessionId, streamId, 0, (entry) => seen.push(entry.seq), new AbortController().signal);
      // Quiet, kept every 100 ms (a keep-alive interval); then a message every 50 ms; then the answer: 2.4 s in all.
      for (let i = 0; i < 12; i++) {
        await sleep(100);
        writer.keep?.();
      }
      for (let seq = 1; seq <= 24; seq++) {
        await sleep(50);
        writer.append(seq, `{"n":${seq}}`, false);
      }
      // Four lease lengths of messages and no keep: the messages renewed it. (In service the follower looks at the
      // lease every 5 s without a message, where keeps are up to a keep-alive interval apart: it must hold meanwhile.)
      const key = `pcs:replay:${sessionId}:${streamId}`;
      await settle();
      expect(await leaseLeft(key)).toBeGreaterThan(150);
      writer.append(25, '{"answer":true}', true);
      expect(await following).toBe('final');
      expect(seen).toHaveLength(25);
      expect(await redis.exists(`${key}:w`)).toBe(0);
    });

    it('is not held by streams that answer nothing (standalone ones): those are never reported lost', async () => {
      const log = new RedisReplayLog(redis, LEASE, logger);
      const sessionId = session();
      const streamId = newStreamId('s');
      log.open(sessionId, streamId).append(1, 'a', false);
      await settle();
      const controller = new AbortController();
      const following = log.follow(sessionId, streamId, 1, () => undefined, controller.signal);
      await sleep(1_200);
      controller.abort();
      expect(await following).toBe('aborted');
      expect(await log.pendingRequests(sessionId, streamId)).toBeUndefined();
    });
  });

  it('trims the oldest entries beyond the entry and byte bounds', async () => {
    const log = new RedisReplayLog(redis, { ...OPTIONS, maxEntries: 3, maxBytes: 25 }, logger);
    const sessionId = session();
    const streamId = newStreamId('s');
    const writer = log.open(sessionId, streamId);
    for (let seq = 1; seq <= 5; seq++) writer.append(seq, `{"n":${seq}}`, false);
    await settle();
    expect((await log.read(sessionId, streamId, 0))?.map((entry) => entry.seq)).toEqual([3, 4, 5]);
    writer.append(6, `{"big":"${'x'.repeat(30)}"}`, false);
    await settle();
    // One entry over the byte bound is still kept (the newest always is).
    expect((await log.read(sessionId, streamId, 0))?.map((entry) => entry.seq)).toEqual([6]);
  });

  it.each([
    { name: 'with a blocking read', maxFollowers: 8 },
    { name: 'by polling when the blocking readers are used up', maxFollowers: 0 },
  ])('follows a live stream until its final entry $name', async ({ maxFollowers }) => {
    const log = new RedisReplayLog(redis, { ...OPTIONS, maxFollowers }, logger);
    const sessionId = session();
    const streamId = newStreamId('p');
    const writer = log.open(sessionId, streamId);
    writer.append(1, 'a', false);
    await settle();
    const seen: ReplayEntry[] = [];
    const following = log.follow(
      sessionId,
      streamId,
      1,
      (entry) => seen.push(entry),
      new AbortController().signal,
    );
    setTimeout(() => writer.append(2, 'b', false), 50);
    setTimeout(() => writer.append(3, 'c', true), 400);
    expect(await following).toBe('final');
    expect(seen.map((entry) => [entry.seq, entry.data, entry.final])).toEqual([
      [2, 'b', false],
      [3, 'c', true],
    ]);
  });

  it.each([
    { name: 'with a blocking read', maxFollowers: 8 },
    { name: 'by polling', maxFollowers: 0 },
  ])('stops following from an id past the stream\'s end once the stream has ended, not when its log expires ($name)', async ({ maxFollowers }) => {
    const log = new RedisReplayLog(redis, { ...OPTIONS, leaseMs: 600, maxFollowers }, logger);
    const sessionId = session();
    const streamId = newStreamId('p');
    const writer = log.open(sessionId, streamId, [1]);
    writer.append(1, 'progress', false);
    await settle();
    // An agent's Last-Event-ID of event 9: the stream never gets that far.
    const seen: ReplayEntry[] = [];
    const started = Date.now();
    const following = log.follow(sessionId, streamId, 9, (entry) => seen.push(entry), new AbortController().signal);
    setTimeout(() => writer.append(2, 'answer', true), 200);
    expect(await following).toBe('gone');
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(seen).toEqual([]);
    // Still running (no final entry yet) from a later id: followed as before, the answer handed over when it comes.
    const running = newStreamId('p');
    const another = new RedisReplayLog(redis, { ...OPTIONS, maxFollowers }, logger).open(sessionId, running, [2]);
    another.append(1, 'progress', false);
    await settle();
    const later: ReplayEntry[] = [];
    const followingRunning = new RedisReplayLog(redis, { ...OPTIONS, maxFollowers }, logger).follow(sessionId, running, 3, (entry) => later.push(entry), new AbortController().signal);
    setTimeout(() => another.append(4, 'answer', true), 800);
    expect(await followingRunning).toBe('final');
    expect(later).toEqual([{ seq: 4, data: 'answer', final: true }]);
  });

  it('stops following when aborted', async () => {
    const log = new RedisReplayLog(redis, OPTIONS, logger);
    const sessionId = session();
    const streamId = newStreamId('p');
    log.open(sessionId, streamId).append(1, 'a', false);
    await settle();
    const controller = new AbortController();
    const following = log.follow(sessionId, streamId, 1, () => undefined, controller.signal);
    setTimeout(() => controller.abort(), 100);
    expect(await following).toBe('aborted');
  });
});
