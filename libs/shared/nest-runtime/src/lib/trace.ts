import { randomBytes } from 'node:crypto';

const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/;

/**
 * The trace id for a request: taken from a valid W3C `traceparent` header, otherwise a fresh random one.
 * Returned in every error so an operator can find the request's log lines.
 */
export function traceIdFrom(headers: Record<string, string | string[] | undefined>): string {
  const header = headers['traceparent'];
  const value = Array.isArray(header) ? header[0] : header;
  const match = value ? TRACEPARENT.exec(value.trim().toLowerCase()) : null;
  if (match?.[1] && !/^0+$/.test(match[1])) return match[1];
  return randomBytes(16).toString('hex');
}
