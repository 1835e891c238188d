import type { Environment } from '@marcbachmann/cel-js';

/**
 * A time budget for conditions, enforced while they run.
 *
 * Conditions run synchronously on the gateway's event loop, over arguments the agent chooses. The work bound read off
 * each condition when it is saved (`conditionGrowth`/`workFor` in cel.ts) refuses what it can see is too costly, but it
 * is an estimate of cel-js's builtins, and reviews kept finding builtins it under-counted. This is the backstop: every
 * node cel-js evaluates below the root goes through its evaluator's `run`, which is wrapped here to read the clock and, once the
 * budget of the decision under way is spent, to fail every further node at once. A comprehension whose steps all fail
 * still walks its list, but each step costs a thrown, pre-built error (no stack trace is taken), so a spent budget
 * ends the condition within microseconds per element. One builtin already running is not interrupted: its cost is
 * bounded by its input, which the save-time bound and the request's size limit keep small.
 *
 * cel-js has no hook for this: the wrapper replaces `run` on the evaluator of the one environment the gateway
 * evaluates with (found by evaluating a probe, as `run`'s callers pass it along). The package is pinned; the spec
 * `condition-budget.spec.ts` fails if an upgrade routes evaluation around `run`.
 */

/** Milliseconds the conditions of one decision may run, together, before the rest fail safe. */
export const CONDITION_TIME_BUDGET_MS = 25;

/** Thrown out of a condition whose decision's budget is spent. One instance: throwing it takes no stack trace. */
export class ConditionBudgetExceeded extends Error {
  constructor() {
    super(`conditions ran past their time budget (${CONDITION_TIME_BUDGET_MS} ms a decision)`);
    this.name = 'ConditionBudgetExceeded';
  }
}
const EXCEEDED = new ConditionBudgetExceeded();

// The budget under way: evaluation is synchronous, so one at a time per process.
let deadline = Number.POSITIVE_INFINITY;
let spent = false;

/** The clock is read at every node: a single builtin can take milliseconds, so reading it every n-th node would let n of them run. */
function charge(): void {
  if (spent) throw EXCEEDED;
  if (performance.now() > deadline) {
    spent = true;
    throw EXCEEDED;
  }
}

interface EvaluatorLike {
  run(ast: unknown, context: unknown): unknown;
}

/** Wraps `run` on the evaluator `environment` evaluates with, so that every node it evaluates is charged. */
export function budgeted(environment: Environment): Environment {
  let evaluator: EvaluatorLike | undefined;
  const probe = environment.parse('true');
  const root = probe.ast as unknown as { evaluate: (ev: EvaluatorLike, ast: unknown, ctx: unknown) => unknown };
  const evaluate = root.evaluate;
  root.evaluate = function (this: unknown, ev, ast, ctx) {
    evaluator = ev;
    return evaluate.call(this, ev, ast, ctx);
  };
  probe({});
  if (evaluator === undefined || typeof evaluator.run !== 'function') {
    throw new Error('cel-js evaluator not found: the condition budget cannot be enforced with this version');
  }
  const run = evaluator.run;
  evaluator.run = function (this: EvaluatorLike, ast, context) {
    charge();
    return run.call(this, ast, context);
  };
  return environment;
}

/**
 * Substring searches (`contains`, `indexOf`, `split`, with an index or a limit too) in conditions, found when compiled
 * (`markSearches`). One builtin call is not interrupted by the budget, and V8's substring search costs text × needle
 * for a needle past 250 characters whose mismatch lies before its last 250 (its Boyer-Moore tables cover that many):
 * `args.text.contains(args.term)` with a 75,000-character term took 1.6 s on 225 KB. Such a needle is searched for in
 * linear time here; a shorter one, or anything but two strings, goes to cel-js as before.
 */
const SEARCHES = new Set(['contains', 'indexOf', 'split']);
/** The longest needle V8 finds in linear time. */
const LINEAR_NEEDLE = 250;

interface SearchNode {
  readonly args: readonly [string, unknown, readonly unknown[]];
  readonly handle: (values: unknown[], ev: EvaluatorLike, ast: unknown) => unknown;
}

/**
 * Gives the substring searches of a condition's syntax tree (cel-js's `rcall` nodes: name, receiver, arguments) an
 * evaluation of their own: cel-js evaluates a node through its `evaluate`, the root directly and the rest by `run`.
 */
export function markSearches(root: unknown): void {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      stack.push(...(node as unknown[]));
      continue;
    }
    if (typeof node !== 'object' || node === null) continue;
    const { op, args } = node as { op?: unknown; args?: unknown };
    if (typeof op !== 'string') continue;
    if (op === 'rcall' && Array.isArray(args) && SEARCHES.has(args[0] as string) && Array.isArray(args[2]) && (args[2].length === 1 || args[2].length === 2)) {
      (node as { evaluate: unknown }).evaluate = search;
    }
    if (Array.isArray(args)) stack.push(...(args as unknown[]));
    else stack.push(args);
  }
}

function search(this: unknown, ev: EvaluatorLike, node: SearchNode, context: unknown): unknown {
  const [name, receiverNode, argumentNodes] = node.args;
  const text = ev.run(receiverNode, context);
  const values = [text, ...argumentNodes.map((argument) => ev.run(argument, context))];
  const [, needle, second] = values;
  const long = typeof text === 'string' && typeof needle === 'string' && needle.length > LINEAR_NEEDLE;
  // `indexOf(needle, from)` and `split(separator, limit)` take an int (a bigint here); contains takes one argument.
  if (!long || (values.length === 3 && (typeof second !== 'bigint' || name === 'contains'))) {
    // As cel-js's own evaluation of the call does with the values it resolved (its errors and overloads included).
    return node.handle(values, ev, node);
  }
  if (name === 'contains') return linearIndexOf(text, needle) !== -1;
  if (name === 'indexOf') {
    if (second === undefined) return BigInt(linearIndexOf(text, needle));
    const from = Number(second);
    // Out of range: cel-js's own error, which it raises before searching.
    if (from < 0 || from >= text.length) return node.handle(values, ev, node);
    return BigInt(linearIndexOf(text, needle, from));
  }
  const parts = linearSplit(text, needle, linearIndexOf(text, needle));
  if (second === undefined) return parts;
  // cel-js's limit: 0 none, negative all, else the first limit - 1 parts and the rest joined.
  const limit = Number(second);
  if (limit === 0) return [];
  if (limit < 0 || parts.length <= limit) return parts;
  return [...parts.slice(0, limit - 1), parts.slice(limit - 1).join(needle)];
}

/** Knuth-Morris-Pratt: the table of the needle's longest proper prefix that is also a suffix, at each length. */
function prefixTable(needle: string): Int32Array {
  const table = new Int32Array(needle.length);
  let length = 0;
  for (let i = 1; i < needle.length; i += 1) {
    while (length > 0 && needle.charCodeAt(i) !== needle.charCodeAt(length)) length = table[length - 1] as number;
    if (needle.charCodeAt(i) === needle.charCodeAt(length)) length += 1;
    table[i] = length;
  }
  return table;
}

/** Where `needle` first occurs in `text` from `from` on, or -1, in time linear in both (UTF-16 code units, as indexOf). */
function linearIndexOf(text: string, needle: string, from = 0, table: Int32Array = prefixTable(needle)): number {
  let matched = 0;
  for (let i = from; i < text.length; i += 1) {
    while (matched > 0 && text.charCodeAt(i) !== needle.charCodeAt(matched)) matched = table[matched - 1] as number;
    if (text.charCodeAt(i) === needle.charCodeAt(matched)) matched += 1;
    if (matched === needle.length) return i - needle.length + 1;
  }
  return -1;
}

/** `text.split(separator)` for a non-empty separator, in linear time; `first` is where it first occurs. */
function linearSplit(text: string, separator: string, first: number): string[] {
  const table = prefixTable(separator);
  const parts: string[] = [];
  let start = 0;
  for (let at = first; at !== -1; at = linearIndexOf(text, separator, start, table)) {
    parts.push(text.slice(start, at));
    start = at + separator.length;
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * Runs `decide` (which evaluates the conditions of one decision) with a budget of `ms` milliseconds for all of them:
 * conditions run once it is spent throw `ConditionBudgetExceeded` at once (`runWithinBudget`), and fail safe.
 */
export function withConditionBudget<T>(decide: () => T, ms: number = CONDITION_TIME_BUDGET_MS): T {
  const outer = { deadline, spent };
  deadline = performance.now() + ms;
  spent = false;
  try {
    return decide();
  } finally {
    ({ deadline, spent } = outer);
  }
}

/**
 * `program(context)`, or `ConditionBudgetExceeded` if the budget ran out before or while it ran: a value (or an error)
 * reached after some of its parts failed for time (CEL's `||` and `exists` pass over errors) is not its answer.
 */
export function runWithinBudget<C, T>(program: (context: C) => T, context: C): T {
  if (spent) throw EXCEEDED;
  let result: T;
  try {
    result = program(context);
  } catch (error) {
    // An error of its own that `exists` kept (it throws the first it met) while later steps failed for time.
    throw spent ? EXCEEDED : error;
  }
  if (spent) throw EXCEEDED;
  return result;
}
