import { redactSecrets, type SecretMask } from '@portcullis/shared/util-redact';
import type { UpstreamLogger } from '../core/logger';

/**
 * Splits newline-delimited text (stdio JSON-RPC framing); refuses a line longer than `maxLineBytes` UTF-8 bytes (the
 * text comes decoded, whole characters per chunk). Each chunk is scanned once (an unfinished line is kept as pieces,
 * joined when it ends): linear however a long line is chunked.
 */
export class LineSplitter {
  private pending: string[] = [];
  private pendingBytes = 0;
  /** A line of this many UTF-16 units or fewer is within the limit whatever it holds (at most 3 bytes a unit). */
  private readonly surelyFits: number;

  constructor(private readonly maxLineBytes: number) {
    this.surelyFits = Math.floor(maxLineBytes / 3);
  }

  /** Calls `onLine` for every complete line; throws when a line grows past the limit. */
  push(chunk: string, onLine: (line: string) => void): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf('\n', start);
      if (newline === -1) break;
      let line = chunk.slice(start, newline);
      if (this.pending.length > 0) {
        this.pending.push(line);
        const bytes = this.pendingBytes + Buffer.byteLength(line, 'utf8');
        line = this.pending.join('');
        this.pending = [];
        this.pendingBytes = 0;
        if (bytes > this.maxLineBytes) throw new Error('line exceeds the size limit');
      } else if (line.length > this.surelyFits && Buffer.byteLength(line, 'utf8') > this.maxLineBytes) {
        throw new Error('line exceeds the size limit');
      }
      if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
      if (line !== '') onLine(line);
      start = newline + 1;
    }
    if (start < chunk.length) {
      const rest = start === 0 ? chunk : chunk.slice(start);
      this.pendingBytes += Buffer.byteLength(rest, 'utf8');
      if (this.pendingBytes > this.maxLineBytes) {
        this.pending = [];
        this.pendingBytes = 0;
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
 * Characters past the cut that are still read when masking a line: a credential that starts before the cut is masked
 * whole, rather than its first characters left showing because the rest of it was cut off.
 */
const MASK_LOOKAHEAD = 1_024;

/**
 * Passes a child's stderr to the logger line by line, truncated and rate-limited so a chatty or
 * hostile upstream cannot flood the gateway's logs. The upstream's credentials are masked first: a server that
 * prints the token it was refused with, or dumps its environment, would otherwise write them into the gateway's
 * logs (the logger's redaction knows field names, not what a line of text holds).
 */
export class StderrLog {
  private partial = '';
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;
  /** How much of a line is kept and masked before it is cut. */
  private readonly readLength: number;

  constructor(
    private readonly logger: UpstreamLogger,
    private readonly fields: Record<string, unknown>,
    private readonly options: StderrLogOptions,
    /** The upstream's secrets (`secretMaskOf` its configuration): masked wherever they appear. */
    private readonly secrets: SecretMask,
    private readonly now: () => number = Date.now,
  ) {
    this.readLength = options.maxLineLength + Math.max(MASK_LOOKAHEAD, this.secrets.longest);
  }

  push(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    // One character more than is read: enough to tell, when the line ends, that it was cut.
    this.partial = (lines.pop() ?? '').slice(0, this.readLength + 1);
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
    // Masked before it is cut (see MASK_LOOKAHEAD); a value running past what is read is masked from where it begins.
    const masked = this.mask(line.slice(0, this.readLength), line.length > this.readLength);
    const { maxLineLength } = this.options;
    const cut = masked.length > maxLineLength || line.length > this.readLength ? `${masked.slice(0, maxLineLength)}…` : masked;
    this.logger.info({ ...this.fields, stderr: cut }, 'upstream stderr');
  }

  /** The configured values, then anything that looks like a credential (a token, a key, a URL's password). */
  private mask(line: string, cut: boolean): string {
    return redactSecrets(cut ? this.secrets.maskCut(line) : this.secrets.mask(line)) as string;
  }

  private reportSuppressed(): void {
    if (this.suppressed === 0) return;
    this.logger.warn({ ...this.fields, suppressedLines: this.suppressed }, 'upstream stderr rate-limited');
    this.suppressed = 0;
  }
}
