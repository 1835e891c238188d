import type { SessionRecord } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { GatewayRequestError } from '../dispatch/session-engine';
import { NO_STREAM } from '../dispatch/sinks';
import { GATEWAY_RPC } from '../http/gateway-error';
import type { RequestInfo } from './request-hooks';
import { credentialsAfterApproval } from './credentials-after-approval';

const record = { id: 's1', tenantId: 't1', principalKind: 'agent_client', principalId: 'a1' } as unknown as SessionRecord;
const info = { record, method: 'tools/call', requestId: 1, traceId: 'trace', startedAt: 0, credentialId: 'k1' } as RequestInfo;
const approved = { decision: 'require_approval' as const, approvalId: 'ap-1' };

function admit(valid: boolean | 'unknown', prior = approved as object | undefined): unknown {
  const hook = credentialsAfterApproval({ stillValid: () => valid });
  try {
    return hook.admit?.(info, NO_STREAM, new AbortController().signal, prior);
  } catch (error) {
    return error;
  }
}

describe('credentialsAfterApproval', () => {
  it('lets an approved call run while its credential is still good, and passes calls that were not held', () => {
    expect(admit(true)).toBeUndefined();
    expect(admit(false, { decision: 'allow' })).toBeUndefined();
  });

  it('refuses an approved call whose credential is gone, and answers "unavailable" when it cannot be checked now', () => {
    expect(admit(false)).toMatchObject({ rpcCode: GATEWAY_RPC.FORBIDDEN, outcome: 'denied', data: { reason: 'credential_no_longer_valid' } });
    const unknown = admit('unknown');
    expect(unknown).toBeInstanceOf(GatewayRequestError);
    expect(unknown).toMatchObject({ rpcCode: GATEWAY_RPC.UNAVAILABLE, outcome: 'error', data: { reason: 'credentials_unverifiable', approvalId: 'ap-1' } });
  });

  it('refuses a tasks/result that waited once its credential is gone (recheck), and passes one whose credential is good', () => {
    const recheck = (valid: boolean | 'unknown') => {
      try {
        credentialsAfterApproval({ stillValid: () => valid }).recheck?.({ ...info, method: 'tasks/result' });
        return undefined;
      } catch (error) {
        return error;
      }
    };
    expect(recheck(true)).toBeUndefined();
    expect(recheck(false)).toMatchObject({ rpcCode: GATEWAY_RPC.FORBIDDEN, outcome: 'denied', data: { reason: 'credential_no_longer_valid' } });
    expect(recheck('unknown')).toMatchObject({ rpcCode: GATEWAY_RPC.UNAVAILABLE, data: { reason: 'credentials_unverifiable' } });
    // A request made without a credential id (none to look up) passes.
    const hook = credentialsAfterApproval({ stillValid: () => false });
    expect(() => hook.recheck?.({ ...info, credentialId: undefined, method: 'tasks/result' } as RequestInfo)).not.toThrow();
  });
});
