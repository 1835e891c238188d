import { describe, expect, it } from 'vitest';
import { canSwitchUsers, ownStatus, stdioUserWarning } from './stdio-user';

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
  const nobody = { uid: 65534 };
  it('warns a root gateway without GATEWAY_STDIO_RUN_AS, and one that cannot switch users with it', () => {
    expect(stdioUserWarning(undefined, 0, status(ALL))).toMatch(/run as root/);
    expect(stdioUserWarning(undefined, 1000, status('0'))).toBeUndefined();
    // Root with the capabilities dropped (a container): the spawn would fail with EPERM.
    expect(stdioUserWarning(nobody, 0, status('0'))).toMatch(/cannot start processes as another user/);
    expect(stdioUserWarning(nobody, 1000, status('0'))).toMatch(/cannot start processes as another user/);
    expect(stdioUserWarning(nobody, 1000, undefined)).toMatch(/cannot start processes as another user/);
  });

  it('stays quiet when the gateway can switch users, or already is the configured user', () => {
    expect(stdioUserWarning(nobody, 0, status(ALL))).toBeUndefined();
    expect(stdioUserWarning(nobody, 1000, status('00000000000000c0'))).toBeUndefined();
    expect(stdioUserWarning(nobody, 65534, status('0'))).toBeUndefined();
    expect(stdioUserWarning(nobody, 0, undefined)).toBeUndefined();
  });
});
