/**
 * Redis stops answering (a partition: connections stay open, no byte comes back), behind a TCP proxy of the spec's own.
 * Every Redis call on a request path is bounded: enqueueing an export answers 503 within its timeout, and cancelling one
 * (which asks the task queue about its job and drops it) goes on without the queue's answer (found by review: it
 * waited for ever).
 */
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { testContext } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

let mode: 'forward' | 'blackhole' = 'forward';
const sockets = new Set<Socket>();
const server = createServer((client) => {
  sockets.add(client);
  client.on('error', () => undefined);
  const redis = tcpConnect(Number(new URL(testContext().redisUrl).port || '6379'), '127.0.0.1');
  sockets.add(redis);
  redis.on('error', () => undefined);
  client.on('data', (chunk) => mode === 'forward' && redis.write(chunk));
  redis.on('data', (chunk) => mode === 'forward' && client.write(chunk));
  client.on('close', () => redis.destroy());
  redis.on('close', () => client.destroy());
});
let cp: ControlPlaneHarness;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(testContext().redisUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  cp = await startControlPlane({ REDIS_URL: url.toString(), CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS: '300' });
}, 60_000);

afterAll(async () => {
  mode = 'forward';
  for (const socket of sockets) socket.destroy();
  await cp?.close().catch(() => undefined);
  server.close();
});

async function within(ms: number, request: Promise<{ status: number }>): Promise<number | 'no answer'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'no answer'>((resolve) => (timer = setTimeout(() => resolve('no answer'), ms)));
  try {
    const answer = await Promise.race([request, hung]);
    return answer === 'no answer' ? answer : answer.status;
  } finally {
    clearTimeout(timer);
  }
}

describe('audit exports while Redis is partitioned', () => {
  it('answers a cancel within a bounded time, as a new export request does', async () => {
    const tenant = await cp.tenant();
    const auditor = await cp.member(tenant.id, 'auditor');
    const base = `/api/v1/tenants/${tenant.id}/audit/exports`;
    const queued = await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } });
    expect(queued.status, queued.text).toBe(202);

    mode = 'blackhole';
    try {
      // The same queue's enqueue is bounded: a 503 within its timeout.
      expect(await within(15_000, cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl' } }))).toBe(503);
      // The export queued above is cancelled without the queue's answer (its worker would see it cancelled).
      const cancelling = cp.request('POST', `${base}/${String(queued.json['id'])}/cancel`, { token: auditor.token });
      expect(await within(15_000, cancelling)).toBe(200);
      expect((await cancelling).json).toMatchObject({ id: queued.json['id'], status: 'cancelled' });
    } finally {
      mode = 'forward';
    }
  }, 60_000);
});
