import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { chmod, chown, lstat, mkdir, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GATEWAY_STDIO_HOST, type StdioHost } from './stdio-user';

/**
 * Clears what a server's id left behind, run as that id (`owner`), so with the server's own rights, never root's (a
 * process still running as that id could swap a directory for a link to elsewhere while root walked it):
 * - nothing at all while it holds any capability (a gateway given ambient ones, or a node binary given file
 *   capabilities, passes them on): `kill(-1)` would then reach every process of the host;
 * - every process still running as the id is killed: `kill(-1)` reaches exactly the processes of the caller's user
 *   (the caller excepted), so a server's daemonised grandchildren (out of its process group) go too;
 * - what it owns at the top of the shared temporary directories (/tmp, /var/tmp, /dev/shm) is removed, and everything
 *   inside `dir`, its home; directories of its own are opened (0700) first, so none it closed (0500) keeps anything.
 *   Trees are walked by changing into each directory, without recursion, with names relative to it: a server's tree of
 *   any depth goes (by absolute paths, one deeper than PATH_MAX could not be removed, and its id was retired: one
 *   tenant's server could so use up the range every tenant's servers share).
 * Exits non-zero if anything of the id's is left there (the caller then retires the id). `dir` itself, in a directory
 * of root's, is then removed by the caller. Only an id of its own may be cleared this way: the range holds no
 * account's id (checked at boot).
 */
const CLEAR_ID = `const fs = require('fs'); const path = require('path'); const dir = process.argv[1];
if (!/^CapEff:\\s*0+$/m.test(fs.readFileSync('/proc/self/status', 'utf8'))) process.exit(3);
try { process.kill(-1, 'SIGKILL'); } catch {}
const uid = process.getuid();
const remove = (entry) => {
  try { process.chdir(path.dirname(entry)); } catch { return; }
  const frames = [{ name: undefined, names: [path.basename(entry)], next: 0 }];
  while (frames.length > 0) {
    const frame = frames[frames.length - 1];
    if (frame.next < frame.names.length) {
      const name = frame.names[frame.next++];
      try {
        const stat = fs.lstatSync(name);
        if (!stat.isDirectory()) { fs.unlinkSync(name); continue; }
        if (stat.uid === uid) fs.chmodSync(name, 0o700);
        process.chdir(name);
      } catch { continue; }
      let names = [];
      try { names = fs.readdirSync('.'); } catch {}
      frames.push({ name, names, next: 0 });
      continue;
    }
    frames.pop();
    if (frame.name === undefined) return;
    try { process.chdir('..'); } catch { return; }
    try { fs.rmdirSync(frame.name); } catch {}
  }
};
const owned = (entry) => { try { return fs.lstatSync(entry).uid === uid; } catch { return false; } };
let left = false;
for (const shared of ['/tmp', '/var/tmp', '/dev/shm']) {
  let names = [];
  try { names = fs.readdirSync(shared); } catch { continue; }
  for (const name of names) {
    const entry = path.join(shared, name);
    if (!owned(entry)) continue;
    remove(entry);
    if (owned(entry)) left = true;
  }
}
try { fs.chmodSync(dir, 0o700); } catch {}
for (const name of fs.readdirSync(dir)) remove(path.join(dir, name));
if (left || fs.readdirSync(dir).length > 0) process.exit(4);`;

/** Longest a clearing may take; past it the clearing process is killed and the id retired. */
const CLEAR_TIMEOUT_MS = 10_000;

/** The pids of live (not zombie) processes whose real, effective or saved uid is `uid`, from /proc. */
function processesOf(uid: number): number[] {
  const pids: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const name of names) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      if (/^State:\s+Z/m.test(status)) continue;
      const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
      if (ids !== null && (Number(ids[1]) === uid || Number(ids[2]) === uid || Number(ids[3]) === uid)) pids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/**
 * Signals every process running as `uid` to die, from the gateway's side, before anything runs as that uid to clear
 * it: a process left of a server (a daemon) could otherwise stop, kill or trace the clearing process before it acts.
 * Each is stopped first and the list read again until no new one appears (one forking meanwhile is caught stopped),
 * then all are killed. Returns how many were signalled (they die a moment later; see `killAllOf`), or -1 for an id
 * that must never be signalled so (root, the gateway's own). Only for ids of the range.
 */
function signalAllOf(uid: number): number {
  if (uid === 0 || uid === process.getuid?.()) return -1;
  const stopped = new Set<number>();
  for (let round = 0; round < 20; round += 1) {
    const found = processesOf(uid).filter((pid) => !stopped.has(pid));
    if (found.length === 0) break;
    for (const pid of found) {
      stopped.add(pid);
      try {
        process.kill(pid, 'SIGSTOP');
      } catch {
        // Gone.
      }
    }
  }
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
  return stopped.size;
}

/** `signalAllOf`, then (blocking: boot only) until they have died, at most KILL_WAIT_MS. Whether none is left. */
function killAllOf(uid: number): boolean {
  const signalled = signalAllOf(uid);
  if (signalled <= 0) return signalled === 0;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let waited = 0; waited < KILL_WAIT_MS; waited += 2) {
    if (processesOf(uid).length === 0) return true;
    Atomics.wait(pause, 0, 0, 2);
  }
  return processesOf(uid).length === 0;
}

/** The same without blocking the event loop (a server exited while the gateway serves). */
async function killAllOfAsync(uid: number): Promise<boolean> {
  const signalled = signalAllOf(uid);
  if (signalled <= 0) return signalled === 0;
  for (let waited = 0; waited < KILL_WAIT_MS; waited += 10) {
    if (processesOf(uid).length === 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return processesOf(uid).length === 0;
}

/** Longest `killAllOf` waits for the processes it killed to die. */
const KILL_WAIT_MS = 1_000;

/** Why a clearing failed, as a code for the log: capabilities (the node binary has file capabilities?), timeout, or leftovers. */
function clearingFailure(status: number | null): Error {
  const code = status === 3 ? 'ECAPABILITIES' : status === null ? 'ETIMEDOUT' : 'ELEFTOVER';
  return Object.assign(new Error(`clearing a stdio user id failed (${code})`), { code });
}

const clearOptions = (owner: StdioUser) =>
  ({ uid: owner.uid, gid: owner.gid, env: {}, cwd: '/', stdio: 'ignore', timeout: CLEAR_TIMEOUT_MS, killSignal: 'SIGKILL' }) as const;

/** Clears `owner`'s id (see CLEAR_ID) once every process of it is killed; rejects when anything of it is left. */
async function emptyAsOwner(dir: string, owner: StdioUser): Promise<void> {
  if (!(await killAllOfAsync(owner.uid))) throw clearingFailure(4);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', CLEAR_ID, dir], clearOptions(owner));
    child.once('error', reject);
    child.once('exit', (code) => {
      // Nothing may run as the id any more when it goes back (a process can start only from one of the id's own).
      if (code === 0 && processesOf(owner.uid).length === 0) resolve();
      else reject(clearingFailure(code === 0 ? 4 : code));
    });
  });
}

function emptyAsOwnerSync(dir: string, owner: StdioUser): boolean {
  if (!killAllOf(owner.uid)) return false;
  return spawnSync(process.execPath, ['-e', CLEAR_ID, dir], clearOptions(owner)).status === 0 && processesOf(owner.uid).length === 0;
}

/**
 * The lock a gateway process holds on its range while it runs: an abstract Unix socket bound under this name (Linux).
 * The kernel frees it when the process ends, however it ends, and nothing on disk can go stale or be removed by a
 * `/tmp` cleaner. Binding is atomic: of two processes starting with one range, one gets it.
 */
const lockName = (first: number, last: number): string => `\0portcullis-stdio-uids-${first}-${last}`;

/** Another process holds a range overlapping this one (`refuseOverlaps`). */
class RangeOverlapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RangeOverlapError';
  }
}

/** The ranges whose locks are bound on this host (as this process's network namespace sees them). */
function rangeLocks(): { first: number; last: number }[] {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return [];
  }
  const ranges: { first: number; last: number }[] = [];
  for (const match of table.matchAll(/@portcullis-stdio-uids-(\d{1,10})-(\d{1,10})(?=@|\s|$)/gm)) ranges.push({ first: Number(match[1]), last: Number(match[2]) });
  return ranges;
}

/**
 * A listening abstract socket under `name`, kept for the process's life: it accepts nothing (a connection is closed at
 * once, so no process can pile them up in the gateway) and never keeps the process alive.
 */
function listenOn(name: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen({ path: name }, () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      server.unref();
      resolve(server);
    });
  });
}

/** The uids of the processes holding the listening abstract socket `name` (from /proc/net/unix and their descriptors). */
function holdersOf(name: string): number[] {
  const shown = `@${name.slice(1)}`;
  const inodes = new Set<string>();
  try {
    for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // Node binds an abstract name padded with NULs to the full address length: shown as trailing `@`s.
      if (fields[7]?.replace(/@+$/, '') === shown && fields[6] !== undefined) inodes.add(`socket:[${fields[6]}]`);
    }
  } catch {
    return [];
  }
  const uids = new Set<number>();
  if (inodes.size === 0) return [];
  for (const pid of readdirSync('/proc')) {
    if (pid.charCodeAt(0) < 48 || pid.charCodeAt(0) > 57) continue;
    try {
      if (!readdirSync(`/proc/${pid}/fd`).some((fd) => inodes.has(readlinkSafe(`/proc/${pid}/fd/${fd}`)))) continue;
      const ids = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (ids !== null) uids.add(Number(ids[1]));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return [...uids];
}

const readlinkSafe = (link: string): string => {
  try {
    return readlinkSync(link);
  } catch {
    return '';
  }
};

/** How long taking the lock back from a range id's leftover process may take (a dying process frees the name late). */
const LOCK_TAKEBACK_MS = 5_000;

/** How long a shutdown waits for ids still being cleared before it gives the range up. */
const CLEARING_WAIT_MS = 2_000;

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
  /** Who holds each id taken and not yet given back or retired (`take`'s holder). */
  private readonly holders = new Map<number, string>();
  /** How many ids each holder holds; holders with none are not kept. */
  private readonly heldBy = new Map<string, number>();
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
    /** The process holding the range (the gateway, the control plane's test connections), for its messages. */
    private readonly host: StdioHost = GATEWAY_STDIO_HOST,
  ) {
    if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last < first) throw new RangeError('stdio user ids: need 1 <= first <= last');
    // Two sets of ids over the same range in one process would hand one id to two servers (and clear each other's).
    const overlapping = [...inThisProcess].find((other) => other.first <= last && first <= other.last);
    if (overlapping !== undefined) throw new Error(`stdio user ids ${first}-${last} overlap ${overlapping.first}-${overlapping.last}, already in use in this process`);
    inThisProcess.add(this);
    this.next = first;
    // Absolute whatever TMPDIR says: the clearing (CLEAR_ID) changes its working directory as it walks.
    this.homes = path.resolve(homesParent, `pcs-stdio-${first}-${last}`);
    this.ready = this.lock().then(() => this.clearLeftHomes());
    // Awaited by every start (ensureHomes) and at boot; unobserved until then.
    this.ready.catch(() => undefined);
  }

  /**
   * Settles once the range is this process's and what a crashed gateway left is cleared; rejects when another gateway
   * process on this host holds the range (each would kill the other's servers and clear their homes).
   */
  readonly ready: Promise<void>;
  private lockServer: Server | undefined;
  /** Ids being cleared (their processes have exited): a shutdown waits for them before it gives the range up. */
  private readonly clearing = new Set<Promise<void>>();

  /**
   * Binds the range's lock. Taken already by a process running as an id of the range (a server a crashed gateway left,
   * which bound the name to keep the next gateway from starting): every process of that id is killed, and the lock
   * taken again. Taken by anyone else: refused.
   */
  private async lock(): Promise<void> {
    const name = lockName(this.first, this.last);
    const giveUpAt = Date.now() + LOCK_TAKEBACK_MS;
    for (;;) {
      try {
        this.lockServer = await listenOn(name);
        await this.refuseOverlaps(giveUpAt);
        return;
      } catch (error) {
        if (error instanceof RangeOverlapError) {
          const server = this.lockServer;
          this.lockServer = undefined;
          server?.close();
          throw error;
        }
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
        // No holder found: it is going away (killed a moment ago), or out of sight (another PID namespace).
        const holders = holdersOf(name);
        const squatters = holders.every((uid) => uid >= this.first && uid <= this.last);
        if (!squatters || Date.now() >= giveUpAt) {
          throw new Error(`${this.host.uidRange ?? 'the stdio uid range'} ${this.first}-${this.last} is held by another process on this host: give each ${this.host.name} a range of its own, apart from every other's`, {
            cause: error,
          });
        }
        for (const uid of holders) killAllOf(uid);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }


  /**
   * Refuses a range that overlaps another process's on this host (their lock names differ, so binding ours did not
   * tell): both would hand one id to two servers, which could read each other's environments, and each would kill the
   * other's servers when clearing an id. Every lock is looked at once ours is bound, so of two processes starting at
   * once each sees the other's. A lock of an overlapping range held only by processes of our range's ids (a leftover
   * server squatting the name) is taken back as ours is; one whose holder cannot be seen is waited for until `giveUpAt`.
   */
  private async refuseOverlaps(giveUpAt: number): Promise<void> {
    for (;;) {
      const others = rangeLocks().filter((range) => range.first <= this.last && this.first <= range.last && !(range.first === this.first && range.last === this.last));
      if (others.length === 0) return;
      let waiting = false;
      for (const other of others) {
        const holders = holdersOf(lockName(other.first, other.last));
        if (holders.length > 0 && holders.every((uid) => uid >= this.first && uid <= this.last)) {
          for (const uid of holders) killAllOf(uid);
          waiting = true;
        } else if (holders.length > 0 || Date.now() >= giveUpAt) {
          throw new RangeOverlapError(
            `${this.host.uidRange ?? 'the stdio uid range'} ${this.first}-${this.last} overlaps ${other.first}-${other.last}, which another process on this host holds: give each ${this.host.name} a range of its own, apart from every other's`,
          );
        } else waiting = true;
      }
      if (waiting) await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Clears what a crashed gateway left: each home emptied as its owner (the owner's processes killed, see CLEAR_ID)
   * and removed; an id whose home cannot be cleared is retired.
   */
  private clearLeftHomes(): void {
    try {
      if (!lstatSync(this.homes).isDirectory()) unlinkSync(this.homes);
    } catch {
      // Nothing there.
    }
    this.ensureHomesSync();
    for (const name of readdirSync(this.homes)) {
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
        // Cleared as its owner only for an id of the range (whose processes may all be killed).
        else if (inRange && emptyAsOwnerSync(entry, owner)) rmdirSync(entry);
        else throw new Error('not emptied');
      } catch {
        if (inRange) this.retire(owner);
      }
    }
  }

  /** Gives the range up (shutdown), once the ids still being cleared are (or after CLEARING_WAIT_MS). */
  async release(): Promise<void> {
    await this.ready.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLEARING_WAIT_MS)));
    await Promise.race([Promise.allSettled([...this.clearing]), waited]);
    clearTimeout(timer);
    inThisProcess.delete(this);
    const server = this.lockServer;
    this.lockServer = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private ensureHomesSync(): void {
    try {
      mkdirSync(this.homes, { mode: 0o711 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const stat = lstatSync(this.homes);
    // Ours (the gateway's user) and a directory, or not used at all: another user may have raced for the name.
    if (!stat.isDirectory() || stat.uid !== process.getuid?.()) throw new Error(`${this.homes} is not a directory of the ${this.host.name}'s own`);
    // 0711 whatever the umask: others pass through to their own home, and list nothing.
    chmodSync(this.homes, 0o711);
  }

  /** The homes directory, made again if a /tmp cleaner removed it; refused if it is not the gateway's own directory. */
  async ensureHomes(): Promise<string> {
    await this.ready;
    try {
      await mkdir(this.homes, { mode: 0o711 });
      await chmod(this.homes, 0o711);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const stat = await lstat(this.homes);
    if (!stat.isDirectory() || stat.uid !== process.getuid?.()) throw new Error(`${this.homes} is not a directory of the ${this.host.name}'s own`);
    return this.homes;
  }

  /** Clears a process's id once it has exited (see CLEAR_ID): its home emptied as its owner, then the directory itself. */
  removeHome(home: string, owner: StdioUser): Promise<void> {
    const run = emptyAsOwner(home, owner).then(() => rmdir(home));
    this.clearing.add(run);
    const done = (): void => void this.clearing.delete(run);
    run.then(done, done);
    return run;
  }

  /** `uid` is no longer held by whoever took it (given back or retired). */
  private unhold(uid: number): void {
    const holder = this.holders.get(uid);
    if (holder === undefined) return;
    this.holders.delete(uid);
    const left = (this.heldBy.get(holder) ?? 1) - 1;
    if (left > 0) this.heldBy.set(holder, left);
    else this.heldBy.delete(holder);
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

  /**
   * A free id, now taken for `holder` (a tenant); undefined when every id of the range is taken, or when the range's
   * last quarter is reached and `holder` may not have one of it. So no tenant's servers take every id and leave the
   * other tenants' none (found by review; and then, by re-review, that a second tenant could still take the whole
   * quarter). Of the last quarter:
   * - the first half goes to holders below their share: the range size over the number of holders holding ids, the
   *   asker and one more counted (one still to come);
   * - the last eighth of the range goes only to holders that hold none, one each.
   * Alone a tenant holds at most the range less its last quarter; a range under 4 ids keeps nothing back.
   */
  take(holder = ''): StdioUser | undefined {
    if (this.taken.size >= this.size) return undefined;
    const held = this.heldBy.get(holder) ?? 0;
    const free = this.size - this.taken.size;
    const reserve = Math.floor(this.size / 4);
    if (held > 0 && free <= reserve) {
      if (free <= Math.floor(reserve / 2)) return undefined;
      const others = this.heldBy.size - 1;
      if (held >= Math.max(1, Math.floor(this.size / (others + 2)))) return undefined;
    }
    for (;;) {
      const id = this.next;
      this.next = id === this.last ? this.first : id + 1;
      if (!this.taken.has(id)) {
        this.taken.add(id);
        this.holders.set(id, holder);
        this.heldBy.set(holder, held + 1);
        return { uid: id, gid: id };
      }
    }
  }

  /** How many ids `holder` holds now (running processes, homes being cleared); tests and diagnostics. */
  heldFor(holder = ''): number {
    return this.heldBy.get(holder) ?? 0;
  }

  give(user: StdioUser): void {
    this.unhold(user.uid);
    if (!this.retiredIds.has(user.uid)) this.taken.delete(user.uid);
  }

  /** An id whose process left something behind that could not be removed: never handed out again by this gateway. */
  retire(user: StdioUser): void {
    this.unhold(user.uid);
    this.taken.add(user.uid);
    this.retiredIds.add(user.uid);
  }
}

/**
 * A new directory only `user` may enter (mkdtemp makes it 0700; then it is given to the user), under `parent`, for one
 * process's HOME, TMPDIR and working directory.
 */
export async function privateHome(parent: string, user: StdioUser): Promise<string> {
  const dir = await mkdtemp(path.join(parent, 'home-'));
  try {
    await chown(dir, user.uid, user.gid);
    return dir;
  } catch (error) {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}
