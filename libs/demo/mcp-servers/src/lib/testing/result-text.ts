const textOf = (block: unknown): string | undefined =>
  typeof block === 'object' && block !== null && 'text' in block && typeof block.text === 'string'
    ? block.text
    : undefined;

/** Text of a tool result's first text block (`''` if none); keeps test assertions short. */
export function toolResultText(result: object): string {
  const content = 'content' in result && Array.isArray(result.content) ? (result.content as unknown[]) : [];
  for (const block of content) {
    if (typeof block === 'object' && block !== null && 'type' in block && block.type === 'text') {
      return textOf(block) ?? '';
    }
  }
  return '';
}

/** Text of the first content of a `resources/read` result (`''` for a blob or nothing). */
export function resourceText(result: { readonly contents: readonly object[] }): string {
  return textOf(result.contents[0]) ?? '';
}
