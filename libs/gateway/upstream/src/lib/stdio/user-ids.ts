import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
    rmSync(this.homes, { recursive: true, force: true });
    // Fails if anything is there again (another user racing for the name): not ours, not used.
    mkdirSync(this.homes, { mode: 0o711 });
  }

  get size(): number {
    return this.last - this.first + 1;
  }

  get inUse(): number {
    return this.taken.size;
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
    this.taken.delete(user.uid);
  }

  /** An id whose process left something behind that could not be removed: never handed out again by this gateway. */
  retire(user: StdioUser): void {
    this.taken.add(user.uid);
  }
}
