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
 * "none" (the credentials' age, sessions per principal), so a blank line switched them off without a word.
 */
export function parseConfig<S extends z.ZodType>(schema: S, env: Environment): DeepReadonly<z.output<S>> {
  const set = Object.fromEntries(Object.entries(env).filter(([, value]) => value === undefined || value.trim() !== ''));
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
