import type { Logger } from '@portcullis/shared/util-logger';
import type { AccessTokenSettings } from './access-token';

export const AUTH_OPTIONS = Symbol('CONTROL_PLANE_AUTH_OPTIONS');

export interface ControlPlaneAuthOptions {
  readonly token: AccessTokenSettings;
  /**
   * Routes defined by shared infrastructure code that cannot carry `@Public()` (health and readiness probes), as
   * `"GET /healthz"`. Listed explicitly here so they appear in the route → permission snapshot like everything else.
   */
  readonly infrastructureRoutes: readonly string[];
  readonly logger: Logger;
}
