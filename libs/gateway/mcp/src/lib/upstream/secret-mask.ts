import { maskValue, REDACTED, secretMaskOf } from '@portcullis/shared/util-redact';
import { UpstreamRpcError, type UpstreamConfig } from './upstream';

/**
 * An upstream's JSON-RPC error with the secrets the gateway configured for it masked in its message and data: an
 * upstream that quotes the credential it was sent (`invalid token Bearer …`) must not show it to the agent, nor write
 * it into the gateway's log. The same error when nothing needed masking.
 */
export function maskUpstreamError(config: UpstreamConfig, error: UpstreamRpcError): UpstreamRpcError {
  const mask = secretMaskOf(config);
  if (mask.longest === 0) return error;
  const message = typeof error.message === 'string' ? mask.mask(error.message) : error.message;
  let data: unknown;
  try {
    data = maskValue(mask, error.data);
  } catch {
    data = undefined; // never thrown by design; the caller settles a call with this, and must not be left hanging
  }
  if (message === error.message && data === error.data) return error;
  return new UpstreamRpcError(error.code, message, data);
}

/**
 * A result with the upstream's secrets masked where they may be quoted back: a tool's error result (`isError`, what
 * the SDKs make of an exception thrown in a tool: `invalid token …`). Other results pass as they are, untouched and
 * unread beyond one property, since they are the tool's output.
 */
export function maskErrorResult(config: UpstreamConfig, result: Record<string, unknown>): Record<string, unknown> {
  if (result['isError'] !== true) return result;
  const mask = secretMaskOf(config);
  if (mask.longest === 0) return result;
  try {
    return maskValue(mask, result) as Record<string, unknown>;
  } catch {
    // Never thrown by design; the caller settles a call with this, and must not be left hanging.
    return { content: [{ type: 'text', text: REDACTED }], isError: true };
  }
}
