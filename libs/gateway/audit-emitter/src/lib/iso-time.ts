/** 9999-12-31T23:59:59.999Z + 1 ms: from here on `toISOString` writes a six-digit, signed year. */
const FOUR_DIGIT_YEARS_END = 253_402_300_800_000;

let cachedSecond = Number.NaN;
/** `YYYY-MM-DDTHH:MM:SS.` of `cachedSecond`. */
let cachedPrefix = '';

/**
 * `new Date(ms).toISOString()` for a whole number of milliseconds, with the date and time up to the second worked out
 * once per second: an audit event per call takes its time from here, and most calls of a second share it. Anything
 * outside 1970–9999 or not a whole number goes through `toISOString` itself.
 */
export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms >= FOUR_DIGIT_YEARS_END) return new Date(ms).toISOString();
  const milli = ms % 1_000;
  const second = ms - milli;
  if (second !== cachedSecond) {
    cachedPrefix = new Date(second).toISOString().slice(0, 20);
    cachedSecond = second;
  }
  return `${cachedPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}
