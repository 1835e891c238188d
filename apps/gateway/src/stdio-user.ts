import { readFileSync } from 'node:fs';

const CAP_SETGID = 1n << 6n;
const CAP_SETUID = 1n << 7n;

/** The effective capability set in a `/proc/<pid>/status` text; undefined when the text has none. */
function effectiveCapabilities(status: string): bigint | undefined {
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  return hex === undefined ? undefined : BigInt(`0x${hex}`);
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
 * CAP_SETUID, changing the group CAP_SETGID (without them only the gateway's own ids work).
 */
export function stdioUserWarning(
  runAs: { readonly uid: number; readonly gid: number } | undefined,
  own: { readonly uid: number | undefined; readonly gid: number | undefined },
  status: string | undefined,
): string | undefined {
  if (runAs === undefined) {
    return own.uid === 0 ? "stdio upstreams will run as root, able to read the gateway's environment: set GATEWAY_STDIO_RUN_AS (uid:gid)" : undefined;
  }
  const caps = status === undefined ? undefined : effectiveCapabilities(status);
  const needs = (runAs.uid === own.uid ? 0n : CAP_SETUID) | (runAs.gid === own.gid ? 0n : CAP_SETGID);
  if (needs === 0n) return undefined;
  // Without a status text (not Linux), root is taken to hold every capability.
  const held = caps ?? (own.uid === 0 ? needs : 0n);
  if ((held & needs) === needs) return undefined;
  return 'GATEWAY_STDIO_RUN_AS is set but the gateway cannot start processes as that user and group (it lacks CAP_SETUID or CAP_SETGID): stdio upstreams will fail to start';
}

/** The boot warning about a GATEWAY_STDIO_UID_RANGE that holds the gateway's own user or group id, if it does. */
export function stdioRangeWarning(range: { readonly first: number; readonly last: number }, own: { readonly uid: number | undefined; readonly gid: number | undefined }): string | undefined {
  const inRange = (id: number | undefined) => id !== undefined && id >= range.first && id <= range.last;
  return inRange(own.uid) || inRange(own.gid)
    ? "GATEWAY_STDIO_UID_RANGE holds the gateway's own user or group id: the stdio server given it can read the gateway's environment"
    : undefined;
}

/** This process's status text, where the system has one (Linux). */
export function ownStatus(): string | undefined {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
}
