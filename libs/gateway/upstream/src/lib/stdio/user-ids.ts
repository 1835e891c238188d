import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { lstat, mkdir, chmod, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Removes everything inside `dir`, run as `owner`: what a server left in its home is deleted with the server's own
 * rights, never root's (a process still running as that id could swap a directory for a link to elsewhere while root
 * walked it). `dir` itself, in a directory of root's, is then removed by the caller.
 */
const EMPTY_DIR = `const fs = require('fs'); const path = require('path'); const dir = process.argv[1];
for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });`;

function emptyAsOwner(dir: string, owner: StdioUser): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', EMPTY_DIR, dir], { uid: owner.uid, gid: owner.gid, env: {}, cwd: '/', stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`emptying a stdio home exited with ${String(code)}`))));
  });
}

function emptyAsOwnerSync(dir: string, owner: StdioUser): boolean {
  return spawnSync(process.execPath, ['-e', EMPTY_DIR, dir], { uid: owner.uid, gid: owner.gid, env: {}, cwd: '/', stdio: 'ignore' }).status === 0;
}

/** A user id (with the group id of the same number) a stdio process runs as. */
export interface StdioUser {
  readonly uid: number;
  readonly gid: number;
}

/**
 * User ids for stdio processes, one per running process. Two processes of the same user can read each other's
 * `/proc/<pid>/environ` and memory, so one user for every process would let one tenant's server read the credentials
 * injected into another tenant's (or another upstream's) environment. Each process takes an id of its own from the
 * range, its group the same number, and gives it back when it has exited. Ids are handed out round the range, so one
 * just given back is the last to be taken again.
 */
export class StdioUserIds {
  private readonly taken = new Set<number>();
  /** Ids retired for good (also in `taken`). */
  private readonly retiredIds = new Set<number>();
  private next: number;
  /**
   * Where the processes' private homes go: one directory for this range (0711: others may pass through to their own
   * home, not list), emptied when the range is set up, so homes a crashed gateway left behind are not found by the
   * next holders of their ids. Replicas on one host have ranges of their own, so each has its own.
   */
  readonly homes: string;

  constructor(
    readonly first: number,
    readonly last: number,
    homesParent: string = tmpdir(),
  ) {
    if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last < first) throw new RangeError('stdio user ids: need 1 <= first <= last');
    this.next = first;
    this.homes = path.join(homesParent, `pcs-stdio-${first}-${last}`);
    this.clearLeftHomes();
  }

  /**
   * Homes a crashed gateway left: each emptied as its owner and removed; an id whose home cannot be (a process of the
   * old gateway still running as it) is retired. Then the directory is made ready (see `ensureHomes`).
   */
  private clearLeftHomes(): void {
    let names: string[] = [];
    try {
      if (lstatSync(this.homes).isDirectory()) names = readdirSync(this.homes);
      else unlinkSync(this.homes);
    } catch {
      // Nothing there.
    }
    for (const name of names) {
      const entry = path.join(this.homes, name);
      const stat = lstatSync(entry);
      if (!stat.isDirectory()) {
        unlinkSync(entry);
        continue;
      }
      const owner = { uid: stat.uid, gid: stat.gid };
      const inRange = stat.uid >= this.first && stat.uid <= this.last;
      try {
        // The gateway's own (a home whose handing over failed): nobody else can write in it.
        if (stat.uid === process.getuid?.()) rmSync(entry, { recursive: true, force: true });
        else if (emptyAsOwnerSync(entry, owner)) rmdirSync(entry);
        else throw new Error('not emptied');
      } catch {
        if (inRange) this.retire(owner);
      }
    }
    this.ensureHomesSync();
  }

  private ensureHomesSync(): void {
    try {
      mkdirSync(this.homes, { mode: 0o711 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const stat = lstatSync(this.homes);
    // Ours (the gateway's user) and a directory, or not used at all: another user may have raced for the name.
    if (!stat.isDirectory() || stat.uid !== process.getuid?.()) throw new Error(`${this.homes} is not a directory of the gateway's own`);
    // 0711 whatever the umask: others pass through to their own home, and list nothing.
    chmodSync(this.homes, 0o711);
  }

  /** The homes directory, made again if a /tmp cleaner removed it; refused if it is not the gateway's own directory. */
  async ensureHomes(): Promise<string> {
    try {
      await mkdir(this.homes, { mode: 0o711 });
      await chmod(this.homes, 0o711);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const stat = await lstat(this.homes);
    if (!stat.isDirectory() || stat.uid !== process.getuid?.()) throw new Error(`${this.homes} is not a directory of the gateway's own`);
    return this.homes;
  }

  /** Removes a process's home once it has exited: emptied as its owner, then the directory itself. */
  async removeHome(home: string, owner: StdioUser): Promise<void> {
    await emptyAsOwner(home, owner);
    await rmdir(home);
  }

  get size(): number {
    return this.last - this.first + 1;
  }

  /** Ids held by running processes (or their homes still being removed); retired ones are not counted. */
  get inUse(): number {
    return this.taken.size - this.retiredIds.size;
  }

  get retired(): number {
    return this.retiredIds.size;
  }

  /** A free id, now taken; undefined when every id of the range is taken. */
  take(): StdioUser | undefined {
    if (this.taken.size >= this.size) return undefined;
    for (;;) {
      const id = this.next;
      this.next = id === this.last ? this.first : id + 1;
      if (!this.taken.has(id)) {
        this.taken.add(id);
        return { uid: id, gid: id };
      }
    }
  }

  give(user: StdioUser): void {
    if (!this.retiredIds.has(user.uid)) this.taken.delete(user.uid);
  }

  /** An id whose process left something behind that could not be removed: never handed out again by this gateway. */
  retire(user: StdioUser): void {
    this.taken.add(user.uid);
    this.retiredIds.add(user.uid);
  }
}
