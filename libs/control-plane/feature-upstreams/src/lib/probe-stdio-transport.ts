import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { deserializeMessage, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export interface ProbeStdioTarget {
  readonly command: string;
  readonly args: readonly string[];
  /** The upstream's configured environment: all the process gets. */
  readonly env: Readonly<Record<string, string>>;
}

export interface ProbeStdioOptions {
  /** The user and group the server runs as (CONTROL_PLANE_STDIO_RUN_AS); unset: the control plane's own. */
  readonly runAs?: { readonly uid: number; readonly gid: number } | undefined;
  /** Longest line (one message) read from the server, in characters; a longer one fails the transport. */
  readonly maxLineBytes: number;
}

/** A line past `maxLineBytes`. */
export class ProbeLineTooLong extends Error {
  constructor() {
    super('the stdio server wrote a line past the size limit');
    this.name = 'ProbeLineTooLong';
  }
}

/** The server stopped reading its stdin with more than `STDIN_MAX_BYTES` waiting for it. */
export class ProbeStdinFull extends Error {
  constructor() {
    super('the stdio server stopped reading what was sent to it');
    this.name = 'ProbeStdinFull';
  }
}

/**
 * Unread input a server may leave waiting in the control plane's memory: bytes (the gateway's bound, ADR 0008) and
 * messages. A test has a handful in flight; each one waiting holds the SDK's state of the request it answers (about
 * 4 KiB), so small answers to a flood of pings reached 800 MiB before the bytes did (found by a review).
 */
const STDIN_MAX_BYTES = 8 * 1024 * 1024;
const STDIN_MAX_MESSAGES = 1_000;

/**
 * The test connection's stdio transport, started as the gateway starts stdio servers (ADR 0008) rather than as the
 * SDK's `StdioClientTransport` does: with the configured environment only (the SDK's adds the control plane's HOME,
 * PATH, USER, SHELL...), as `runAs` when set (so the server cannot read the control plane's environment, keyring
 * included, from /proc), in a process group of its own that `close` kills whole (a wrapper such as `npx` runs the real
 * server as a grandchild), and reading lines only up to a bound.
 */
export class ProbeStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  /** The unfinished line so far, in pieces, and its length (UTF-16 units, which bound its bytes within 3x). */
  private pieces: string[] = [];
  private pendingLength = 0;
  private closed = false;
  /** Messages handed to the server's stdin that it has not taken yet. */
  private unwritten = 0;

  constructor(
    private readonly target: ProbeStdioTarget,
    private readonly options: ProbeStdioOptions,
  ) {}

  /** The server's process id while it runs (for tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    const { runAs } = this.options;
    const child = spawn(this.target.command, [...this.target.args], {
      shell: false,
      env: { ...this.target.env },
      stdio: ['pipe', 'pipe', 'ignore'],
      windowsHide: true,
      detached: process.platform !== 'win32',
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    });
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.read(chunk));
    child.stdin.on('error', (error) => this.onerror?.(error));
    child.on('exit', () => this.close());
    return new Promise((resolve, reject) => {
      child.once('spawn', () => {
        child.on('error', (error) => this.onerror?.(error));
        resolve();
      });
      child.once('error', (error) => {
        this.closed = true;
        reject(error);
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (stdin === undefined || this.closed) return Promise.reject(new Error('the stdio server is not running'));
    // A server that stops reading while it sends requests (pings the client answers) had every answer held here, without
    // bound: hundreds of MiB within one test (found by a review). Past the bound the test ends.
    if (stdin.writableLength > STDIN_MAX_BYTES || this.unwritten >= STDIN_MAX_MESSAGES) {
      const full = new ProbeStdinFull();
      this.onerror?.(full);
      void this.close();
      return Promise.reject(full);
    }
    this.unwritten += 1;
    return new Promise((resolve, reject) => {
      stdin.write(serializeMessage(message), (error) => {
        this.unwritten -= 1;
        if (error) reject(error);
        else resolve();
      });
    });
  }

  close(): Promise<void> {
    if (this.closed && this.child === undefined) return Promise.resolve();
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    if (child?.pid !== undefined) {
      try {
        // The whole group: what the server started goes with it.
        process.kill(process.platform === 'win32' ? child.pid : -child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }
    this.onclose?.();
    return Promise.resolve();
  }

  /** Splits the output into lines; a line's pieces are joined once it ends (linear however it is chunked). */
  private read(chunk: string): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf('\n', start);
      if (newline === -1) break;
      let line = chunk.slice(start, newline);
      start = newline + 1;
      if (this.pieces.length > 0) {
        this.pieces.push(line);
        line = this.pieces.join('');
        this.pieces = [];
        this.pendingLength = 0;
      }
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.trim() !== '') this.deliver(line);
      if (this.closed) return;
    }
    if (start === chunk.length) return;
    const rest = start === 0 ? chunk : chunk.slice(start);
    this.pendingLength += rest.length;
    if (this.pendingLength > this.options.maxLineBytes) {
      this.pieces = [];
      this.pendingLength = 0;
      this.onerror?.(new ProbeLineTooLong());
      void this.close();
      return;
    }
    this.pieces.push(rest);
  }

  private deliver(line: string): void {
    let message: JSONRPCMessage;
    try {
      message = deserializeMessage(line);
    } catch (error) {
      this.onerror?.(error instanceof Error ? error : new Error('not a JSON-RPC message'));
      return;
    }
    this.onmessage?.(message);
  }
}
