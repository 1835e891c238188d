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
 *
 * The stream is an upstream's, so it is held to `maxEventBytes` (UTF-8 bytes, as they came on the wire) as a whole
 * event (its data, event and id lines so far plus the unfinished line), not per line: an event whose blank line never
 * comes cannot grow without bound. An id over MAX_EVENT_ID_CHARS is ignored, so the id kept from one event to the next
 * stays small. Each chunk is scanned once (an unfinished line is kept as pieces, joined when it ends), so the work is
 * linear in the stream however the bytes are split into chunks.
 */
export class SseParser {
  /**
   * The unfinished line, as the chunks brought it (the first `joinedPending` entries are each JOINED_AT_ONCE pieces
   * joined already), and its size in UTF-8 bytes.
   */
  private pending: string[] = [];
  private joinedPending = 0;
  private pendingBytes = 0;
  /** The last chunk ended with CR: an LF at the start of the next one is the rest of that CRLF. */
  private skipLf = false;
  /** The event's data lines; the first `joinedData` entries are each JOINED_AT_ONCE lines joined already. */
  private data: string[] = [];
  private joinedData = 0;
  /** What the event holds so far, in UTF-8 bytes: its data lines with their line feeds, its event and id lines' values. */
  private eventBytes = 0;
  private eventName = '';
  private lastId: string | undefined;
  private retry: number | undefined;
  private dispatchedId: string | undefined;
  /** Whether any text came yet: a byte order mark that opens the stream is dropped, as EventSource does. */
  private started = false;

  constructor(private readonly maxEventBytes = 16 * 1024 * 1024) {}

  /**
   * The id a client resumes this stream from: the last `id` of an event that ended (its blank line came), with data or
   * without (a priming event may carry no data line at all), as EventSource's last event ID string.
   */
  get lastEventId(): string | undefined {
    return this.dispatchedId;
  }

  /** The last `retry` the stream named (milliseconds), if any. */
  get reconnectionTime(): number | undefined {
    return this.retry;
  }

  /** UTF-8 bytes held of the event under way (its unfinished line and its lines so far). */
  get heldBytes(): number {
    return this.pendingBytes + this.eventBytes;
  }

  /** Whether part of an event (an unfinished line, or data, event or id lines without their blank line) is held. */
  get holdsPartialEvent(): boolean {
    return this.pendingBytes > 0 || this.eventBytes > 0;
  }

  push(chunk: string): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    if (!this.started && chunk.length > 0) {
      this.started = true;
      // Else the first line's field name began with U+FEFF and was ignored: a legacy upstream's `endpoint` event was
      // taken for a message (its handshake timed out), an answer's first event was lost.
      if (chunk.charCodeAt(0) === 0xfeff) start = 1;
    }
    if (this.skipLf) {
      this.skipLf = false;
      if (chunk.charCodeAt(0) === 10) start = 1;
    }
    // Next CR and LF at or after `start`, each searched again only once passed (no rescans within a chunk).
    let cr = -2;
    let lf = -2;
    for (;;) {
      if (cr !== -1 && cr < start) cr = chunk.indexOf('\r', start);
      if (lf !== -1 && lf < start) lf = chunk.indexOf('\n', start);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (end === -1) break;
      let line = chunk.slice(start, end);
      if (this.pending.length > 0) {
        this.pending.push(line);
        line = this.pending.join('');
        this.pending = [];
        this.joinedPending = 0;
        this.pendingBytes = 0;
      }
      if (end === cr) {
        if (end + 1 === chunk.length) this.skipLf = true;
        start = chunk.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
      const event = this.line(line);
      if (event) events.push(event);
    }
    if (start < chunk.length) {
      const rest = start === 0 ? chunk : chunk.slice(start);
      this.pending.push(rest);
      this.pendingBytes += Buffer.byteLength(rest, 'utf8');
      // A line trickled in a byte at a time would otherwise hold a string and a slot per byte (as data lines, below).
      if (this.pending.length - this.joinedPending === JOINED_AT_ONCE) this.joinedPending = joinTail(this.pending, this.joinedPending, '');
    }
    if (this.pendingBytes + this.eventBytes > this.maxEventBytes) this.refuse();
    return events;
  }

  /** Drops the event under way and throws: it is over the size limit. */
  private refuse(): never {
    this.pending = [];
    this.joinedPending = 0;
    this.pendingBytes = 0;
    this.data = [];
    this.joinedData = 0;
    this.eventBytes = 0;
    this.eventName = '';
    throw new Error('SSE event exceeds the size limit');
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      this.dispatchedId = this.lastId;
      if (this.data.length === 0) {
        this.eventName = '';
        this.eventBytes = 0;
        return undefined;
      }
      const event: SseEvent = {
        event: this.eventName || 'message',
        data: this.data.join('\n'),
        ...(this.lastId === undefined ? {} : { id: this.lastId }),
        ...(this.retry === undefined ? {} : { retry: this.retry }),
      };
      this.data = [];
      this.joinedData = 0;
      this.eventBytes = 0;
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
        this.hold(Buffer.byteLength(value, 'utf8') + 1);
        // Each line held costs an array slot and a string however short it is (an empty `data` line counts 1 byte), so
        // lines are joined JOINED_AT_ONCE at a time: the memory follows the bytes counted, not the number of lines.
        if (this.data.length - this.joinedData === JOINED_AT_ONCE) this.joinedData = joinTail(this.data, this.joinedData, '\n');
        break;
      case 'event':
        this.eventName = value;
        this.hold(Buffer.byteLength(value, 'utf8'));
        break;
      case 'id':
        this.hold(Buffer.byteLength(value, 'utf8'));
        // An id with a NULL is ignored (WHATWG), and so is one over MAX_EVENT_ID_CHARS: it would be held for the stream's life.
        if (value.length <= MAX_EVENT_ID_CHARS && !value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
    return undefined;
  }

  /** Counts `bytes` more toward the event under way. */
  private hold(bytes: number): void {
    this.eventBytes += bytes;
    // Also when the whole event came in one chunk: checked only at the chunk's end, it would be dispatched first.
    if (this.eventBytes > this.maxEventBytes) this.refuse();
  }
}

/**
 * Longest event id kept (characters). WHATWG sets none, but the id lasts from one event to the next for the stream's
 * life; ids are short (the SDK's are a UUID and a number), so this only stops an upstream from pinning memory with
 * one. The gateway sends an id of up to this length back as `Last-Event-ID`.
 */
export const MAX_EVENT_ID_CHARS = 1_024;

/** Pieces of an unfinished line, or data lines, joined into one string at a time. */
const JOINED_AT_ONCE = 1_024;

/**
 * Joins the entries of `parts` from `from` on into one, in place, with `separator` (which the whole is joined with
 * later too); returns the new count of joined entries at the front. Joined entries are not joined again: linear.
 */
function joinTail(parts: string[], from: number, separator: string): number {
  const joined = parts.slice(from).join(separator);
  parts.length = from;
  parts.push(joined);
  return from + 1;
}
