import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { lstat, mkdir, chmod, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Clears what a server's id left behind, run as that id (`owner`), so with the server's own rights, never root's (a
 * process still running as that id could swap a directory for a link to elsewhere while root walked it):
 * - every process still running as the id is killed: `kill(-1)` reaches exactly the processes of the caller's user
 *   (the caller excepted), so a server's daemonised grandchildren (out of its process group) go too;
 * - what it owns at the top of the shared temporary directories (/tmp, /var/tmp, /dev/shm) is removed;
 * - everything inside `dir`, its home, is removed. `dir` itself, in a directory of root's, is then removed by the caller.
 * Only an id of its own may be cleared this way: the range holds no account's id (checked at boot).
 */
const CLEAR_ID = `const fs = require('fs'); const path = require('path'); const dir = process.argv[1];
try { process.kill(-1, 'SIGKILL'); } catch {}
const uid = process.getuid();
for (const shared of ['/tmp', '/var/tmp', '/dev/shm']) {
  let names = [];
  try { names = fs.readdirSync(shared); } catch { continue; }
  for (const name of names) {
    const entry = path.join(shared, name);
    try { if (fs.lstatSync(entry).uid === uid) fs.rmSync(entry, { recursive: true, force: true }); } catch {}
  }
}
for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });`;

function emptyAsOwner(dir: string, owner: StdioUser): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', CLEAR_ID, dir], { uid: owner.uid, gid: owner.gid, env: {}, cwd: '/', stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`emptying a stdio home exited with ${String(code)}`))));
  });
}

function emptyAsOwnerSync(dir: string, owner: StdioUser): boolean {
  return spawnSync(process.execPath, ['-e', CLEAR_ID, dir], { uid: owner.uid, gid: owner.gid, env: {}, cwd: '/', stdio: 'ignore' }).status === 0;
}

/** The file in a range's homes directory naming the gateway process that holds the range. */
const HOLDER_FILE = '.holder';

/** `<pid> <start time>`: a process, told apart from a later one given the same pid (the start time, from /proc). */
function processMark(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (in parentheses, which may itself hold spaces): the start time is the 20th.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return start === undefined ? undefined : `${pid} ${start}`;
  } catch {
    return undefined;
  }
}

/** Whether the process a mark names still runs (without /proc: whether its pid does). */
function stillRuns(mark: string): boolean {
  const pid = Number(mark.split(' ', 1)[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const now = processMark(pid);
  if (now !== undefined) return now === mark;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The ranges in use in this process (each until released). */
const inThisProcess = new Set<{ readonly first: number; readonly last: number }>();

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
    // Two sets of ids over the same range in one process would hand one id to two servers (and clear each other's).
    const overlapping = [...inThisProcess].find((other) => other.first <= last && first <= other.last);
    if (overlapping !== undefined) throw new Error(`stdio user ids ${first}-${last} overlap ${overlapping.first}-${overlapping.last}, already in use in this process`);
    this.next = first;
    this.homes = path.join(homesParent, `pcs-stdio-${first}-${last}`);
    this.clearLeftHomes();
    inThisProcess.add(this);
  }

  /**
   * Takes the range for this gateway process, and clears what a crashed one left: each home emptied as its owner (the
   * owner's processes killed, see CLEAR_ID) and removed; an id whose home cannot be removed is retired. Refuses (throws)
   * while another gateway process on this host holds the range: each would kill the other's servers and clear their
   * homes.
   */
  private clearLeftHomes(): void {
    try {
      if (!lstatSync(this.homes).isDirectory()) unlinkSync(this.homes);
    } catch {
      // Nothing there.
    }
    this.ensureHomesSync();
    this.claim();
    for (const name of readdirSync(this.homes)) {
      if (name === HOLDER_FILE) continue;
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
  }

  /** Records this process as the range's holder; throws if another running process holds it. */
  private claim(): void {
    const file = path.join(this.homes, HOLDER_FILE);
    const mark = processMark(process.pid) ?? `${process.pid} 0`;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        writeFileSync(file, mark, { flag: 'wx', mode: 0o600 });
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = readFileSync(file, 'utf8').trim();
      if (holder !== mark && stillRuns(holder)) {
        throw new Error(
          `GATEWAY_STDIO_UID_RANGE ${this.first}-${this.last} is held by another gateway process on this host (pid ${holder.split(' ', 1)[0] ?? '?'}): give each gateway a range of its own`,
        );
      }
      // Left by a gateway that is gone (or by this one).
      unlinkSync(file);
    }
    throw new Error(`GATEWAY_STDIO_UID_RANGE ${this.first}-${this.last}: another gateway process is taking the range at the same time`);
  }

  /** Gives the range up (shutdown): another gateway process on this host, or set of ids in this one, may take it. */
  release(): void {
    inThisProcess.delete(this);
    const file = path.join(this.homes, HOLDER_FILE);
    try {
      if (readFileSync(file, 'utf8').trim() === (processMark(process.pid) ?? `${process.pid} 0`)) unlinkSync(file);
    } catch {
      // Gone already.
    }
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
      // Made again: the holder file went with it.
      this.claim();
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
