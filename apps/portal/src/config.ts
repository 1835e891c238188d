import 'server-only';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { portalEnvSchema, type PortalConfig } from '@portcullis/portal/auth';

export type { PortalConfig };

let config: PortalConfig | undefined;

/**
 * The validated config. instrumentation.ts calls this when the server boots, so a bad environment
 * stops `next start` before it serves anything; `next build` never calls it.
 */
export function portalConfig(): PortalConfig {
  config ??= loadConfigOrExit('portal', portalEnvSchema);
  return config;
}
