import type { Keyring } from '@portcullis/auth/secrets';
import type { Logger } from '@portcullis/shared/util-logger';
import type { NetworkPolicy } from '@portcullis/shared/util-net-guard';

export const UPSTREAMS_OPTIONS = Symbol('UPSTREAMS_OPTIONS');

export interface UpstreamsOptions {
  /** Seals upstream headers and environment (CONTROL_PLANE_SECRETS_KEYRING). */
  readonly keyring: Keyring;
  /** Exact commands stdio upstreams may run (CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST). Empty: no stdio upstreams. */
  readonly stdioCommandAllowlist: readonly string[];
  /** The user and group stdio servers of test connections run as (CONTROL_PLANE_STDIO_RUN_AS); unset: our own. */
  readonly stdioRunAs?: { readonly uid: number; readonly gid: number } | undefined;
  /** Instead: one id of this range for each test's stdio server (CONTROL_PLANE_STDIO_UID_RANGE). */
  readonly stdioUidRange?: { readonly first: number; readonly last: number } | undefined;
  /** Test connection: the network policy the gateway applies too (CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE/_HOSTS). */
  readonly network?: NetworkPolicy;
  /** Bound on one test connection (CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS). Default 10 s. */
  readonly testTimeoutMs?: number;
  /**
   * Most definitions stored per upstream, those it no longer advertises included (CONTROL_PLANE_UPSTREAM_MAX_DEFINITIONS).
   * Default 25,000.
   */
  readonly maxStoredDefinitions?: number;
  readonly logger?: Logger;
}
