import { randomBytes } from 'node:crypto';
import type { ProtocolVersion } from '../protocol/versions';

/** Who is calling, as authentication established it. Sessions are bound to this. */
export interface Principal {
  readonly tenantId: string;
  readonly kind: 'agent_client' | 'user';
  readonly id: string;
  /**
   * The credential this request presented (an API key's id). Not part of the session binding (any of a principal's
   * keys may use its sessions); a call that waited for approval is checked against it again before it goes on.
   */
  readonly credentialId?: string;
}

export interface SessionRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly principalKind: Principal['kind'];
  readonly principalId: string;
  readonly protocolVersion: ProtocolVersion;
  readonly clientInfo: { readonly name: string; readonly version: string } | null;
  readonly clientCapabilities: Readonly<Record<string, unknown>>;
  /**
   * Per upstream: the upstream's own session id (Streamable HTTP) and negotiated version, and the
   * capabilities from its initialize result (so a replica that resumes the session knows what it supports).
   */
  readonly upstreams: Readonly<
    Record<
      string,
      {
        readonly sessionId: string | null;
        readonly protocolVersion: string;
        readonly capabilities?: Readonly<Record<string, unknown>>;
      }
    >
  >;
  readonly createdAt: number;
}

/** 256 random bits, base64url: visible ASCII only, as the Streamable HTTP transport requires. */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;
export const isWellFormedSessionId = (value: string): boolean => SESSION_ID.test(value);

/**
 * A session is served only to the principal that created it, in the tenant it was created in. Any
 * mismatch is reported exactly like a missing session.
 */
export function sessionBelongsTo(record: SessionRecord, principal: Principal): boolean {
  return (
    record.tenantId === principal.tenantId &&
    record.principalKind === principal.kind &&
    record.principalId === principal.id
  );
}
