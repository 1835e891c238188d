/**
 * Before/after documents of audit events go through this last line of defence: values under keys that name a
 * credential are replaced. (Responses already leave secrets out; this catches a future field that does not.)
 */
const SECRET_KEY = /(secret|password|passwd|token|authorization|cookie|credential|ciphertext|^headers$|^env$|^apikey$|^key$)/i;
export const REDACTED = '[redacted]';

export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([, child]) => child !== undefined)
        .map(([key, child]) => [key, SECRET_KEY.test(key) && child !== null ? REDACTED : redactSecrets(child)]),
    );
  }
  return value;
}
