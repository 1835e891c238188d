import type { Redis } from 'ioredis';
import type { BusMessage, ReplicaBus } from './session-engine';

export const BROADCAST_CHANNEL = 'pcs:gateway:broadcast';
export const replicaChannel = (replicaId: string): string => `pcs:replica:${replicaId}`;

/**
 * Cross-replica messages over Redis pub/sub (ADR 0007): session ends and cancellations to every replica,
 * answers to server→client requests to the replica that relayed the request. `subscriber` must be a
 * dedicated connection (a subscribed ioredis client can do nothing else).
 */
export async function createRedisReplicaBus(options: {
  readonly publisher: Redis;
  readonly subscriber: Redis;
  readonly replicaId: string;
  readonly onMessage: (message: BusMessage) => void;
}): Promise<ReplicaBus> {
  const own = replicaChannel(options.replicaId);
  await options.subscriber.subscribe(BROADCAST_CHANNEL, own);
  options.subscriber.on('message', (channel: string, payload: string) => {
    if (channel !== BROADCAST_CHANNEL && channel !== own) return;
    try {
      options.onMessage(JSON.parse(payload) as BusMessage);
    } catch {
      // A malformed message from another version is ignored.
    }
  });
  return {
    broadcast: (message) => void options.publisher.publish(BROADCAST_CHANNEL, JSON.stringify(message)).catch(() => undefined),
    sendTo: (replicaId, message) => void options.publisher.publish(replicaChannel(replicaId), JSON.stringify(message)).catch(() => undefined),
  };
}
