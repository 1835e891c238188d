import { credentialMaskOf, maskValue, REDACTED, secretMaskOf, type SecretMask } from '@portcullis/shared/util-redact';
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
 * A result with the upstream's secrets masked where they may be quoted back. A tool's error result (`isError`, what the
 * SDKs make of an exception thrown in a tool: `invalid token …`) with every configured value; any other result (a
 * tool's output, a resource's contents, a prompt, a completion) with the unmistakable credentials only
 * (`credentialMaskOf`): a server reporting a refused call as plain text, or a debug tool echoing the request it made,
 * must not show the agent the token the gateway injected, while an ordinary configured value (a path, a region) that
 * the output names in its own right stays readable. The same object when nothing needed masking.
 */
export function maskResult(config: UpstreamConfig, result: Record<string, unknown>): Record<string, unknown> {
  const isError = result['isError'] === true;
  const mask: SecretMask = isError ? secretMaskOf(config) : credentialMaskOf(config);
  if (mask.longest === 0) return result;
  try {
    return maskValue(mask, result) as Record<string, unknown>;
  } catch {
    // Never thrown by design; the caller settles a call with this, and must not be left hanging.
    return isError ? { content: [{ type: 'text', text: REDACTED }], isError: true } : { content: [{ type: 'text', text: REDACTED }] };
  }
}
