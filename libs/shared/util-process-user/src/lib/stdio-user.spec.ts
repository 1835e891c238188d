import { describe, expect, it } from 'vitest';
import { canSwitchUsers, GATEWAY_STDIO_HOST as host, inheritedCapabilitiesProblem, ownStatus, stdioRangeProblem, stdioUserWarning, type StdioHost } from './stdio-user';

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
    expect(stdioUserWarning(undefined, root, status(ALL), host)).toMatch(/run as root/);
    expect(stdioUserWarning(undefined, user, status('0'), host)).toBeUndefined();
    // Root with the capabilities dropped (a container): the spawn would fail with EPERM.
    expect(stdioUserWarning(nobody, root, status('0'), host)).toMatch(/cannot start processes as that user/);
    expect(stdioUserWarning(nobody, user, status('0'), host)).toMatch(/cannot start processes as that user/);
    expect(stdioUserWarning(nobody, user, undefined, host)).toMatch(/cannot start processes as that user/);
    // Its own user but another group: setgid needs CAP_SETGID.
    expect(stdioUserWarning({ uid: 1000, gid: 2000 }, user, status('0'), host)).toMatch(/cannot start processes as that user/);
    expect(stdioUserWarning({ uid: 1000, gid: 2000 }, user, status('0000000000000080'), host)).toMatch(/cannot start processes as that user/);
  });

  it('names the process and the setting it has', () => {
    const controlPlane: StdioHost = { name: 'control plane', runAs: 'CONTROL_PLANE_STDIO_RUN_AS' };
    expect(stdioUserWarning(undefined, root, status(ALL), controlPlane)).toBe(
      "stdio upstreams will run as root, able to read the control plane's environment: set CONTROL_PLANE_STDIO_RUN_AS (uid:gid)",
    );
    expect(inheritedCapabilitiesProblem(1000, `CapPrm:\t00000000000000c0\nCapAmb:\t0\n`, controlPlane)).toMatch(
      /^stdio servers would inherit the capabilities of this control plane, .* run the control plane as root for CONTROL_PLANE_STDIO_RUN_AS \(/,
    );
    expect(inheritedCapabilitiesProblem(1000, `CapPrm:\t00000000000000c0\nCapAmb:\t0\n`, host)).toMatch(/for GATEWAY_STDIO_RUN_AS or GATEWAY_STDIO_UID_RANGE/);
  });

  it('stays quiet when the gateway can switch to the configured ids, or already has them', () => {
    expect(stdioUserWarning(nobody, root, status(ALL), host)).toBeUndefined();
    expect(stdioUserWarning(nobody, user, status('00000000000000c0'), host)).toBeUndefined();
    expect(stdioUserWarning(nobody, { uid: 65534, gid: 65534 }, status('0'), host)).toBeUndefined();
    expect(stdioUserWarning({ uid: 2000, gid: 1000 }, user, status('0000000000000080'), host)).toBeUndefined();
    expect(stdioUserWarning({ uid: 1000, gid: 2000 }, user, status('0000000000000040'), host)).toBeUndefined();
    expect(stdioUserWarning(nobody, root, undefined, host)).toBeUndefined();
  });
});

describe('inheritedCapabilitiesProblem', () => {
  const withSets = (prm: string, amb: string) => `Name:\tnode\nCapPrm:\t${prm}\nCapEff:\t${prm}\nCapAmb:\t${amb}\n`;
  it('refuses a gateway that is not root but could pass CAP_SETUID/CAP_SETGID or ambient capabilities to its servers', () => {
    // Ambient CAP_SETUID + CAP_SETGID + CAP_KILL, as a systemd AmbientCapabilities= line gives them.
    expect(inheritedCapabilitiesProblem(1000, withSets('00000000000000e0', '00000000000000e0'), host)).toMatch(/could become any user/);
    // File capabilities on the node binary: permitted, not ambient; a server running node gets them back.
    expect(inheritedCapabilitiesProblem(1000, withSets('00000000000000c0', '0000000000000000'), host)).toMatch(/could become any user/);
    // Any ambient capability at all.
    expect(inheritedCapabilitiesProblem(1000, withSets('0000000000000400', '0000000000000400'), host)).toMatch(/could become any user/);
  });

  it('refuses any gateway, root too, with a non-empty inheritable set (a server could gain capabilities from a file)', () => {
    expect(inheritedCapabilitiesProblem(0, `${withSets(ALL, '0000000000000000')}CapInh:\t00000000a80425fb\n`, host)).toMatch(/inheritable capability set/);
    expect(inheritedCapabilitiesProblem(0, `${withSets(ALL, '0000000000000000')}CapInh:\t0000000000000000\n`, host)).toBeUndefined();
  });

  it('lets root through (its capabilities are dropped for servers started as another user), and a user without them', () => {
    expect(inheritedCapabilitiesProblem(0, withSets(ALL, '0000000000000000'), host)).toBeUndefined();
    expect(inheritedCapabilitiesProblem(1000, withSets('0000000000000000', '0000000000000000'), host)).toBeUndefined();
    expect(inheritedCapabilitiesProblem(1000, withSets('0000000000000400', '0000000000000000'), host)).toBeUndefined();
    expect(inheritedCapabilitiesProblem(1000, undefined, host)).toBeUndefined();
  });
});

describe('stdioRangeProblem', () => {
  const range = { first: 200_000, last: 200_999 };
  const root = { uid: 0, gid: 0 };
  const passwd = 'root:x:0:0:root:/root:/bin/bash\n# a comment\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
  const group = 'root:x:0:\nshadow:x:42:\ndocker:x:999:alice\n';

  it('takes a range no account, group or the gateway itself uses', () => {
    expect(stdioRangeProblem(range, root, { passwd, group })).toBeUndefined();
    // An id field that is not a number names nothing (not 0).
    expect(stdioRangeProblem({ first: 1, last: 5 }, { uid: 100, gid: 100 }, { passwd: 'odd:x: :1x:\n+::::::\n', group: 'g:x::\n' })).toBeUndefined();
  });

  it('refuses to take one it cannot check', () => {
    expect(stdioRangeProblem(range, root, { passwd: undefined, group })).toMatch(/cannot be checked/);
    expect(stdioRangeProblem(range, root, { passwd, group: undefined })).toMatch(/cannot be checked/);
  });

  it("refuses one that holds the gateway's ids, an account's uid or primary group, or a group", () => {
    expect(stdioRangeProblem(range, { uid: 200_999, gid: 10 }, { passwd, group })).toMatch(/gateway's own user or group id/);
    expect(stdioRangeProblem(range, { uid: 10, gid: 200_000 }, { passwd, group })).toMatch(/gateway's own user or group id/);
    expect(stdioRangeProblem({ first: 65_000, last: 66_000 }, root, { passwd, group })).toMatch(/id 65534, which an account in \/etc\/passwd uses/);
    expect(stdioRangeProblem({ first: 1, last: 1_000 }, root, { passwd, group: '' })).toBeUndefined();
    expect(stdioRangeProblem({ first: 1, last: 1_000 }, root, { passwd, group })).toMatch(/id 42, a group in \/etc\/group/);
    expect(stdioRangeProblem({ first: 900, last: 999 }, root, { passwd, group })).toMatch(/id 999/);
  });
});
