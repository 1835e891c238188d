import type { Keyring } from '@portcullis/auth/secrets';

export const UPSTREAMS_OPTIONS = Symbol('UPSTREAMS_OPTIONS');

export interface UpstreamsOptions {
  /** Seals upstream headers and environment (CONTROL_PLANE_SECRETS_KEYRING). */
  readonly keyring: Keyring;
  /** Exact commands stdio upstreams may run (CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST). Empty: no stdio upstreams. */
  readonly stdioCommandAllowlist: readonly string[];
}
