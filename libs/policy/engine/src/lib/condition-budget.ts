import type { Environment } from '@marcbachmann/cel-js';

/**
 * A time budget for conditions, enforced while they run.
 *
 * Conditions run synchronously on the gateway's event loop, over arguments the agent chooses. The work bound read off
 * each condition when it is saved (`conditionGrowth`/`workFor` in cel.ts) refuses what it can see is too costly, but it
 * is an estimate of cel-js's builtins, and reviews kept finding builtins it under-counted. This is the backstop: every
 * node cel-js evaluates goes through its evaluator's `run`, which is wrapped here to read the clock and, once the
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
 * Runs `decide` (which evaluates the conditions of one decision) with a budget of `ms` milliseconds for all of them,
 * and tells whether it ran out. Conditions evaluated after that throw `ConditionBudgetExceeded` at once.
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
