/**
 * Numbers in a JSON text that `JSON.parse` does not keep. JavaScript reads every JSON number as a 64-bit float, and
 * writes it back as the shortest decimal that reads as the same float: for most numbers that is the very value written
 * (`0.1`, `1e300`, `123456789012345`), but not for one with more significant digits than a float holds
 * (`9007199254740993` is written back as …992, `9007199254740993.0` and `1.00000000000000000001` too), one past the
 * float range (`1e400` becomes Infinity, then `null`) or a non-zero one below it (`1e-400` becomes 0). A process that
 * parses JSON and serialises it again for someone else (the gateway forwarding a tool call, the control plane storing
 * an approver's edit) would pass on another value than the one it was sent, and nobody would be told.
 */

/**
 * Only a literal of 16 or more digits (a dot among them allowed) or with a three-digit exponent can be such a number:
 * any other is written back as it was. Most texts pass this one scan.
 */
const SUSPECT = /\d[\d.]{15}|[eE][+-]?\d{3}/;

const MAX_SHOWN = 40;

/**
 * A decimal number's text (a JSON literal, or what `String` writes for a number) as its sign, the position of its first
 * significant digit, how many significant digits run from it to the last, and the power of ten of the first; undefined
 * for zero. One pass by character code, nothing built: done per literal of every body.
 */
interface Decimal {
  readonly negative: boolean;
  readonly first: number;
  readonly significant: number;
  readonly magnitude: number;
  /** The exponent has more than five digits (leading zeros, or a value past any float's). */
  readonly longExponent: boolean;
}

function decimalOf(text: string, start: number, end: number): Decimal | undefined {
  let digits = 0;
  let first = -1;
  let firstDigit = -1;
  let lastDigit = -1;
  let pointAt = -1;
  let index = start;
  for (; index < end; index += 1) {
    const code = text.charCodeAt(index);
    if (code >= 0x30 && code <= 0x39) {
      if (code !== 0x30) {
        if (first < 0) {
          first = index;
          firstDigit = digits;
        }
        lastDigit = digits;
      }
      digits += 1;
    } else if (code === 0x2e) pointAt = digits;
    else if (code === 0x65 || code === 0x45) break;
  }
  if (first < 0) return undefined;
  let exponent = 0;
  let longExponent = false;
  if (index < end) {
    let at = index + 1;
    const negativeExponent = text.charCodeAt(at) === 0x2d;
    if (negativeExponent || text.charCodeAt(at) === 0x2b) at += 1;
    longExponent = end - at > 5;
    for (; at < end; at += 1) exponent = exponent * 10 + (text.charCodeAt(at) - 0x30);
    if (negativeExponent) exponent = -exponent;
  }
  return {
    negative: text.charCodeAt(start) === 0x2d,
    first,
    significant: lastDigit - firstDigit + 1,
    magnitude: exponent + (pointAt < 0 ? digits : pointAt) - firstDigit - 1,
    longExponent,
  };
}

/** Whether two decimals' texts are the same number: sign, power of ten and significant digits (points skipped). */
function sameDecimal(a: string, da: Decimal, b: string, db: Decimal): boolean {
  if (da.negative !== db.negative || da.magnitude !== db.magnitude || da.significant !== db.significant) return false;
  let i = da.first;
  let j = db.first;
  for (let left = da.significant; left > 0; left -= 1) {
    if (a.charCodeAt(i) === 0x2e) i += 1;
    if (b.charCodeAt(j) === 0x2e) j += 1;
    if (a.charCodeAt(i) !== b.charCodeAt(j)) return false;
    i += 1;
    j += 1;
  }
  return true;
}

/** Where the number literal starting at `start` ends (by character code: its characters are `0-9 . e E + -`). */
function literalEnd(text: string, start: number): number {
  let index = start + 1;
  for (; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (!((code >= 0x30 && code <= 0x39) || code === 0x2e || code === 0x2b || code === 0x2d || code === 0x65 || code === 0x45)) break;
  }
  return index;
}

/**
 * Whether the parse may change the literal `text[start, end)`: only one of more than 15 significant digits, or whose
 * magnitude is near the ends of the float range (past 10^±290), or whose exponent has more than five digits. Any other
 * is a normal float that reads back as written (15 significant digits always do). Worked out in one pass by character
 * code: working every long literal out in full kept a body of exact 16-character numbers at eleven times its parse
 * (found by re-review).
 */
function mayChange(text: string, start: number, end: number): boolean {
  const decimal = decimalOf(text, start, end);
  if (decimal === undefined) return false; // zero, whatever its exponent
  return decimal.significant > 15 || decimal.longExponent || decimal.magnitude > 290 || decimal.magnitude < -290;
}

/** What is wrong with one number literal, or undefined when the parse keeps its value. */
function literalProblem(literal: string): string | undefined {
  const value = Number(literal);
  // Written as JavaScript writes it back: kept (the common case among long literals).
  if (String(value) === literal) return undefined;
  const shown = literal.length > MAX_SHOWN ? `${literal.slice(0, MAX_SHOWN)}…` : literal;
  if (!Number.isFinite(value)) return `the number ${shown} is past the range of JSON numbers that can be passed on`;
  const asWritten = decimalOf(literal, 0, literal.length);
  if (value === 0) return asWritten === undefined ? undefined : `the number ${shown} is too small to be passed on (it would become 0)`;
  const back = String(value);
  const asRead = decimalOf(back, 0, back.length);
  // Compared digit by digit, nothing built: every literal spelled otherwise than JavaScript writes it (a trailing zero,
  // `1.5e300` for `1.5e+300`) comes here, and regex work and strings for each kept a body at ten times its parse (found
  // by re-review).
  if (asWritten !== undefined && asRead !== undefined && sameDecimal(literal, asWritten, back, asRead)) return undefined;
  return `the number ${shown} cannot be passed on exactly (numbers are read as 64-bit floating point: at most 15 to 17 significant digits)`;
}

/**
 * Every number of `text` whose value the parse changes, by the top-level element it is in (the index within a
 * top-level array; 0 for any other text), the first one of each described for an error message. `text` must be
 * well-formed JSON (call it once `JSON.parse` has succeeded); strings are skipped whole, escapes included. Undefined
 * when there is none.
 */
export function inexactNumbersByElement(text: string): ReadonlyMap<number, string> | undefined {
  if (!SUSPECT.test(text)) return undefined;
  let found: Map<number, string> | undefined;
  const length = text.length;
  const topArray = text.charCodeAt(text.search(/\S/)) === 0x5b;
  let depth = 0;
  let element = 0;
  let index = 0;
  while (index < length) {
    const code = text.charCodeAt(index);
    if (code === 0x22) {
      // A string: to its closing quote, stepping over escaped characters.
      index += 1;
      while (index < length) {
        const inner = text.charCodeAt(index);
        if (inner === 0x5c) index += 2;
        else {
          index += 1;
          if (inner === 0x22) break;
        }
      }
    } else if (code === 0x2d || (code >= 0x30 && code <= 0x39)) {
      const start = index;
      const end = literalEnd(text, index);
      index = end;
      if (found?.has(element) !== true && mayChange(text, start, end)) {
        const problem = literalProblem(text.slice(start, end));
        if (problem !== undefined) (found ??= new Map()).set(element, problem);
      }
    } else {
      if (code === 0x5b || code === 0x7b) depth += 1;
      else if (code === 0x5d || code === 0x7d) depth -= 1;
      else if (code === 0x2c && depth === 1 && topArray) element += 1;
      index += 1;
    }
  }
  return found;
}

/** The first number of `text` whose value the parse changes, described for an error message (see above). */
export function inexactNumberIn(text: string): string | undefined {
  const found = inexactNumbersByElement(text);
  return found === undefined ? undefined : [...found.values()][0];
}
