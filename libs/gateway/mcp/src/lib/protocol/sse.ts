/** One Server-Sent Events frame. `data` is written as-is (JSON has no raw newlines once serialised). */
export function sseFrame(data: string, eventId?: string, event?: string): string {
  let frame = '';
  if (eventId !== undefined) frame += `id: ${eventId}\n`;
  if (event !== undefined) frame += `event: ${event}\n`;
  for (const line of data.split('\n')) frame += `data: ${line}\n`;
  return `${frame}\n`;
}

export interface SseEvent {
  readonly id?: string;
  readonly event: string;
  readonly data: string;
  readonly retry?: number;
}

/**
 * Incremental parser for an SSE byte stream (text decoded by the caller): feed chunks, get complete
 * events. Follows the WHATWG event-stream rules for `data`, `id`, `event`, `retry`, comments and CR/LF.
 */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private eventName = '';
  private lastId: string | undefined;
  private retry: number | undefined;

  constructor(private readonly maxEventBytes = 16 * 1024 * 1024) {}

  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    if (this.buffer.length > this.maxEventBytes) throw new Error('SSE event exceeds the size limit');
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const lf = this.buffer.indexOf('\n', start);
      const cr = this.buffer.indexOf('\r', start);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        if (cr === this.buffer.length - 1) break; // a lone CR at the end may be half of CRLF
        end = cr;
        next = this.buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else break;
      const line = this.buffer.slice(start, end);
      start = next;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      if (this.data.length === 0) {
        this.eventName = '';
        return undefined;
      }
      const event: SseEvent = {
        event: this.eventName || 'message',
        data: this.data.join('\n'),
        ...(this.lastId === undefined ? {} : { id: this.lastId }),
        ...(this.retry === undefined ? {} : { retry: this.retry }),
      };
      this.data = [];
      this.eventName = '';
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.eventName = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
    return undefined;
  }
}
