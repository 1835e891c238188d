/** Text of a tool result's first text block (`''` if none); keeps test assertions short. */
export function toolResultText(result: { readonly content?: unknown }): string {
  const blocks = Array.isArray(result.content) ? (result.content as readonly unknown[]) : [];
  for (const block of blocks) {
    if (typeof block === 'object' && block !== null && 'type' in block && block.type === 'text' && 'text' in block) {
      return String(block.text);
    }
  }
  return '';
}
