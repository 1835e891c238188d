import type { UpstreamLogger } from '../core/logger';

/**
 * Splits newline-delimited text (stdio JSON-RPC framing); refuses a line longer than `maxLineBytes`. Each chunk is
 * scanned once (an unfinished line is kept as pieces, joined when it ends): linear however a long line is chunked.
 */
export class LineSplitter {
  private pending: string[] = [];
  private pendingLength = 0;

  constructor(private readonly maxLineBytes: number) {}

  /** Calls `onLine` for every complete line; throws when a line grows past the limit. */
  push(chunk: string, onLine: (line: string) => void): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf('\n', start);
      if (newline === -1) break;
      let line = chunk.slice(start, newline);
      if (this.pending.length > 0) {
        this.pending.push(line);
        line = this.pending.join('');
        this.pending = [];
        this.pendingLength = 0;
      }
      if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
      if (line !== '') onLine(line);
      start = newline + 1;
    }
    if (start < chunk.length) {
      const rest = start === 0 ? chunk : chunk.slice(start);
      this.pendingLength += rest.length;
      if (this.pendingLength > this.maxLineBytes) {
        this.pending = [];
        this.pendingLength = 0;
        throw new Error('line exceeds the size limit');
      }
      this.pending.push(rest);
    }
  }
}

export interface StderrLogOptions {
  /** Lines logged per window; the rest are counted and reported once. */
  readonly linesPerWindow: number;
  readonly windowMs: number;
  /** Longer lines are cut. */
  readonly maxLineLength: number;
}

/**
 * Passes a child's stderr to the logger line by line, truncated and rate-limited so a chatty or
 * hostile upstream cannot flood the gateway's logs.
 */
export class StderrLog {
  private partial = '';
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(
    private readonly logger: UpstreamLogger,
    private readonly fields: Record<string, unknown>,
    private readonly options: StderrLogOptions,
    private readonly now: () => number = Date.now,
  ) {}

  push(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = (lines.pop() ?? '').slice(0, this.options.maxLineLength);
    for (const line of lines) this.line(line);
  }

  flush(): void {
    if (this.partial !== '') this.line(this.partial);
    this.partial = '';
    this.reportSuppressed();
  }

  private line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') return;
    const now = this.now();
    if (now - this.windowStart >= this.options.windowMs) {
      this.reportSuppressed();
      this.windowStart = now;
      this.logged = 0;
    }
    if (this.logged >= this.options.linesPerWindow) {
      this.suppressed += 1;
      return;
    }
    this.logged += 1;
    const cut =
      line.length > this.options.maxLineLength ? `${line.slice(0, this.options.maxLineLength)}…` : line;
    this.logger.info({ ...this.fields, stderr: cut }, 'upstream stderr');
  }

  private reportSuppressed(): void {
    if (this.suppressed === 0) return;
    this.logger.warn({ ...this.fields, suppressedLines: this.suppressed }, 'upstream stderr rate-limited');
    this.suppressed = 0;
  }
}
