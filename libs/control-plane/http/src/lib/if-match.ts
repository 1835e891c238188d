/**
 * The version an `If-Match` header names: a quoted or bare integer (weak `W/` tolerated), or undefined when the header
 * is missing. Anything else (including `*`, which would defeat the lost-update check) is null.
 */
export function parseIfMatch(header: string | string[] | undefined): number | null | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return undefined;
  const match = /^\s*(?:W\/)?"?(\d{1,9})"?\s*$/.exec(value);
  return match?.[1] === undefined ? null : Number(match[1]);
}
