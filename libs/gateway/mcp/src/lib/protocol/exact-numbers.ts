/**
 * Numbers in a JSON text that `JSON.parse` cannot keep: an integer written past ±2^53 is rounded
 * (9007199254740993 becomes …992), a number past the double range becomes Infinity (and `null` once serialised again),
 * and a non-zero number below it becomes 0. The gateway parses what an agent sends and serialises it again for the
 * upstream, so any of them would reach the tool as another value than the agent wrote, with nothing said.
 */

/** Only a run of 16 digits or a three-digit exponent can be such a number: most bodies are passed by this one scan. */
const SUSPECT = /\d{16}|[eE][+-]?\d{3}/;

const MAX_SHOWN = 40;

/** What is wrong with one number literal, or undefined when the parse keeps its value. */
function literalProblem(literal: string): string | undefined {
  const value = Number(literal);
  const shown = literal.length > MAX_SHOWN ? `${literal.slice(0, MAX_SHOWN)}…` : literal;
  if (!Number.isFinite(value)) return `the number ${shown} is past the range of JSON numbers the gateway can pass on`;
  const exponent = literal.search(/[eE]/);
  const mantissa = exponent < 0 ? literal : literal.slice(0, exponent);
  if (value === 0 && /[1-9]/.test(mantissa)) return `the number ${shown} is too small to pass on (it would become 0)`;
  if (exponent < 0 && !literal.includes('.') && !Number.isSafeInteger(value) && BigInt(literal) !== BigInt(value)) {
    return `the integer ${shown} cannot be passed on exactly (integers beyond ±2^53 are rounded)`;
  }
  return undefined;
}

/**
 * The first number of `text` (well-formed JSON: call it after `JSON.parse` succeeded) whose value the parse changes,
 * described for an error message; undefined when there is none. Strings are skipped whole, escapes included.
 */
export function inexactNumberIn(text: string): string | undefined {
  if (!SUSPECT.test(text)) return undefined;
  const length = text.length;
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
      index += 1;
      while (index < length && /[0-9.eE+-]/.test(text[index] as string)) index += 1;
      const problem = literalProblem(text.slice(start, index));
      if (problem !== undefined) return problem;
    } else {
      index += 1;
    }
  }
  return undefined;
}
