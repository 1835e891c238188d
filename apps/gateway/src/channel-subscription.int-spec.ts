/**
 * The gateway's channel subscription against a real Redis whose ACL refuses the channels to the subscriber's user (the
 * lasting failure on a ready connection): attempts back off instead of repeating every few seconds, the subscription
 * comes once the ACL allows it, and a reconnect renews it and asks for a catch-up.
 */
import { randomBytes } from 'node:crypto';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createLogger } from '@portcullis/shared/util-logger';
import { waitFor } from '@portcullis/shared/util-testing';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ChannelSubscription } from './channel-subscription';

const suffix = randomBytes(4).toString('hex');
const user = `pcs-spec-channels-${suffix}`;
const channel = `pcs-spec-channel-${suffix}`;
const admin = createRedisClient({ url: inject('redisUrl'), connectionName: 'channel-subscription-spec' });
let subscriber: Redis | undefined;
let subscription: ChannelSubscription | undefined;

afterAll(async () => {
  subscription?.stop();
  subscriber?.disconnect();
  await admin.call('ACL', 'DELUSER', user);
  await admin.quit();
});

describe('ChannelSubscription (real Redis, channels refused by ACL)', () => {
  it('backs off while SUBSCRIBE is refused on a ready connection, subscribes once allowed, and renews after a reconnect', async () => {
    // Every command and key, no channel.
    await admin.call('ACL', 'SETUSER', user, 'on', 'nopass', '~*', '+@all', 'resetchannels');
    const url = new URL(inject('redisUrl'));
    url.username = user;
    url.password = 'unused';
    subscriber = createRedisClient({ url: url.toString(), connectionName: 'channel-subscription-spec-sub' });
    const connection = subscriber;
    await waitFor(() => connection.status === 'ready', { timeoutMs: 5_000, description: 'the subscriber connected' });

    let logs = '';
    const logger = createLogger({ service: 'spec', level: 'info', destination: { write: (chunk: string) => void (logs += chunk) } });
    const attempts: number[] = [];
    const caughtUp: boolean[] = [];
    subscription = new ChannelSubscription({
      connection,
      logger,
      retry: { firstMs: 50, maxMs: 400 },
      subscribe: async () => {
        attempts.push(Date.now());
        await connection.subscribe(channel);
      },
      onSubscribed: (now) => caughtUp.push(now),
    });

    expect(await subscription.start()).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    // 50, 100, 200, 400, 400, 400 ms apart: about seven attempts in 1.6 s, where a fixed 50 ms made thirty.
    expect(attempts.length).toBeGreaterThanOrEqual(4);
    expect(attempts.length).toBeLessThanOrEqual(10);
    const gaps = attempts.slice(1).map((at, index) => at - (attempts[index] ?? at));
    expect(gaps[0]).toBeGreaterThanOrEqual(45);
    expect(Math.max(...gaps)).toBeGreaterThanOrEqual(350);
    const failures = logs
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; failures?: number; retryInMs?: number })
      .filter((entry) => entry.msg.startsWith('could not subscribe'));
    expect(failures.map((entry) => entry.retryInMs).slice(0, 5)).toEqual([50, 100, 200, 400, 400]);
    expect(subscription.subscribed).toBe(false);
    expect(caughtUp).toEqual([]);

    // Allowed: the next attempt (at most 400 ms on) subscribes, and the catch-up runs.
    await admin.call('ACL', 'SETUSER', user, 'allchannels');
    await waitFor(() => subscription?.subscribed === true, { timeoutMs: 2_000, description: 'subscribed once the ACL allows it' });
    expect(caughtUp).toEqual([true]);
    const subscribers = async () => Number(((await admin.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]);
    expect(await subscribers()).toBe(1);
    const attemptsWhenSubscribed = attempts.length;

    // The connection dropped and back: ioredis renews the subscription itself; notices of the gap call for a catch-up.
    await admin.call('CLIENT', 'KILL', 'USER', user);
    await waitFor(() => caughtUp.length === 2, { timeoutMs: 5_000, description: 'the catch-up after the reconnect' });
    expect(caughtUp).toEqual([true, false]);
    await waitFor(async () => (await subscribers()) === 1, { timeoutMs: 2_000, description: 'subscribed again after the reconnect' });
    expect(attempts.length).toBe(attemptsWhenSubscribed);
  }, 20_000);
});

describe('ChannelSubscription: a reconnect that subscribes while a retry is pending', () => {
  it('drops the pending retry, so the catch-up runs once, not again when the retry fires', async () => {
    const name = `pcs-spec-channels-retry-${randomBytes(4).toString('hex')}`;
    const retryChannel = `pcs-spec-channel-retry-${randomBytes(4).toString('hex')}`;
    await admin.call('ACL', 'SETUSER', name, 'on', 'nopass', '~*', '+@all', 'resetchannels');
    const url = new URL(inject('redisUrl'));
    url.username = name;
    url.password = 'unused';
    const connection = createRedisClient({ url: url.toString(), connectionName: 'channel-subscription-spec-retry' });
    const caughtUp: boolean[] = [];
    const logger = createLogger({ service: 'spec', level: 'silent' });
    const pending = new ChannelSubscription({
      connection,
      logger,
      // The first retry would come 1.5 s after the refusal: the reconnect below comes well before it.
      retry: { firstMs: 1_500, maxMs: 1_500 },
      subscribe: async () => void (await connection.subscribe(retryChannel)),
      onSubscribed: (now) => caughtUp.push(now),
    });
    try {
      await waitFor(() => connection.status === 'ready', { timeoutMs: 5_000, description: 'connected' });
      expect(await pending.start()).toBe(false);
      await admin.call('ACL', 'SETUSER', name, 'allchannels');
      await admin.call('CLIENT', 'KILL', 'USER', name);
      await waitFor(() => pending.subscribed, { timeoutMs: 5_000, description: 'subscribed on the reconnect' });
      expect(caughtUp).toEqual([true]);
      // Past the moment the retry would have fired.
      await new Promise((resolve) => setTimeout(resolve, 1_800));
      expect(caughtUp).toEqual([true]);
    } finally {
      pending.stop();
      connection.disconnect();
      await admin.call('ACL', 'DELUSER', name);
    }
  }, 15_000);
});
