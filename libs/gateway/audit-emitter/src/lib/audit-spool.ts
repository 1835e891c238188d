import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import {
  chmodSync,
  closeSync,
  createReadStream,
  fchmodSync,
  fdatasync,
  fstatSync,
  lstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

/**
 * Where the emitter puts events it cannot hand to Redis. Appends are synchronous (they land in the page cache
 * and must be accounted for before `emit` returns); durability to disk is the implementation's policy.
 */
export interface AuditSpool {
  /** Bytes currently held (all files, including ones being replayed). */
  readonly bytes: number;
  readonly maxBytes: number;
  /** Appends as many events as fit under `maxBytes` less `keepFree`, in order; the rest are refused. */
  append(events: readonly AuditEventV1[], keepFree?: number): { readonly written: number; readonly refused: number };
  /**
   * False from an append that could not write (disk full, I/O error, file gone read-only) until a write succeeds
   * again (a later append, or `probe`). Its `bytes` do not grow meanwhile, so room alone says nothing about it.
   */
  readonly writable: boolean;
  /** Tries a write now without adding an event, and answers `writable` after it (how a failing spool recovers). */
  probe(): boolean;
  hasPending(): boolean;
  /**
   * Sends every spooled event through `send` in batches of at most `batchSize`, oldest first. A file is removed only
   * after all of its events were sent; if `send` throws, the rest stays for the next replay (which resends — sending
   * must be idempotent).
   */
  replay(
    send: (events: AuditEventV1[]) => Promise<void>,
    batchSize: number,
  ): Promise<{ readonly replayed: number; readonly corrupt: number }>;
  close(): Promise<void>;
}

const ACTIVE = 'audit-spool.jsonl';
const REPLAY_PATTERN = /^audit-spool\.(\d{13})-(\d{6})\.replay\.jsonl$/;
/** The spool holds every tenant's events (tool arguments and results): only the gateway's user may list or read it. */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/**
 * Creates `dir` as 0700, or tightens an existing one the gateway owns to 0700 (a volume mounted or a directory made
 * by hand is usually 0755). Refuses, naming the directory, one it cannot own alone: another user's (chmod would fail
 * or, as root, take it from them) or a shared sticky directory such as /tmp.
 */
function prepareSpoolDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  } catch (error) {
    // A file in the way, a parent that is no directory, no permission: said with the variable (found by review: the
    // bare EEXIST stopped the gateway naming nothing).
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new Error(`audit spool directory ${dir} cannot be made (${code}): give GATEWAY_AUDIT_SPOOL_DIR a directory the gateway's user can create or owns`, { cause: error });
  }
  const ownUid = process.getuid?.();
  if (ownUid !== undefined) assertPathOwnedBy(dir, ownUid);
  const stat = statSync(dir);
  // Whoever owns the directory may swap its files (a symlink where the active file goes) whatever its mode: checked
  // first, also for a directory that is 0700 already (it was taken as the spool, found in review). Owned by the gateway's
  // user and 0700, nobody else can plant anything in it, so the files are opened as they are.
  if ((stat.mode & 0o1000) !== 0 || (ownUid !== undefined && stat.uid !== ownUid)) {
    throw new Error(
      `audit spool directory ${dir} is shared (mode ${(stat.mode & 0o7777).toString(8)}, owner uid ${stat.uid}): give GATEWAY_AUDIT_SPOOL_DIR a directory of its own, owned by the gateway's user (it is made 0700)`,
    );
  }
  if ((stat.mode & 0o077) !== 0) chmodSync(dir, DIR_MODE);
}

/**
 * Refuses a spool path someone other than root or the gateway's user could redirect (as OpenSSH's `secure_path`):
 * the directory itself a symbolic link, or any directory above it (along the path as configured and as it resolves)
 * owned by another user, or writable by group or others without the sticky bit. Such a user could point the spool at
 * a directory of root's (chmod-ed 0700 and written to by a gateway running as root), or swap the spool directory for
 * one of theirs after start, so that a replay sent their forged events into a tenant's trail (found in review). The
 * spool finds its files by path at every rotation and replay: checked at start, the path stays the gateway's, since
 * only root or the gateway's user can change directories that pass.
 */
function assertPathOwnedBy(dir: string, ownUid: number): void {
  const configured = path.resolve(dir);
  if (lstatSync(configured).isSymbolicLink()) {
    throw new Error(`audit spool directory ${dir} is a symbolic link: give GATEWAY_AUDIT_SPOOL_DIR the directory itself`);
  }
  const ancestors = (from: string): string[] => {
    const list: string[] = [];
    for (let current = path.dirname(from); ; current = path.dirname(current)) {
      list.push(current);
      if (path.dirname(current) === current) return list;
    }
  };
  for (const ancestor of new Set([...ancestors(configured), ...ancestors(realpathSync(configured))])) {
    const stat = statSync(ancestor);
    const othersMayWrite = (stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0;
    if ((stat.uid !== 0 && stat.uid !== ownUid) || othersMayWrite) {
      throw new Error(
        `audit spool directory ${dir} lies under ${ancestor} (mode ${(stat.mode & 0o7777).toString(8)}, owner uid ${stat.uid}), which another user could change: give GATEWAY_AUDIT_SPOOL_DIR a path whose directories only root or the gateway's user may write to`,
      );
    }
  }
}

/** Takes group and other access away from a spool file a gateway before 0600 spool files left (regular files only). */
function tightenFile(file: string | number): void {
  const stat = typeof file === 'number' ? fstatSync(file) : lstatSync(file);
  if (!stat.isFile() || (stat.mode & 0o077) === 0) return;
  if (typeof file === 'number') fchmodSync(file, FILE_MODE);
  else chmodSync(file, FILE_MODE);
}

/**
 * A bounded, append-only JSON-lines spool in `dir`.
 *
 * Files: the directory is 0700 and its files 0600 (see `prepareSpoolDir`). `audit-spool.jsonl` takes appends; a
 * replay first renames it to `audit-spool.<ms>-<n>.replay.jsonl` (atomic, same directory) and opens a fresh
 * active file, then sends the renamed file and deletes it only when every line was sent. A crash at any point leaves each event in exactly one file that the next replay reads
 * (possibly resending some already sent: idempotent downstream), never in none.
 *
 * Durability (fsync policy): lines are written with `write(2)` on an O_APPEND descriptor before `append` returns,
 * so they survive a crash of this process. An `fdatasync` is issued asynchronously after each append (coalesced:
 * at most one in flight), so a power loss or kernel crash can lose at most the appends of the last few
 * milliseconds. The request path never waits for the disk flush.
 */
export class FileAuditSpool implements AuditSpool {
  private fd: number;
  private totalBytes = 0;
  private activeBytes = 0;
  private syncInFlight = false;
  private syncAgain = false;
  private replaySeq = 0;
  private closed = false;
  private failing = false;

  constructor(
    private readonly dir: string,
    readonly maxBytes: number,
  ) {
    prepareSpoolDir(dir);
    this.fd = openSync(this.activePath, 'a+', FILE_MODE);
    tightenFile(this.fd);
    for (const file of this.replayFiles()) tightenFile(file);
    this.activeBytes = fstatSync(this.fd).size;
    // A crash mid-write can leave a cut-off last line: end it, or the first line appended now would be glued onto it
    // and lost with it (both would read as one corrupt line).
    if (this.activeBytes > 0) {
      const last = Buffer.alloc(1);
      readSync(this.fd, last, 0, 1, this.activeBytes - 1);
      if (last[0] !== 0x0a) this.activeBytes += writeSync(this.fd, '\n');
    }
    this.totalBytes = this.activeBytes + this.replayFiles().reduce((sum, f) => sum + statSync(f).size, 0);
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get writable(): boolean {
    return !this.failing;
  }

  private get activePath(): string {
    return path.join(this.dir, ACTIVE);
  }

  private replayFiles(): string[] {
    return readdirSync(this.dir)
      .filter((name) => REPLAY_PATTERN.test(name))
      .sort()
      .map((name) => path.join(this.dir, name));
  }

  append(events: readonly AuditEventV1[], keepFree = 0): { written: number; refused: number } {
    if (this.closed) return { written: 0, refused: events.length };
    const lines: string[] = [];
    let size = 0;
    for (const event of events) {
      const line = `${JSON.stringify(event)}\n`;
      const length = Buffer.byteLength(line);
      if (this.totalBytes + size + length > this.maxBytes - keepFree) break;
      lines.push(line);
      size += length;
    }
    if (lines.length > 0) {
      const data = Buffer.from(lines.join(''));
      let done = 0;
      try {
        // writeSync may write less than asked (a full disk, a signal): go on until all of it is written.
        while (done < data.length) done += writeSync(this.fd, data, done, data.length - done);
      } catch {
        // Disk full or gone: these events are refused (the caller counts them as drops), never a crash. A line cut
        // off here is ended so the next append starts clean; what did reach the file is replayed (ids dedupe).
        this.failing = true;
        if (done > 0) {
          this.totalBytes += done;
          this.activeBytes += done;
          try {
            this.activeBytes += writeSync(this.fd, '\n');
            this.totalBytes += 1;
          } catch {
            // Still failing: the next probe (or the constructor of the next spool) ends the line.
          }
        }
        return { written: 0, refused: events.length };
      }
      this.totalBytes += size;
      this.activeBytes += size;
      this.failing = false;
      this.scheduleSync();
    }
    return { written: lines.length, refused: events.length - lines.length };
  }

  /**
   * Reopens the active file by its path and writes a line end to it: a line cut off by the failed write is ended
   * (and kept), else the line end is taken back at once, so the file holds what it held. Reopened because the
   * descriptor may point at what can no longer take writes (a file replaced, a volume remounted, a descriptor a
   * failed rotation left closed) while the path can again. Only while failing: the emitter calls it from its flush.
   */
  probe(): boolean {
    if (this.closed) return false;
    let fd: number | undefined;
    try {
      fd = openSync(this.activePath, 'a+', FILE_MODE);
      const size = fstatSync(fd).size;
      let kept = 0;
      const last = Buffer.alloc(1);
      if (size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a) kept = writeSync(fd, '\n');
      else {
        writeSync(fd, '\n');
        try {
          ftruncateSync(fd, size);
        } catch {
          kept = 1; // an empty line: replay skips it
        }
      }
      try {
        closeSync(this.fd);
      } catch {
        // Already closed (a rotation that failed half-way): nothing to release.
      }
      this.fd = fd;
      this.totalBytes = Math.max(0, this.totalBytes - this.activeBytes + size + kept);
      this.activeBytes = size + kept;
      this.failing = false;
    } catch {
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch {
          // Nothing more to do with it.
        }
      }
      this.failing = true;
    }
    return !this.failing;
  }

  hasPending(): boolean {
    return this.totalBytes > 0;
  }

  private scheduleSync(): void {
    if (this.syncInFlight) {
      this.syncAgain = true;
      return;
    }
    this.syncInFlight = true;
    const fd = this.fd;
    fdatasync(fd, () => {
      this.syncInFlight = false;
      if (this.syncAgain && !this.closed) {
        this.syncAgain = false;
        this.scheduleSync();
      }
    });
  }

  /** Moves the active file aside (if it holds anything) and starts a fresh one. */
  private rotate(): void {
    if (this.activeBytes === 0) return;
    closeSync(this.fd);
    const name = `audit-spool.${String(Date.now()).padStart(13, '0')}-${String(this.replaySeq++ % 1_000_000).padStart(6, '0')}.replay.jsonl`;
    renameSync(this.activePath, path.join(this.dir, name));
    this.fd = openSync(this.activePath, 'a', FILE_MODE);
    this.activeBytes = 0;
  }

  async replay(
    send: (events: AuditEventV1[]) => Promise<void>,
    batchSize: number,
  ): Promise<{ replayed: number; corrupt: number }> {
    this.rotate();
    let replayed = 0;
    let corrupt = 0;
    for (const file of this.replayFiles()) {
      const size = statSync(file).size;
      const lines = createInterface({
        input: createReadStream(file, { encoding: 'utf8' }),
        crlfDelay: Infinity,
      });
      let batch: AuditEventV1[] = [];
      try {
        for await (const line of lines) {
          if (line.length === 0) continue;
          try {
            batch.push(JSON.parse(line) as AuditEventV1);
          } catch {
            // A torn last line from a crash mid-write: nothing else can be recovered from it.
            corrupt += 1;
            continue;
          }
          if (batch.length >= batchSize) {
            await send(batch);
            replayed += batch.length;
            batch = [];
          }
        }
        if (batch.length > 0) {
          await send(batch);
          replayed += batch.length;
        }
      } finally {
        lines.close();
      }
      unlinkSync(file);
      this.totalBytes = Math.max(0, this.totalBytes - size);
    }
    return { replayed, corrupt };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => fdatasync(this.fd, () => resolve()));
    closeSync(this.fd);
  }
}

/** An in-memory spool with the same contract, for unit tests and for running without a spool directory. */
export class MemoryAuditSpool implements AuditSpool {
  private events: { event: AuditEventV1; size: number }[] = [];
  private held = 0;

  /** Memory does not fail to write: a full spool refuses for room, which `append` answers. */
  readonly writable = true;

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.held;
  }

  probe(): boolean {
    return true;
  }

  append(events: readonly AuditEventV1[], keepFree = 0): { written: number; refused: number } {
    let written = 0;
    for (const event of events) {
      const size = Buffer.byteLength(JSON.stringify(event)) + 1;
      if (this.held + size > this.maxBytes - keepFree) break;
      this.events.push({ event, size });
      this.held += size;
      written += 1;
    }
    return { written, refused: events.length - written };
  }

  hasPending(): boolean {
    return this.events.length > 0;
  }

  async replay(
    send: (events: AuditEventV1[]) => Promise<void>,
    batchSize: number,
  ): Promise<{ replayed: number; corrupt: number }> {
    let replayed = 0;
    while (this.events.length > 0) {
      const batch = this.events.slice(0, batchSize);
      await send(batch.map((entry) => entry.event));
      this.events.splice(0, batch.length);
      this.held -= batch.reduce((sum, entry) => sum + entry.size, 0);
      replayed += batch.length;
    }
    return { replayed, corrupt: 0 };
  }

  async close(): Promise<void> {
    // nothing to release
  }
}
