/**
 * Values frozen all the way down by `deepFreeze`, and only those: `Object.isFrozen` says nothing of what an object
 * holds, so caches that trust a value never to change (the JSON text of listing items, tool-pinning hashes) ask
 * `isDeepFrozen` instead.
 */
const deeplyFrozen = new WeakSet<object>();

/** Whether `value` went through `deepFreeze` (it and everything it holds can no longer change). */
export function isDeepFrozen(value: unknown): boolean {
  return typeof value === 'object' && value !== null && deeplyFrozen.has(value);
}

/**
 * Freezes `value` and every object and array it holds, and returns it. Values are registered as deep-frozen only once
 * the whole graph is frozen: if freezing fails part way (a typed array with elements, a proxy), the error is thrown and
 * nothing is registered. Cycles are followed once.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || deeplyFrozen.has(value)) return value;
  const visited: object[] = [];
  const seen = new Set<object>();
  const walk = (node: object): void => {
    if (seen.has(node) || deeplyFrozen.has(node)) return;
    seen.add(node);
    Object.freeze(node);
    visited.push(node);
    for (const child of Object.values(node)) if (typeof child === 'object' && child !== null) walk(child);
  };
  walk(value);
  for (const node of visited) deeplyFrozen.add(node);
  return value;
}
