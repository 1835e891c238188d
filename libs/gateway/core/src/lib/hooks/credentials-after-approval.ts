import type { Principal } from '@portcullis/gateway/mcp';
import type { Authenticator } from '../auth/authenticator';
import { GatewayRequestError } from '../dispatch/session-engine';
import { GATEWAY_RPC } from '../http/gateway-error';
import type { RequestHooks, RequestInfo } from './request-hooks';

/**
 * The caller's credential checked once more after a wait. Authentication happened when the request arrived; a call
 * may then wait minutes for a human (an approval), or a `tasks/result` up to an hour for its task, during which the
 * key can be revoked or expire, its agent client be disabled or deleted, or its tenant be suspended. An approval covers
 * the call, not a credential that is gone, and a task's result is not handed to one: such a request is refused. Placed
 * after the policy hook; calls that were not held pass without a lookup.
 */
export function credentialsAfterApproval(authenticator: Pick<Authenticator, 'stillValid'>): RequestHooks {
  /** Throws when the request's credential is no longer good (or cannot be checked now); `waited` names what for. */
  const check = (info: RequestInfo, waited: string, data: Readonly<Record<string, unknown>>): void => {
    if (info.credentialId === undefined) return;
    const { record } = info;
    const principal: Principal = { tenantId: record.tenantId, kind: record.principalKind, id: record.principalId };
    const valid = authenticator.stillValid(info.credentialId, principal);
    if (valid === true) return;
    if (valid === 'unknown') {
      // Not revoked as far as anyone knows; it cannot be checked right now (the gateway's copy of keys is too old).
      throw new GatewayRequestError(
        GATEWAY_RPC.UNAVAILABLE,
        `The credential that made this request could not be checked again after ${waited} (credentials cannot be verified right now), so it was not answered; try again shortly.`,
        { reason: 'credentials_unverifiable', ...data, retryAfterSeconds: 5 },
        'error',
      );
    }
    throw new GatewayRequestError(
      GATEWAY_RPC.FORBIDDEN,
      `The credential that made this request was revoked, expired or disabled (or its tenant suspended) while it waited for ${waited}, so it was not answered.`,
      { reason: 'credential_no_longer_valid', ...data },
      'denied',
    );
  };
  return {
    admit: (info, _sink, _signal, prior) => {
      if (prior?.approvalId === undefined) return undefined;
      check(info, 'approval', { approvalId: prior.approvalId });
      return undefined;
    },
    recheck: (info) => check(info, "its task's result", {}),
  };
}
