import type { Principal } from '@portcullis/gateway/mcp';
import type { Authenticator } from '../auth/authenticator';
import { GatewayRequestError } from '../dispatch/session-engine';
import { GATEWAY_RPC } from '../http/gateway-error';
import type { RequestHooks } from './request-hooks';

/**
 * The caller's credential checked once more for a call a person approved. Authentication happened when the request
 * arrived; the call may then wait minutes for a human, during which its key can be revoked or expire, its agent client
 * be disabled or deleted, or its tenant be suspended. An approval covers the call, not a credential that is gone, so
 * such a call is refused rather than run. Placed after the policy hook; calls that were not held pass without a lookup.
 */
export function credentialsAfterApproval(authenticator: Pick<Authenticator, 'stillValid'>): RequestHooks {
  return {
    admit: (info, _sink, _signal, prior) => {
      if (prior?.approvalId === undefined || info.credentialId === undefined) return undefined;
      const { record } = info;
      const principal: Principal = { tenantId: record.tenantId, kind: record.principalKind, id: record.principalId };
      const valid = authenticator.stillValid(info.credentialId, principal);
      if (valid === true) return undefined;
      if (valid === 'unknown') {
        // Not revoked as far as anyone knows; it cannot be checked right now (the gateway's copy of keys is too old).
        throw new GatewayRequestError(
          GATEWAY_RPC.UNAVAILABLE,
          'The credential that made this call could not be checked again after the approval (credentials cannot be verified right now), so it was not run; try again shortly.',
          { reason: 'credentials_unverifiable', approvalId: prior.approvalId, retryAfterSeconds: 5 },
          'error',
        );
      }
      throw new GatewayRequestError(
        GATEWAY_RPC.FORBIDDEN,
        'The credential that made this call was revoked, expired or disabled (or its tenant suspended) while the call waited for approval, so it was not run.',
        { reason: 'credential_no_longer_valid', approvalId: prior.approvalId },
        'denied',
      );
    },
  };
}
