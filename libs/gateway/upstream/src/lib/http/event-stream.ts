import type { Readable } from 'node:stream';
import { classify, SseParser, type Classified, type SseEvent } from '@portcullis/gateway/mcp';

/** Response headers as node:http and undici both give them (names in lower case). */
export type ResponseHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * Feeds a `text/event-stream` body through SseParser. `end` is called exactly once: with null when the
 * body ended normally, with an error when it broke (or an event exceeded `maxEventBytes`).
 */
export function consumeEventStream(
  res: Readable,
  maxEventBytes: number,
  onEvent: (event: SseEvent) => void,
  onEnd: (error: Error | null) => void,
): void {
  const parser = new SseParser(maxEventBytes);
  let ended = false;
  const end = (error: Error | null): void => {
    if (ended) return;
    ended = true;
    onEnd(error);
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
    for (const event of events) onEvent(event);
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

export const contentTypeOf = (headers: ResponseHeaders): string => {
  const raw = headers['content-type'];
  const value = typeof raw === 'string' ? raw : '';
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
};
