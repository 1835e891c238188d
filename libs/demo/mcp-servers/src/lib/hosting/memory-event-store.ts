import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

interface StoredEvent {
  readonly id: string;
  readonly streamId: string;
  readonly message: JSONRPCMessage;
}

/**
 * The events of one Streamable HTTP session, kept so that a client can resume a stream with `Last-Event-ID`
 * (and so that the SDK sends priming events and lets a handler close its stream mid-call, SEP-1699). Holds the
 * last `limit` events; an id older than that cannot be resumed.
 */
export class MemoryEventStore implements EventStore {
  private readonly events: StoredEvent[] = [];
  private seq = 0;

  constructor(private readonly limit = 1_000) {}

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const id = `${streamId}.${++this.seq}`;
    this.events.push({ id, streamId, message });
    if (this.events.length > this.limit) this.events.shift();
    return id;
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.events.find((event) => event.id === eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const at = this.events.findIndex((event) => event.id === lastEventId);
    if (at < 0) throw new Error('unknown event id');
    const { streamId } = this.events[at] as StoredEvent;
    for (const event of this.events.slice(at + 1)) {
      // The SDK stores a stream's priming event as `{}`: a resumption point, not a message to send again.
      if (event.streamId === streamId && Object.keys(event.message).length > 0) await send(event.id, event.message);
    }
    return streamId;
  }
}
