import { readFileSync } from 'node:fs';

const CAP_SETGID = 1n << 6n;
const CAP_SETUID = 1n << 7n;

/** A capability set (`CapEff`, `CapPrm`, `CapAmb`) in a `/proc/<pid>/status` text; undefined when the text has none. */
function capabilitySet(status: string, set: 'CapEff' | 'CapPrm' | 'CapAmb' | 'CapInh'): bigint | undefined {
  const hex = new RegExp(`^${set}:\\s*([0-9a-f]+)$`, 'im').exec(status)?.[1];
  return hex === undefined ? undefined : BigInt(`0x${hex}`);
}

const effectiveCapabilities = (status: string): bigint | undefined => capabilitySet(status, 'CapEff');

/** The process that starts stdio servers, as its messages name it and the settings that choose their user. */
export interface StdioHost {
  /** `gateway`, `control plane`. */
  readonly name: string;
  /** The setting of one user and group for every server (`uid:gid`). */
  readonly runAs: string;
  /** The setting of a range of ids, one per server, where the process has one. */
  readonly uidRange?: string;
}

export const GATEWAY_STDIO_HOST: StdioHost = { name: 'gateway', runAs: 'GATEWAY_STDIO_RUN_AS', uidRange: 'GATEWAY_STDIO_UID_RANGE' };
export const CONTROL_PLANE_STDIO_HOST: StdioHost = { name: 'control plane', runAs: 'CONTROL_PLANE_STDIO_RUN_AS', uidRange: 'CONTROL_PLANE_STDIO_UID_RANGE' };

/** `RUN_AS or UID_RANGE`, or the one setting the host has. */
const settingsOf = (host: StdioHost): string => (host.uidRange === undefined ? host.runAs : `${host.runAs} or ${host.uidRange}`);

/**
 * Why this process must not start stdio servers as other users, if it must not: it is not root, yet holds CAP_SETUID
 * or CAP_SETGID (file capabilities on the node binary) or ambient capabilities. Linux drops capabilities when root
 * starts a process as another user, not when another user does: a server would keep ambient ones, or get the file's
 * back by running node, and could then become any user, root included (and clearing its id with `kill(-1)` would
 * reach every process). Any process, root too, with a non-empty inheritable set is refused as well. Fatal at boot with
 * the host's run-as or uid-range setting.
 */
export function inheritedCapabilitiesProblem(ownUid: number | undefined, status: string | undefined, host: StdioHost): string | undefined {
  if (ownUid === undefined || status === undefined) return undefined;
  // Root included: an inheritable set survives the switch, and a server running a binary with file-inheritable
  // capabilities gains them (Docker before 20.10.14 started containers so, CVE-2022-24769).
  if ((capabilitySet(status, 'CapInh') ?? 0n) !== 0n) {
    return `stdio servers would inherit capabilities: this ${host.name} has a non-empty inheritable capability set (CapInh); start it with an empty one for ${settingsOf(host)}, or unset those`;
  }
  if (ownUid === 0) return undefined;
  const permitted = capabilitySet(status, 'CapPrm') ?? 0n;
  const ambient = capabilitySet(status, 'CapAmb') ?? 0n;
  if (ambient === 0n && (permitted & (CAP_SETUID | CAP_SETGID)) === 0n) return undefined;
  return (
    `stdio servers would inherit the capabilities of this ${host.name}, which is not root (ambient capabilities, or CAP_SETUID/CAP_SETGID ` +
    `from file capabilities) and could become any user: run the ${host.name} as root for ${settingsOf(host)} ` +
    '(root drops its capabilities for them), or unset those'
  );
}

/**
 * Whether a process with this status text may start children as another user and group: CAP_SETUID and CAP_SETGID
 * in its effective set. Being root is not enough (containers often drop them), and not being root does not rule it
 * out. Undefined when the text says nothing of it.
 */
export function canSwitchUsers(status: string): boolean | undefined {
  const caps = effectiveCapabilities(status);
  return caps === undefined ? undefined : (caps & (CAP_SETUID | CAP_SETGID)) === (CAP_SETUID | CAP_SETGID);
}

/**
 * The boot warning about the user stdio servers run as, if one is due. `spawn` sets both ids: changing the user takes
 * CAP_SETUID, changing the group CAP_SETGID (without them only the host's own ids work).
 */
export function stdioUserWarning(
  runAs: { readonly uid: number; readonly gid: number } | undefined,
  own: { readonly uid: number | undefined; readonly gid: number | undefined },
  status: string | undefined,
  host: StdioHost,
): string | undefined {
  if (runAs === undefined) {
    return own.uid === 0 ? `stdio upstreams will run as root, able to read the ${host.name}'s environment: set ${host.runAs} (uid:gid)` : undefined;
  }
  const caps = status === undefined ? undefined : effectiveCapabilities(status);
  const needs = (runAs.uid === own.uid ? 0n : CAP_SETUID) | (runAs.gid === own.gid ? 0n : CAP_SETGID);
  if (needs === 0n) return undefined;
  // Without a status text (not Linux), root is taken to hold every capability.
  const held = caps ?? (own.uid === 0 ? needs : 0n);
  if ((held & needs) === needs) return undefined;
  return `${host.runAs} is set but the ${host.name} cannot start processes as that user and group (it lacks CAP_SETUID or CAP_SETGID): stdio upstreams will fail to start`;
}

/** Ids named in `/etc/passwd`- or `/etc/group`-style text: the third field (uid, or gid), and for passwd the fourth (gid). */
function idsIn(text: string, fields: readonly number[]): number[] {
  const ids: number[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const parts = line.split(':');
    for (const field of fields) {
      const text = parts[field];
      if (text !== undefined && /^\d+$/.test(text)) ids.push(Number(text));
    }
  }
  return ids;
}

/**
 * Why the host's uid range (GATEWAY_STDIO_UID_RANGE, CONTROL_PLANE_STDIO_UID_RANGE) cannot be used on this machine, if
 * it cannot: every id in it is handed to stdio servers as their user and group, so none may be an account or group
 * that exists (a server given gid `shadow`, `disk` or `docker` would have its rights), nor the host's own (that server
 * could read the host's environment). Checked against the local files; ids from a directory service (LDAP) are not
 * seen. Fatal at boot.
 */
export function stdioRangeProblem(
  range: { readonly first: number; readonly last: number },
  own: { readonly uid: number | undefined; readonly gid: number | undefined },
  files: { readonly passwd: string | undefined; readonly group: string | undefined },
  host: StdioHost = GATEWAY_STDIO_HOST,
): string | undefined {
  const setting = host.uidRange ?? host.runAs;
  const inRange = (id: number | undefined) => id !== undefined && id >= range.first && id <= range.last;
  if (inRange(own.uid) || inRange(own.gid)) return `${setting} holds the ${host.name}'s own user or group id: the stdio server given it could read the ${host.name}'s environment`;
  if (files.passwd === undefined || files.group === undefined) return `${setting} cannot be checked: /etc/passwd or /etc/group cannot be read`;
  const account = idsIn(files.passwd ?? '', [2, 3]).find(inRange);
  if (account !== undefined) return `${setting} holds id ${account}, which an account in /etc/passwd uses: choose ids no account or group has`;
  const group = idsIn(files.group ?? '', [2]).find(inRange);
  if (group !== undefined) return `${setting} holds id ${group}, a group in /etc/group (its rights would go to a stdio server): choose ids no account or group has`;
  return undefined;
}

/** A file's text, or undefined where it cannot be read. */
export function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** This process's status text, where the system has one (Linux). */
export function ownStatus(): string | undefined {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
}
