import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONTROL_PLANE_STDIO_HOST } from './stdio-user';
import { StdioUserIds } from './user-ids';

const parent = mkdtempSync(path.join(tmpdir(), 'user-ids-spec-'));
// Passable by the range's users, as /tmp is.
chmodSync(parent, 0o711);
// rm copes with any depth (fs.rmSync overflows the stack on the deep trees a failed spec would leave).
/** Directories a spec made outside `parent` (in /tmp, as a server would). */
const outside: string[] = [];
afterAll(() => void spawnSync('rm', ['-rf', parent, ...outside]));

describe('StdioUserIds', () => {
  it('hands out each id of the range once, group the same number, round the range so a freed id is taken last', () => {
    const ids = new StdioUserIds(10, 12, parent);
    const [a, b, c] = [ids.take(), ids.take(), ids.take()];
    expect([a, b, c]).toEqual([{ uid: 10, gid: 10 }, { uid: 11, gid: 11 }, { uid: 12, gid: 12 }]);
    expect(ids.take()).toBeUndefined();
    expect(ids.inUse).toBe(3);
    ids.give({ uid: 11, gid: 11 });
    ids.give({ uid: 10, gid: 10 });
    // The cursor is past 12: 10 comes round first, then 11; nothing else is free.
    expect(ids.take()).toEqual({ uid: 10, gid: 10 });
    expect(ids.take()).toEqual({ uid: 11, gid: 11 });
    expect(ids.take()).toBeUndefined();
    // A retired id is never handed out again, even once given back, and is not counted as running.
    ids.retire({ uid: 12, gid: 12 });
    expect([ids.inUse, ids.retired]).toEqual([2, 1]);
    ids.give({ uid: 12, gid: 12 });
    ids.give({ uid: 10, gid: 10 });
    expect([ids.inUse, ids.retired]).toEqual([1, 1]);
    expect(ids.take()).toEqual({ uid: 10, gid: 10 });
    expect(ids.take()).toBeUndefined();
  });

  it('keeps the last quarter of the range from a tenant holding its share, so another tenant still gets an id', async () => {
    const ids = new StdioUserIds(30, 37, parent);
    const taken = (holder: string, count: number) => Array.from({ length: count }, () => ids.take(holder));
    // Alone, tenant a gets the range less its last quarter (8 ids, 2 kept back), not every id.
    expect(taken('a', 6).every((user) => user !== undefined)).toBe(true);
    expect(ids.take('a')).toBeUndefined();
    // Tenant b, holding none, gets one of the ids kept back; the last one it may not take: that is for a tenant holding
    // none, and c gets it.
    const first = ids.take('b');
    expect(first).toBeDefined();
    expect(ids.take('b')).toBeUndefined();
    expect(ids.take('c')).toBeDefined();
    expect([ids.heldFor('a'), ids.heldFor('b'), ids.heldFor('c')]).toEqual([6, 1, 1]);
    // Full now: nobody gets one until one is given back, and then the tenant without any does, not the one holding most.
    expect(ids.take('d')).toBeUndefined();
    ids.give({ uid: 30, gid: 30 });
    expect(ids.take('a')).toBeUndefined();
    expect(ids.take('b')).toBeUndefined();
    expect(ids.take('d')).toEqual({ uid: 30, gid: 30 });
    // A retired id no longer counts as held by anyone.
    ids.retire(first as { uid: number; gid: number });
    expect([ids.heldFor('b'), ids.inUse, ids.retired]).toEqual([0, 7, 1]);
    await ids.release();
  });

  it('leaves the last eighth of a range to tenants holding none, whatever a second tenant takes (found by re-review)', async () => {
    const ids = new StdioUserIds(1_000, 1_049, parent); // 50 ids: 12 kept back, the last 6 for tenants holding none
    const takeAll = (holder: string): number => {
      let taken = 0;
      while (ids.take(holder) !== undefined) taken += 1;
      return taken;
    };
    expect(takeAll('a')).toBe(38);
    expect(takeAll('b')).toBe(6);
    // Six more tenants get one each; nobody gets a second.
    for (const holder of ['c', 'd', 'e', 'f', 'g', 'h']) expect(takeAll(holder)).toBe(1);
    expect(ids.inUse).toBe(50);
    await ids.release();
  });

  it('keeps nothing back in a range under 4 ids: one tenant may take them all', async () => {
    const ids = new StdioUserIds(40, 42, parent);
    expect([ids.take('a'), ids.take('a'), ids.take('a')].every((user) => user !== undefined)).toBe(true);
    expect(ids.heldFor('a')).toBe(3);
    await ids.release();
  });

  it('empties the homes directory of its range when set up (what a crashed gateway left), passable but not listable by others', async () => {
    const left = path.join(parent, 'pcs-stdio-20-29', 'home-old');
    mkdirSync(left, { recursive: true });
    writeFileSync(path.join(left, 'token'), 'secret');
    // Whatever the umask, the directory is 0711.
    const umask = process.umask(0o077);
    try {
      const ids = new StdioUserIds(20, 29, parent);
      await ids.ready;
      expect(ids.homes).toBe(path.join(parent, 'pcs-stdio-20-29'));
      expect(existsSync(left)).toBe(false);
      expect(statSync(ids.homes).mode & 0o777).toBe(0o711);
    } finally {
      process.umask(umask);
    }
  });

  it.runIf(process.getuid?.() === 0)('removes a left home as its owner, and makes the homes directory again if it was removed', async () => {
    const homes = path.join(parent, 'pcs-stdio-200300-200301');
    const left = path.join(homes, 'home-old');
    mkdirSync(path.join(left, 'cache'), { recursive: true });
    writeFileSync(path.join(left, 'cache', 'token'), 'secret');
    for (const p of [left, path.join(left, 'cache'), path.join(left, 'cache', 'token')]) chownSync(p, 200_300, 200_300);
    // A link the old server made to a file of root's: removing the home as its owner removes the link, not the file.
    const rootsFile = path.join(parent, 'roots-file');
    writeFileSync(rootsFile, 'keep');
    symlinkSync(rootsFile, path.join(left, 'cache', 'link'));
    const ids = new StdioUserIds(200_300, 200_301, parent);
    await ids.ready;
    expect(existsSync(left)).toBe(false);
    expect(readFileSync(rootsFile, 'utf8')).toBe('keep');
    rmSync(homes, { recursive: true });
    expect(await ids.ensureHomes()).toBe(homes);
    expect(statSync(homes).mode & 0o777).toBe(0o711);
  });

  it.runIf(process.getuid?.() === 0)('gives back the id of a server that left trees deeper than PATH_MAX in its home and in /tmp, when it exits and at boot', async () => {
    // One id for every tenant's servers: a tree a server can make in well under a second retired it for good (found
    // by review: removal by absolute paths failed past PATH_MAX), and no stdio server of any tenant started after.
    const deepTree = (cwd: string, uid: number) => {
      const made = spawnSync(process.execPath, ['-e', "const fs=require('fs');for(let i=0;i<2500;i++){fs.mkdirSync('d');process.chdir('d')}fs.writeFileSync('f','x')"], { cwd, uid, gid: uid, env: {} });
      expect(made.status).toBe(0);
    };
    const ids = new StdioUserIds(200_900, 200_900, parent);
    await ids.ready;
    const user = ids.take() as { uid: number; gid: number };
    const home = path.join(await ids.ensureHomes(), 'home-deep');
    mkdirSync(home, { mode: 0o700 });
    chownSync(home, user.uid, user.gid);
    deepTree(home, user.uid);
    const inTmp = mkdtempSync(path.join('/tmp', 'pcs-deep-'));
    outside.push(inTmp);
    chownSync(inTmp, user.uid, user.gid);
    deepTree(inTmp, user.uid);
    await ids.removeHome(home, user);
    ids.give(user);
    expect([existsSync(home), existsSync(inTmp), ids.retired]).toEqual([false, false, 0]);
    expect(ids.take()).toEqual(user);
    await ids.release();

    // A crashed gateway's left home, cleared at boot.
    const left = path.join(parent, 'pcs-stdio-200900-200900', 'home-left');
    mkdirSync(left, { mode: 0o700 });
    chownSync(left, user.uid, user.gid);
    deepTree(left, user.uid);
    const again = new StdioUserIds(200_900, 200_900, parent);
    await again.ready;
    expect([existsSync(left), again.retired]).toEqual([false, 0]);
    expect(again.take()).toEqual(user);
    await again.release();
  }, 60_000);

  it('refuses a range another gateway process on this host holds until it ends, and one overlapping a range in use in this process', async () => {
    // Another process holding the range's lock (as a gateway does while it runs).
    const holder = spawn(process.execPath, ['-e', "require('net').createServer().listen({ path: '\\0portcullis-stdio-uids-200400-200401' }, () => console.log('held'))"], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((resolve) => holder.stdout.once('data', resolve));
    const refused = new StdioUserIds(200_400, 200_401, parent);
    await expect(refused.ready).rejects.toThrow(/GATEWAY_STDIO_UID_RANGE 200400-200401 is held by another process on this host/);
    // Nothing was cleared or started for it: no home can be made.
    await expect(refused.ensureHomes()).rejects.toThrow(/held by another process/);
    await refused.release();
    // The holder gone (however it ended), the range is free at once: the kernel drops the lock with the process.
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    const ids = new StdioUserIds(200_400, 200_401, parent);
    await ids.ready;
    expect(() => new StdioUserIds(200_401, 200_405, parent)).toThrow(/overlap 200400-200401, already in use in this process/);
    // Released (shutdown): the range may be set up again, here or in another process.
    await ids.release();
    const again = new StdioUserIds(200_401, 200_405, parent);
    await again.ready;
    await again.release();
  });

  // Before, only a range identical to another process's was refused: a control plane given 200705-200714 beside a gateway
  // on 200700-200709 booted, and its test servers ran as the gateway's servers' ids (found by re-review).
  it('refuses a range overlapping one another process on this host holds, and takes back one a range id squats', async () => {
    const hold = (name: string, uid?: number) => {
      const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen({ path: '\\0${name}' }, () => console.log('held'))`], {
        stdio: ['ignore', 'pipe', 'inherit'],
        ...(uid === undefined ? {} : { uid, gid: uid }),
      });
      return new Promise<typeof holder>((resolve) => holder.stdout.once('data', () => resolve(holder)));
    };
    const gateway = await hold('portcullis-stdio-uids-200700-200709');
    try {
      const overlapping = new StdioUserIds(200_705, 200_714, parent, CONTROL_PLANE_STDIO_HOST);
      await expect(overlapping.ready).rejects.toThrow(/CONTROL_PLANE_STDIO_UID_RANGE 200705-200714 overlaps 200700-200709, which another process on this host holds/);
      await overlapping.release();
      // Its own lock went with the refusal: the range is free for a process that does not overlap.
      const apart = new StdioUserIds(200_710, 200_714, parent);
      await apart.ready;
      await apart.release();
    } finally {
      gateway.kill('SIGKILL');
      await new Promise((resolve) => gateway.once('exit', resolve));
    }
    // A leftover server of the range (running as one of its ids) binding an overlapping name cannot keep it from starting.
    const squatter = await hold('portcullis-stdio-uids-200713-200730', 200_712);
    const ids = new StdioUserIds(200_710, 200_714, parent);
    await ids.ready;
    expect(squatter.exitCode !== null || squatter.signalCode !== null || (await new Promise((resolve) => squatter.once('exit', resolve)))).toBeTruthy();
    await ids.release();
  });

  it('accepts no connection on its lock (nobody can pile up descriptors in the gateway through it), and still releases', async () => {
    const ids = new StdioUserIds(200_600, 200_601, parent);
    await ids.ready;
    const closed = await new Promise<boolean>((resolve) => {
      const client = connect({ path: '\0portcullis-stdio-uids-200600-200601' });
      client.on('error', () => resolve(true));
      client.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 2_000).unref();
    });
    expect(closed).toBe(true);
    await ids.release();
  });

  it.runIf(process.getuid?.() === 0)("takes its lock back from a process of the range's own ids that bound it first (a crashed gateway's leftover)", async () => {
    const squatter = spawn(process.execPath, ['-e', "require('net').createServer().listen({ path: '\\0portcullis-stdio-uids-200500-200501' }, () => console.log('held'))"], {
      stdio: ['ignore', 'pipe', 'inherit'],
      uid: 200_500,
      gid: 200_500,
    });
    await new Promise((resolve) => squatter.stdout.once('data', resolve));
    const ids = new StdioUserIds(200_500, 200_501, parent);
    await ids.ready;
    await new Promise((resolve) => (squatter.exitCode !== null || squatter.signalCode !== null ? resolve(undefined) : squatter.once('exit', resolve)));
    expect(squatter.signalCode).toBe('SIGKILL');
    await ids.release();
  });

  it('refuses a range that includes root or runs backwards', () => {
    expect(() => new StdioUserIds(0, 5, parent)).toThrow(RangeError);
    expect(() => new StdioUserIds(5, 4, parent)).toThrow(RangeError);
    expect(new StdioUserIds(7, 7, parent).size).toBe(1);
  });
});
