/**
 * `value` without the slashes it ends with. By hand: `/\/+$/` is tried from every slash of a run, each time to its end,
 * so a value of many slashes and then a letter took time in the square of its length.
 */
export function withoutTrailingSlashes(value: string): string {
  let end = value.length;
  while (end > 0 && value.charCodeAt(end - 1) === 0x2f) end -= 1;
  return value.slice(0, end);
}
