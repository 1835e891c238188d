import { readFileSync } from 'node:fs';

/** CAP_SETGID (6) and CAP_SETUID (7): what starting a process as another user takes. */
const SET_IDS = (1n << 6n) | (1n << 7n);

/**
 * Whether a process with this `/proc/<pid>/status` text may start children as another user: both capabilities in its
 * effective set. Being root is not enough (containers often drop them), and not being root does not rule it out.
 * Undefined when the text says nothing of it.
 */
export function canSwitchUsers(status: string): boolean | undefined {
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  if (hex === undefined) return undefined;
  return (BigInt(`0x${hex}`) & SET_IDS) === SET_IDS;
}

/** The boot warning about the user stdio servers run as, if one is due. */
export function stdioUserWarning(runAs: { readonly uid: number } | undefined, uid: number | undefined, status: string | undefined): string | undefined {
  const switches = status === undefined ? undefined : canSwitchUsers(status);
  if (runAs === undefined) {
    return uid === 0 ? "stdio upstreams will run as root, able to read the gateway's environment: set GATEWAY_STDIO_RUN_AS (uid:gid)" : undefined;
  }
  if (runAs.uid === uid) return undefined;
  if (switches === false || (switches === undefined && uid !== 0)) {
    return 'GATEWAY_STDIO_RUN_AS is set but the gateway cannot start processes as another user (no CAP_SETUID/CAP_SETGID): stdio upstreams will fail to start';
  }
  return undefined;
}

/** This process's status text, where the system has one (Linux). */
export function ownStatus(): string | undefined {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
}
