/**
 * Whether `error` is V8's RangeError for a recursion that ran out of stack, and nothing else. JSON.parse accepts
 * input nested to any depth, while JSON.stringify and every walk of a value recurse: this is how a value nested too
 * deeply to handle shows itself.
 */
export function isStackExhausted(error: unknown): boolean {
  return error instanceof RangeError && /call stack/i.test(error.message);
}
