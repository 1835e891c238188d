import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { deserializeMessage, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { privateHome, type StdioUser, type StdioUserIds } from '@portcullis/shared/util-process-user';

export interface ProbeStdioTarget {
  readonly command: string;
  readonly args: readonly string[];
  /** The upstream's configured environment: all the process gets. */
  readonly env: Readonly<Record<string, string>>;
}

export interface ProbeStdioOptions {
  /** The user and group the server runs as (CONTROL_PLANE_STDIO_RUN_AS); unset: the control plane's own. */
  readonly runAs?: { readonly uid: number; readonly gid: number } | undefined;
  /**
   * Instead of `runAs`: ids of CONTROL_PLANE_STDIO_UID_RANGE, one taken for this server (with a private home), given
   * back once it has exited and every process left running as it is killed (a helper it daemonised out of its group)
   * and what it left in the shared temporary directories removed; retired when that fails.
   */
  readonly userIds?: StdioUserIds | undefined;
  /** Told when the id could not be cleared and is retired (for the operator's log). */
  readonly onRetired?: ((code: string | undefined) => void) | undefined;
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

/** How long `close` waits for the killed server to exit. */
const EXIT_WAIT_MS = 2_000;

/**
 * The test connection's stdio transport, started as the gateway starts stdio servers (ADR 0008) rather than as the
 * SDK's `StdioClientTransport` does: with the configured environment only (the SDK's adds the control plane's HOME,
 * PATH, USER, SHELL...), as `runAs` when set (so the server cannot read the control plane's environment, keyring
 * included, from /proc) or as an id of its own from `userIds` (so no two tests' servers can read each other's either),
 * in a process group of its own that `close` kills whole (a wrapper such as `npx` runs the real
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
  /** Settles once the server killed by `close` has exited (or after `EXIT_WAIT_MS`). */
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly target: ProbeStdioTarget,
    private readonly options: ProbeStdioOptions,
  ) {}

  /** The server's process id while it runs (for tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const { userIds } = this.options;
    let user: StdioUser | undefined = this.options.runAs;
    let home: string | undefined;
    if (userIds !== undefined) {
      const taken = userIds.take();
      if (taken === undefined) return this.failStart(Object.assign(new Error('no free user id for a stdio server'), { code: 'ENOUSERID' }));
      try {
        home = await privateHome(await userIds.ensureHomes(), taken);
      } catch (error) {
        userIds.give(taken);
        return this.failStart(error as Error);
      }
      user = taken;
      this.releaseUser = () => this.clearUser(userIds, taken, home as string);
    }
    // Closed while the home was made: nothing may start now, or it would outlive the test.
    if (this.closed) {
      this.freeUser();
      throw new Error('the stdio server is not running');
    }
    let child: ChildProcessByStdio<Writable, Readable, null>;
    try {
      child = spawn(this.target.command, [...this.target.args], {
        shell: false,
        // With an id of its own, a home of its own (HOME, TMPDIR, working directory) where the configuration names none.
        env: home === undefined ? { ...this.target.env } : { HOME: home, TMPDIR: home, ...this.target.env },
        ...(home !== undefined ? { cwd: home } : {}),
        stdio: ['pipe', 'pipe', 'ignore'],
        windowsHide: true,
        detached: process.platform !== 'win32',
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
    } catch (error) {
      this.freeUser();
      return this.failStart(error as Error);
    }
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.read(chunk));
    child.stdin.on('error', (error) => this.onerror?.(error));
    child.on('exit', () => {
      // The id goes back only once the process has exited (a spawn that failed exits with no process).
      this.freeUser();
      void this.close();
    });
    return new Promise((resolve, reject) => {
      let spawned = false;
      child.once('spawn', () => {
        spawned = true;
        child.on('error', (error) => this.onerror?.(error));
        resolve();
      });
      child.once('error', (error) => {
        // After the spawn an error (a failed kill) says nothing of the process having exited: the id stays its own.
        if (spawned) return;
        this.closed = true;
        this.freeUser();
        reject(error);
      });
    });
  }

  /** Ends a start that failed before a process ran: told as a transport error too, so the test names its cause. */
  private failStart(error: Error): Promise<never> {
    this.closed = true;
    this.onerror?.(error);
    return Promise.reject(error);
  }

  /** Gives the server's id back (once), after clearing it. */
  private releaseUser: (() => void) | undefined;
  private freeUser(): void {
    const release = this.releaseUser;
    this.releaseUser = undefined;
    release?.();
  }

  /**
   * Every process still running as the id killed (a helper the server daemonised out of its process group, which the
   * group kill misses), its files in the shared temporary directories and its home removed, then the id given back;
   * an id that cannot be cleared is never handed out again.
   */
  private clearUser(userIds: StdioUserIds, user: StdioUser, home: string): void {
    userIds.removeHome(home, user).then(
      () => userIds.give(user),
      (error: NodeJS.ErrnoException) => {
        userIds.retire(user);
        this.options.onRetired?.(error.code);
      },
    );
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

  /** Kills the server's group; settles once it has exited (its id then being cleared), or after `EXIT_WAIT_MS`. */
  close(): Promise<void> {
    // A second close (the SDK closes a client whose connect failed, and the test closes it again) waits as the first.
    if (this.closed && this.child === undefined) return this.exited;
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    let exited: Promise<void> = Promise.resolve();
    if (child?.pid !== undefined) {
      if (child.exitCode === null && child.signalCode === null) {
        exited = this.exited = new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, EXIT_WAIT_MS);
          timer.unref();
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      try {
        // The whole group: what the server started goes with it.
        process.kill(process.platform === 'win32' ? child.pid : -child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }
    this.onclose?.();
    return exited;
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
