import { z } from 'zod';

export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type Environment = Readonly<Record<string, string | undefined>>;

/** Raised when the environment does not satisfy an app's config schema. Lists every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

/**
 * Validates `env` (flat variables) with `schema` and returns the parsed, deeply frozen result.
 * Issues name the variable, never its value: a value may be a secret.
 * A variable that is empty or blank (`NAME=` in a copied .env.example, `value: ""` in a manifest) is unset: its default
 * applies, or it is reported missing. Read as written, `z.coerce.number()` made it 0, which for several bounds means
 * "none" (the credentials' age, sessions per principal), so a blank line switched them off without a word. A blank
 * `*_FILE` (a key or a list of keys) is the exception, kept for its schema to refuse: an empty path is a mistake (a
 * manifest's secret that came out empty), and unset would quietly mean "sign nothing" or "verify no signature".
 */
export function parseConfig<S extends z.ZodType>(schema: S, env: Environment): DeepReadonly<z.output<S>> {
  const set = Object.fromEntries(Object.entries(env).filter(([name, value]) => value === undefined || value.trim() !== '' || name.endsWith('_FILE')));
  const result = schema.safeParse(set);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.length > 0 ? issue.path.join('.') : '(environment)';
      return `${key}: ${issue.message}`;
    });
    throw new ConfigError(problems);
  }
  return deepFreeze(result.data) as DeepReadonly<z.output<S>>;
}

/**
 * The one place an app reads `process.env`: parse once at boot, or print every problem and exit with
 * status 78 (EX_CONFIG).
 */
export function loadConfigOrExit<S extends z.ZodType>(
  appName: string,
  schema: S,
  env: Environment = process.env,
): DeepReadonly<z.output<S>> {
  try {
    return parseConfig(schema, env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${appName}: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
}

/**
 * A server that could not listen where its configuration said (a port taken, an address not this machine's, a name
 * that does not resolve): one sentence naming the variables that chose it (`settings`, e.g. `GATEWAY_HOST/GATEWAY_PORT`)
 * and Node's code, for the operator, instead of Node's bare `listen EADDRINUSE` and its stack.
 */
export class ListenError extends Error {
  constructor(settings: string, host: string, port: number, cause: unknown) {
    super(`${settings}: cannot listen on ${host}:${port} (${(cause as NodeJS.ErrnoException | undefined)?.code ?? 'error'})`, { cause });
    this.name = 'ListenError';
  }
}

/** Runs `listen`, turning its failure into a `ListenError` naming `settings`. */
export async function listenNaming<T>(settings: string, host: string, port: number, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    if (typeof (error as NodeJS.ErrnoException | undefined)?.code !== 'string' || (error as NodeJS.ErrnoException).syscall === undefined) throw error;
    throw new ListenError(settings, host, port, error);
  }
}
