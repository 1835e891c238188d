import { describe, expect, it } from 'vitest';
import { canSwitchUsers, ownStatus, stdioRangeWarning, stdioUserWarning } from './stdio-user';

const status = (capEff: string) => `Name:\tnode\nUid:\t0\t0\t0\t0\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;
const ALL = '000001ffffffffff';
const DOCKER_DEFAULT = '00000000a80425fb'; // Docker's default set: CAP_SETUID and CAP_SETGID included

describe('canSwitchUsers', () => {
  it('reads CAP_SETUID and CAP_SETGID from the effective set', () => {
    expect(canSwitchUsers(status(ALL))).toBe(true);
    expect(canSwitchUsers(status('00000000000000c0'))).toBe(true);
    expect(canSwitchUsers(status('0000000000000080'))).toBe(false);
    expect(canSwitchUsers(status('0000000000000000'))).toBe(false);
    expect(canSwitchUsers(status(DOCKER_DEFAULT))).toBe(true);
    expect(canSwitchUsers(status('00000000a804253b'))).toBe(false); // the same without those two
    expect(canSwitchUsers('Name:\tnode\n')).toBeUndefined();
  });

  it('answers for this process on Linux', () => {
    const own = ownStatus();
    if (own !== undefined) expect(typeof canSwitchUsers(own)).toBe('boolean');
  });
});

describe('stdioUserWarning', () => {
  const nobody = { uid: 65534, gid: 65534 };
  const root = { uid: 0, gid: 0 };
  const user = { uid: 1000, gid: 1000 };
  it('warns a root gateway without GATEWAY_STDIO_RUN_AS, and one that cannot switch to the configured ids', () => {
    expect(stdioUserWarning(undefined, root, status(ALL))).toMatch(/run as root/);
    expect(stdioUserWarning(undefined, user, status('0'))).toBeUndefined();
    // Root with the capabilities dropped (a container): the spawn would fail with EPERM.
    expect(stdioUserWarning(nobody, root, status('0'))).toMatch(/cannot start processes as that user/);
    expect(stdioUserWarning(nobody, user, status('0'))).toMatch(/cannot start processes as that user/);
    expect(stdioUserWarning(nobody, user, undefined)).toMatch(/cannot start processes as that user/);
    // Its own user but another group: setgid needs CAP_SETGID.
    expect(stdioUserWarning({ uid: 1000, gid: 2000 }, user, status('0'))).toMatch(/cannot start processes as that user/);
    expect(stdioUserWarning({ uid: 1000, gid: 2000 }, user, status('0000000000000080'))).toMatch(/cannot start processes as that user/);
  });

  it('stays quiet when the gateway can switch to the configured ids, or already has them', () => {
    expect(stdioUserWarning(nobody, root, status(ALL))).toBeUndefined();
    expect(stdioUserWarning(nobody, user, status('00000000000000c0'))).toBeUndefined();
    expect(stdioUserWarning(nobody, { uid: 65534, gid: 65534 }, status('0'))).toBeUndefined();
    expect(stdioUserWarning({ uid: 2000, gid: 1000 }, user, status('0000000000000080'))).toBeUndefined();
    expect(stdioUserWarning({ uid: 1000, gid: 2000 }, user, status('0000000000000040'))).toBeUndefined();
    expect(stdioUserWarning(nobody, root, undefined)).toBeUndefined();
  });
});

describe('stdioRangeWarning', () => {
  it("warns when the range holds the gateway's own user or group id", () => {
    const range = { first: 200_000, last: 200_999 };
    expect(stdioRangeWarning(range, { uid: 0, gid: 0 })).toBeUndefined();
    expect(stdioRangeWarning(range, { uid: 200_999, gid: 10 })).toMatch(/own user or group id/);
    expect(stdioRangeWarning(range, { uid: 10, gid: 200_000 })).toMatch(/own user or group id/);
    expect(stdioRangeWarning(range, { uid: undefined, gid: undefined })).toBeUndefined();
  });
});
