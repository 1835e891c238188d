import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import { cidrContains, parseCidr, parseIp, type Cidr } from './cidr';
import { budgeted, markSearches, runWithinBudget } from './condition-budget';

/**
 * CEL conditions. Two environments over the same variables and functions:
 * - the checking environment declares the exact shape of `principal`, `target` and `request`, so a typo such
 *   as `principal.grups` fails when the policy is saved;
 * - the runtime environment declares them as maps, which evaluates several times faster (no per-call
 *   conversion into typed objects).
 *
 * Restrictions enforced at compile time, because conditions run on the gateway hot path against
 * agent-controlled arguments:
 * - no `matches` (JavaScript regular expressions can backtrack catastrophically);
 * - no nested comprehensions (`all`/`exists`/`map`/`filter` inside another one: quadratic in argument size);
 * - no time-zone overloads of timestamp accessors (`getHours("Europe/Berlin")` costs ~150 µs per call in the
 *   library); use `hourIn`, `minuteIn`, `dayOfWeekIn`, which cache their formatter;
 * - structural limits on size and depth.
 */

const LIMITS = { maxAstNodes: 500, maxDepth: 32, maxListElements: 256, maxMapEntries: 256, maxCallArguments: 8 };

const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'existsOne', 'map', 'filter']);
const TIMESTAMP_ACCESSORS = new Set([
  'getDate',
  'getDayOfMonth',
  'getDayOfWeek',
  'getDayOfYear',
  'getFullYear',
  'getHours',
  'getMilliseconds',
  'getMinutes',
  'getMonth',
  'getSeconds',
]);
const TIME_ZONE_FUNCTIONS = new Set(['hourIn', 'minuteIn', 'dayOfWeekIn']);

// ----- custom functions -------------------------------------------------------------------------------------

const cidrCache = new Map<string, Cidr | null>();
function cachedCidr(text: string): Cidr | null {
  let cidr = cidrCache.get(text);
  if (cidr === undefined) {
    cidr = parseCidr(text);
    // CIDR strings come from policies (bounded), but stay defensive about dynamic ones.
    if (cidrCache.size > 10_000) cidrCache.clear();
    cidrCache.set(text, cidr);
  }
  return cidr;
}

function inCidr(ip: string, cidrText: string): boolean {
  const cidr = cachedCidr(cidrText);
  if (cidr === null) throw new Error(`inCidr: invalid CIDR ${JSON.stringify(cidrText)}`);
  const address = parseIp(ip);
  if (address === null) throw new Error('inCidr: the request IP is not a valid address');
  return cidrContains(cidr, address);
}

interface ZonedParts {
  readonly hour: bigint;
  readonly minute: bigint;
  readonly dayOfWeek: bigint;
}
const WEEKDAYS: Record<string, bigint> = { Sun: 0n, Mon: 1n, Tue: 2n, Wed: 3n, Thu: 4n, Fri: 5n, Sat: 6n };
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    // Throws RangeError for an unknown zone: at compile time for literals, as an evaluation error otherwise.
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      hour: '2-digit',
      minute: '2-digit',
      weekday: 'short',
    });
    if (formatters.size > 1_000) formatters.clear();
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

// Conditions usually ask several questions about the same instant (`hourIn(...) >= 8 && hourIn(...) < 18`).
let lastZoned: { time: number; timeZone: string; parts: ZonedParts } | null = null;

function zoned(time: Date, timeZone: string): ZonedParts {
  const ms = time.getTime();
  if (lastZoned !== null && lastZoned.time === ms && lastZoned.timeZone === timeZone) return lastZoned.parts;
  const parts = computeZoned(time, timeZone);
  lastZoned = { time: ms, timeZone, parts };
  return parts;
}

function computeZoned(time: Date, timeZone: string): ZonedParts {
  let hour = 0n;
  let minute = 0n;
  let dayOfWeek = 0n;
  for (const part of formatterFor(timeZone).formatToParts(time)) {
    if (part.type === 'hour') hour = BigInt(part.value);
    else if (part.type === 'minute') minute = BigInt(part.value);
    else if (part.type === 'weekday') dayOfWeek = WEEKDAYS[part.value] ?? 0n;
  }
  return { hour, minute, dayOfWeek };
}

function withFunctions(env: Environment): Environment {
  return env
    .registerFunction('inCidr(string, string): bool', inCidr)
    .registerFunction('google.protobuf.Timestamp.hourIn(string): int', (t: Date, tz: string) => zoned(t, tz).hour)
    .registerFunction('google.protobuf.Timestamp.minuteIn(string): int', (t: Date, tz: string) => zoned(t, tz).minute)
    .registerFunction(
      'google.protobuf.Timestamp.dayOfWeekIn(string): int',
      (t: Date, tz: string) => zoned(t, tz).dayOfWeek,
    );
}

const checkingEnvironment = withFunctions(
  new Environment({ limits: LIMITS })
    .registerVariable('args', 'map<string, dyn>')
    .registerVariable({
      name: 'principal',
      schema: { userId: 'string', agentClientId: 'string', role: 'string', groups: 'list<string>' },
    })
    .registerVariable({ name: 'target', schema: { kind: 'string', upstream: 'string', name: 'string' } })
    .registerVariable({ name: 'request', schema: { time: 'google.protobuf.Timestamp', ip: 'string' } }),
);

/** What conditions run with: every node it evaluates is charged to the decision's time budget (condition-budget.ts). */
const runtimeEnvironment = budgeted(
  withFunctions(
    new Environment({ limits: LIMITS })
      .registerVariable('args', 'map<string, dyn>')
      .registerVariable('principal', 'map<string, dyn>')
      .registerVariable('target', 'map<string, dyn>')
      .registerVariable('request', 'map<string, dyn>'),
  ),
);

// ----- compile ----------------------------------------------------------------------------------------------

/** What a condition sees. Absent identities are empty strings; `groups` is empty for non-members. */
export interface ConditionContext {
  readonly args: Readonly<Record<string, unknown>>;
  readonly principal: {
    readonly userId: string;
    readonly agentClientId: string;
    readonly role: string;
    readonly groups: readonly string[];
  };
  readonly target: { readonly kind: string; readonly upstream: string; readonly name: string };
  readonly request: { readonly time: Date; readonly ip: string };
}

/**
 * A compiled condition, and which parts of the request it reads: a decision made without the call's arguments (or
 * without its address) treats a condition that reads them as unknown.
 */
export type ConditionProgram = ((context: ConditionContext) => unknown) & {
  readonly readsArguments: boolean;
  readonly readsAddress: boolean;
  /** What it can build, and so how much work it can do for a request of a given size (`conditionGrowth`). */
  readonly growth: ConditionGrowth;
};

export type ConditionCompileResult =
  | { readonly ok: true; readonly program: ConditionProgram }
  | { readonly ok: false; readonly message: string };

const firstLine = (message: string): string => message.split('\n', 1)[0] ?? message;

interface AstLike {
  readonly op: string;
  readonly args: unknown;
}
const isNode = (value: unknown): value is AstLike =>
  typeof value === 'object' && value !== null && typeof (value as { op?: unknown }).op === 'string';

/** Returns the first restriction the expression breaks, or null. */
function lint(root: ASTNode): string | null {
  // `inBody`: within a comprehension's predicate or transform (run once per element), not its range.
  const visit = (node: AstLike, comprehensionDepth: number, inBody: boolean): string | null => {
    let bodyFrom: unknown[] | undefined;
    if (node.op === 'call' || node.op === 'rcall') {
      const args = node.args as unknown[];
      const name = args[0] as string;
      const callArgs = (node.op === 'call' ? args[1] : args[2]) as unknown[];
      if (name === 'matches') return 'regular expressions (`matches`) are not allowed in conditions';
      // Once per element, a list (or a decoded value) per element: quadratic in the text. Made once, outside, the
      // values it makes count against the arguments' bound (evaluate.ts).
      if (inBody && TEXT_EXPANDING.has(name)) {
        return `${name} is not allowed inside all/exists/map/filter: make the list once outside (cel.bind), then compare with it`;
      }
      if (node.op === 'rcall' && TIMESTAMP_ACCESSORS.has(name) && callArgs.length > 0) {
        return `${name}(timeZone) is too slow for the gateway; use hourIn, minuteIn or dayOfWeekIn`;
      }
      if (node.op === 'rcall' && TIME_ZONE_FUNCTIONS.has(name)) {
        const zone = callArgs[0];
        if (isNode(zone) && zone.op === 'value' && typeof zone.args === 'string' && !isValidTimeZone(zone.args)) {
          return `unknown time zone ${JSON.stringify(zone.args)}`;
        }
      }
      if (node.op === 'call' && name === 'inCidr') {
        const cidr = callArgs[1];
        if (isNode(cidr) && cidr.op === 'value' && typeof cidr.args === 'string' && parseCidr(cidr.args) === null) {
          return `invalid CIDR ${JSON.stringify(cidr.args)}`;
        }
      }
      // Parsing a duration the request sends backtracks (cel-js's pattern): 2,000 digits took 2.6 s, 8,000 over 3 min.
      if (node.op === 'call' && name === 'duration' && !isLiteral(callArgs[0])) return 'duration() takes a literal only in conditions';
      // V8's lastIndexOf compares at each position: text × needle (1 MB against 20,000 characters, 5.6 s).
      if (node.op === 'rcall' && name === 'lastIndexOf' && !(isLiteral(callArgs[0]) && String((callArgs[0] as AstLike).args).length <= MAX_LAST_INDEX_NEEDLE)) {
        return `lastIndexOf takes a literal of at most ${MAX_LAST_INDEX_NEEDLE} characters to look for in conditions`;
      }
      if (node.op === 'rcall' && COMPREHENSIONS.has(name) && callArgs.length >= 2) {
        if (comprehensionDepth >= 1) return 'nested comprehensions (all/exists/map/filter) are not allowed';
        bodyFrom = callArgs;
      }
    }
    const children: unknown[] = Array.isArray(node.args) ? node.args : [node.args];
    // A comprehension's range is not its body: one over another's result (`xs.filter(…).all(…)`) is linear, not nested.
    const stack = children.map((child) => ({ child, body: child === bodyFrom }));
    while (stack.length > 0) {
      const { child, body } = stack.pop() as { child: unknown; body: boolean };
      if (isNode(child)) {
        const found = visit(child, body ? comprehensionDepth + 1 : comprehensionDepth, inBody || body);
        if (found !== null) return found;
      } else if (Array.isArray(child)) {
        for (const grandchild of child as unknown[]) stack.push({ child: grandchild, body });
      }
    }
    return null;
  };
  return visit(root as unknown as AstLike, 0, false);
}

/** Longest literal a condition's `lastIndexOf` may look for (its cost is the text's length times this). */
const MAX_LAST_INDEX_NEEDLE = 64;
const isLiteral = (node: unknown): boolean => isNode(node) && node.op === 'value';

/** Most work a condition may do out of its literals alone (`workFor` with an empty request), checked when compiled. */
const MAX_LITERAL_WORK = 1_000_000;

/** Functions whose result holds up to one value per character of their receiver: a list, or a map or list decoded. */
const TEXT_EXPANDING = new Set(['split', 'json']);
/** Functions whose result is no larger than their receiver (or first argument). */
const SIZE_PRESERVING = new Set(['lowerAscii', 'upperAscii', 'trim', 'substring', 'string', 'dyn', 'filter']);
/**
 * Operations that cost far more than a comparison a unit of what they go through, counted as this many operations:
 * `split` and `json` make a string or an object per few characters (`JSON.parse` of `{},{},…` about 14 ns a character,
 * `split("")` about as much). Before, each counted one, and a condition decoding 4 MB five times ran 2.8 s.
 */
const HEAVY_OPERATIONS: ReadonlyMap<string, number> = new Map([
  ['json', 16],
  ['split', 16],
]);
/** Functions whose result is up to twice as large as their receiver (`hex`: two digits a byte). */
const SIZE_DOUBLING = new Set(['hex', 'base64']);
/** Identifiers that hold what the request brings (the agent chooses their size). */
const REQUEST_VALUES = new Set(['args', 'target', 'principal', 'request']);
/** Nodes that name or pick a value rather than work on one (not counted as operations). */
const PLACES = new Set(['value', 'id', '.', '[]', '.?', '[?]', 'list', 'map']);
/** Past this a bound is as good as unbounded. */
const MAX_BOUND = 1e12;

/**
 * A bound linear in the request's size: `values` × its values (array elements and object entries) + `characters` ×
 * its characters (of strings and keys, and the target's name) + `fixed`.
 */
export interface Bound {
  readonly values: number;
  readonly characters: number;
  readonly fixed: number;
}
const ZERO: Bound = { values: 0, characters: 0, fixed: 0 };
const cap = (n: number): number => Math.min(MAX_BOUND, n);
const plus = (a: Bound, b: Bound): Bound => ({ values: cap(a.values + b.values), characters: cap(a.characters + b.characters), fixed: cap(a.fixed + b.fixed) });
const scaled = (a: Bound, n: number): Bound => ({ values: cap(a.values * n), characters: cap(a.characters * n), fixed: cap(a.fixed * n) });
const wider = (a: Bound, b: Bound): Bound => ({ values: Math.max(a.values, b.values), characters: Math.max(a.characters, b.characters), fixed: Math.max(a.fixed, b.fixed) });
/** A bound's value for a request of `values` values and `characters` characters. */
export const boundFor = (bound: Bound, values: number, characters: number): number => bound.values * values + bound.characters * characters + bound.fixed;

/** A value's bounds: how much there is to go through once (its elements and characters), and how many elements. */
interface Measure {
  readonly size: Bound;
  readonly count: Bound;
  /** The value is (part of) one element of a range, each step another: together no larger than the range. */
  readonly elementOf?: Bound;
}
const NOTHING: Measure = { size: ZERO, count: ZERO };
const both = (a: Measure, b: Measure): Measure => ({ size: plus(a.size, b.size), count: plus(a.count, b.count) });
const either = (a: Measure, b: Measure): Measure => ({ size: wider(a.size, b.size), count: wider(a.count, b.count) });

/** What a condition can do, found on its syntax tree (`ConditionProgram.growth`). */
export interface ConditionGrowth {
  /** The largest value it can hold: what one operation (a search, an `in`, a comparison, a `size`) may go through. */
  readonly largest: Bound;
  /** Its longest range (all/exists/map/filter, over the request's values, text split, or literals): its steps. */
  readonly steps: Bound | null;
  /** Its operations (calls and operators): each may go through the largest value once a step. */
  readonly operations: number;
  /**
   * Its `in`s: each compares its needle with every element of its list, and comparing two maps reads both maps' keys
   * first, so one costs the list's elements × the needle's size (a 666-key map `in` a list of 666 maps, per step of a
   * comprehension over 660 values, took 6.5 s), beyond one pass over the largest value.
   */
  readonly searches: readonly { readonly elements: Bound; readonly needle: Bound }[];
  /**
   * Its `in`s whose needle is the element of a comprehension's range: their needles are, over all its steps, no
   * larger than the range together (`needle`), so they cost elements × the range once, not at each step.
   */
  readonly elementSearches: readonly { readonly elements: Bound; readonly needle: Bound }[];
}

/**
 * The most work a condition may do for a request of `values` values and `characters` characters: steps × operations
 * × largest value. Before, a condition that only read was bounded by values × characters alone, which counted one pass
 * over the text per value: a blocklist of 80 literal terms searched in 4 MB took 2 s, twenty `size()`s a step 2.1 s,
 * and 120 `in`s of values in values 1.3 s; and one that built text or lists (`s + s + s + s`, split and searched per
 * element; a list copied in nested `cel.bind`s) took seconds from a few hundred characters.
 */
export const workFor = (growth: ConditionGrowth, values: number, characters: number): number => {
  let perStep = growth.operations * boundFor(growth.largest, values, characters);
  for (const search of growth.searches) perStep += boundFor(search.elements, values, characters) * boundFor(search.needle, values, characters);
  let once = 0;
  for (const search of growth.elementSearches) once += boundFor(search.elements, values, characters) * boundFor(search.needle, values, characters);
  return Math.max(1, growth.steps === null ? 1 : boundFor(growth.steps, values, characters)) * perStep + once;
};

/**
 * How large the values of an expression can grow with the request, and how many elements they hold, found on its
 * syntax tree: `args`, `target`, … hold up to all of the request (its values and characters), and up to its values as
 * elements; a literal its own size; `a + b` both; `cel.bind` names a value's bounds for its expression; `map` its
 * range's elements each built from one element and literals; `split` and `json` an element per character. A `map`
 * whose expression uses more than its own variable and literals (a copy of the rest per element) and a `join` with a
 * separator other than a literal are refused.
 */
function conditionGrowth(root: ASTNode): { growth: ConditionGrowth; problem: string | null } {
  let largest = ZERO;
  let steps: Bound | null = null;
  let operations = 0;
  const searches: { elements: Bound; needle: Bound }[] = [];
  const elementSearches: { elements: Bound; needle: Bound }[] = [];
  let problem: string | null = null;
  const literalSize = (value: unknown): number => (typeof value === 'string' ? value.length : value instanceof Uint8Array ? value.length : 1);
  const measure = (node: unknown, bound: ReadonlyMap<string, Measure>): Measure => {
    if (problem !== null || !isNode(node)) return NOTHING;
    if (!PLACES.has(node.op)) {
      const called = node.op === 'call' || node.op === 'rcall' ? ((node.args as unknown[])[0] as string) : undefined;
      operations += (called === undefined ? undefined : HEAVY_OPERATIONS.get(called)) ?? 1;
    }
    const result = ((): Measure => {
      switch (node.op) {
        case 'value':
          return { size: { ...ZERO, fixed: literalSize(node.args) }, count: ZERO };
        case 'id': {
          const known = bound.get(node.args as string);
          if (known !== undefined) return known;
          return REQUEST_VALUES.has(node.args as string) ? { size: { values: 1, characters: 1, fixed: 0 }, count: { values: 1, characters: 0, fixed: 0 } } : NOTHING;
        }
        case '.':
        case '[]':
        case '.?':
        case '[?]': {
          const [object, index] = node.args as unknown[];
          measure(index, bound);
          return measure(object, bound);
        }
        case '+': {
          const [left, right] = node.args as unknown[];
          return both(measure(left, bound), measure(right, bound));
        }
        case '?:': {
          const [condition, then, otherwise] = node.args as unknown[];
          measure(condition, bound);
          return either(measure(then, bound), measure(otherwise, bound));
        }
        case 'list':
        case 'map': {
          const entries = node.args as unknown[];
          let total: Measure = { size: { ...ZERO, fixed: entries.length }, count: { ...ZERO, fixed: entries.length } };
          for (const entry of entries) {
            const parts = node.op === 'map' ? (entry as unknown[]) : [entry];
            for (const part of parts) total = { size: plus(total.size, measure(part, bound).size), count: total.count };
          }
          return total;
        }
        case 'call':
        case 'rcall':
          return call(node, bound);
        case 'in': {
          const [needle, list] = node.args as unknown[];
          const searched = measure(list, bound);
          const sought = measure(needle, bound);
          if (sought.elementOf === undefined) searches.push({ elements: searched.count, needle: sought.size });
          else {
            searches.push({ elements: searched.count, needle: { ...ZERO, fixed: 1 } });
            elementSearches.push({ elements: searched.count, needle: sought.elementOf });
          }
          return NOTHING;
        }
        default: {
          // Operators on numbers and booleans, comparisons, negation: a number or a boolean out.
          const children = Array.isArray(node.args) ? (node.args as unknown[]) : [node.args];
          for (const child of children) measure(child, bound);
          return NOTHING;
        }
      }
    })();
    largest = wider(largest, result.size);
    return result;
  };
  const call = (node: AstLike, bound: ReadonlyMap<string, Measure>): Measure => {
    const args = node.args as unknown[];
    const name = args[0] as string;
    const receiver = node.op === 'rcall' ? args[1] : undefined;
    const callArgs = ((node.op === 'call' ? args[1] : args[2]) ?? []) as unknown[];
    if (name === 'bind' && callArgs.length === 3) {
      const [variable, value, expression] = callArgs;
      const inner = new Map(bound);
      if (isNode(variable) && variable.op === 'id') inner.set(variable.args as string, measure(value, bound));
      return measure(expression, inner);
    }
    if (COMPREHENSIONS.has(name) && callArgs.length >= 2) {
      const range = measure(receiver, bound);
      steps = steps === null ? range.count : wider(steps, range.count);
      const variable = callArgs[0];
      const named = isNode(variable) && variable.op === 'id' ? (variable.args as string) : undefined;
      // An element is no larger than its range, and all of them together no larger either.
      const inner = new Map(bound);
      if (named !== undefined) inner.set(named, { ...range, elementOf: range.size });
      const parts = callArgs.slice(1).map((part) => measure(part, inner));
      if (name === 'filter') return range;
      if (name !== 'map') return NOTHING;
      // Each element's value is built from the element and literals; anything else read there would be copied once per
      // element, which no linear bound covers.
      const alone = new Map(bound);
      if (named !== undefined) alone.set(named, NOTHING);
      const body = callArgs[callArgs.length - 1];
      const fromRest = measure(body, alone).size;
      if (fromRest.values > 0 || fromRest.characters > 0) {
        problem ??= 'map may build its values from its own variable and literals only: each element would copy the rest';
        return NOTHING;
      }
      // Per element: its literals, and its copies of the element (together no more than copies of the range).
      const each = parts[parts.length - 1] ?? NOTHING;
      const copies = Math.max(1, each.size.values, each.size.characters);
      return { size: plus(scaled(range.size, copies), scaled(range.count, 1 + each.size.fixed)), count: range.count };
    }
    const first = receiver !== undefined ? measure(receiver, bound) : callArgs.length > 0 ? measure(callArgs[0], bound) : NOTHING;
    for (const arg of receiver !== undefined ? callArgs : callArgs.slice(1)) measure(arg, bound);
    if (TEXT_EXPANDING.has(name)) return { size: scaled(first.size, 2), count: first.size };
    if (name === 'join') {
      const separator = callArgs[0];
      if (separator === undefined) return { size: first.size, count: ZERO };
      if (!isNode(separator) || separator.op !== 'value' || typeof separator.args !== 'string') {
        problem ??= 'join takes a literal separator only';
        return NOTHING;
      }
      // One separator between each two elements.
      return { size: plus(first.size, scaled(first.count, separator.args.length)), count: ZERO };
    }
    // UTF-8: up to three bytes a character (`€`), so what is made of the bytes (`hex`, `base64`) three times as much.
    if (name === 'bytes') return { size: scaled(first.size, 3), count: ZERO };
    if (SIZE_PRESERVING.has(name)) return first;
    if (SIZE_DOUBLING.has(name)) return { size: scaled(first.size, 2), count: ZERO };
    return NOTHING;
  };
  measure(root, new Map());
  return { growth: { largest, steps, operations: Math.max(1, operations), searches, elementSearches }, problem };
}

/**
 * Whether an expression reads `args`, and whether it reads `request` other than as `request.time` (its address, or
 * the whole map). A comprehension variable named `args` counts as reading it: the answer may be yes when it is no,
 * never the other way round.
 */
function reads(root: ASTNode): { readonly readsArguments: boolean; readonly readsAddress: boolean } {
  let readsArguments = false;
  let readsAddress = false;
  const isId = (node: unknown, name: string): boolean => isNode(node) && node.op === 'id' && node.args === name;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      stack.push(...(node as unknown[]));
      continue;
    }
    if (!isNode(node)) continue;
    if (node.op === 'id') {
      if (node.args === 'args') readsArguments = true;
      else if (node.args === 'request') readsAddress = true;
      continue;
    }
    // request.time or request["time"]: the time only (the identifier is not visited as a read of all of `request`).
    if ((node.op === '.' || node.op === '[]') && Array.isArray(node.args) && isId(node.args[0], 'request')) {
      const field = node.args[1];
      const name = node.op === '.' ? field : isNode(field) && field.op === 'value' ? field.args : undefined;
      if (name !== 'time') readsAddress = true;
      continue;
    }
    stack.push(node.args);
  }
  return { readsArguments, readsAddress };
}

/** Parses, lints and type-checks a condition; returns a runtime program or a one-line error. */
export function compileCondition(source: string): ConditionCompileResult {
  if (source.trim().length === 0) return { ok: false, message: 'condition is empty' };
  try {
    const checked = checkingEnvironment.parse(source);
    const problem = lint(checked.ast);
    if (problem !== null) return { ok: false, message: problem };
    const result = checked.check();
    if (!result.valid) return { ok: false, message: firstLine(result.error?.message ?? 'type error') };
    if (result.type !== 'bool' && result.type !== 'dyn') {
      return { ok: false, message: `condition must be a bool expression, not ${result.type ?? 'unknown'}` };
    }
    const program = runtimeEnvironment.parse(source);
    markSearches(program.ast);
    const run = (context: ConditionContext): unknown => runWithinBudget(program, context as unknown as Record<string, unknown>);
    const { growth, problem: growthProblem } = conditionGrowth(checked.ast);
    if (growthProblem !== null) return { ok: false, message: growthProblem };
    // What it does with its literals alone it does on every request, however small.
    if (workFor(growth, 0, 0) > MAX_LITERAL_WORK) {
      return { ok: false, message: 'the condition builds too much out of its literals alone (nested copies of lists or text)' };
    }
    return { ok: true, program: Object.assign(run, reads(checked.ast), { growth }) };
  } catch (error) {
    return { ok: false, message: firstLine(error instanceof Error ? error.message : String(error)) };
  }
}
