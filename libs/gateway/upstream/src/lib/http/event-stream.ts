import type { Readable } from 'node:stream';
import { classify, SseParser, type Classified, type SseEvent } from '@portcullis/gateway/mcp';
import { FREE_BYTES_PER_CALL, type CallHold } from './held-answers';

/** The code of the error a stream ends with when its event would pass the held-answer bounds. */
export const ANSWERS_HELD = 'EPORTCULLIS_ANSWERS_HELD';

/** Response headers as node:http and undici both give them (names in lower case). */
export type ResponseHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * Where an ended stream could be resumed from (the id of its last ended event, with or without data, as EventSource
 * keeps it) and the last `retry` it named.
 */
export interface StreamPosition {
  readonly lastEventId: string | undefined;
  readonly retryMs: number | undefined;
}

/**
 * Feeds a long-lived `text/event-stream` body through SseParser. `onEnd` is called exactly once, with where the stream
 * stood: with null when the body ended normally, with an error when it broke, an event exceeded `maxEventBytes`, or
 * part of an event was held for `maxEventMs` with no event finished meanwhile — an upstream that sends most of a
 * 16 MiB event and goes quiet would otherwise pin that memory for as long as the stream stays open (once per session).
 */
export function consumeEventStream(
  res: Readable,
  maxEventBytes: number,
  maxEventMs: number,
  onEvent: (event: SseEvent) => void,
  onEnd: (error: Error | null, position: StreamPosition) => void,
  /**
   * The stream's count in the replica's `HeldAnswers` (its tenant's): an event held past `FREE_BYTES_PER_CALL` is
   * counted, and one that would pass the bounds breaks the stream, as one past `maxEventBytes` does.
   */
  hold?: CallHold,
): void {
  const parser = new SseParser(maxEventBytes);
  let ended = false;
  let stalled: NodeJS.Timeout | undefined;
  let counted = false;
  const end = (error: Error | null): void => {
    if (ended) return;
    ended = true;
    clearTimeout(stalled);
    hold?.release();
    onEnd(error, { lastEventId: parser.lastEventId, retryMs: parser.reconnectionTime });
  };
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    if (ended) return;
    let events: SseEvent[];
    try {
      events = parser.push(chunk);
    } catch (error) {
      end(error as Error);
      res.destroy();
      return;
    }
    if (events.length > 0 || !parser.holdsPartialEvent) {
      clearTimeout(stalled);
      stalled = undefined;
    }
    if (parser.holdsPartialEvent && stalled === undefined) {
      stalled = setTimeout(() => {
        end(new Error('SSE event unfinished for too long'));
        res.destroy();
      }, maxEventMs);
      stalled.unref();
    }
    for (const event of events) onEvent(event);
    // After the chunk's whole events went out (their ids are the stream's position): the one it left unfinished is
    // what is held.
    if (!ended && hold !== undefined && (counted || parser.heldBytes > FREE_BYTES_PER_CALL)) {
      counted = true;
      if (!hold.hold(parser.heldBytes)) {
        end(Object.assign(new Error('the replica holds too many large upstream answers'), { code: ANSWERS_HELD }));
        res.destroy();
      }
    }
  });
  res.on('end', () => end(null));
  res.on('error', (error) => end(error));
  res.on('close', () => end(new Error('stream closed')));
}

/** Parses one JSON-RPC message (or a batch); undefined when the text is not JSON. */
export function parseMessages(text: string): Classified[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return Array.isArray(value) ? value.map(classify) : [classify(value)];
}

/** A Content-Type value's media type, lower case, without parameters ('' when absent). */
export const mediaTypeOf = (value: string | undefined): string => {
  if (value === undefined) return '';
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
};

export const contentTypeOf = (headers: ResponseHeaders): string => {
  const raw = headers['content-type'];
  return mediaTypeOf(typeof raw === 'string' ? raw : undefined);
};
