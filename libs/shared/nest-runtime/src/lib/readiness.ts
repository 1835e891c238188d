/** A dependency an app needs before it should receive traffic (Postgres, Redis, an IdP...). */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void>;
}

export interface ReadinessReport {
  readonly status: 'ok' | 'unavailable';
  readonly checks: Readonly<Record<string, 'ok' | 'unavailable' | 'timeout'>>;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs every check concurrently, each bounded by `timeoutMs`. The report names the failing dependency but
 * never its address or error text (those go to the log through `onFailure`).
 */
export async function runReadinessChecks(
  checks: readonly ReadinessCheck[],
  options: { timeoutMs: number; onFailure?: (name: string, error: unknown) => void },
): Promise<ReadinessReport> {
  const results = await Promise.all(
    checks.map(async (probe) => {
      try {
        const outcome = await withTimeout(probe.check(), options.timeoutMs);
        if (outcome === 'timeout') {
          options.onFailure?.(probe.name, new Error(`readiness check timed out after ${options.timeoutMs} ms`));
          return [probe.name, 'timeout'] as const;
        }
        return [probe.name, 'ok'] as const;
      } catch (error) {
        options.onFailure?.(probe.name, error);
        return [probe.name, 'unavailable'] as const;
      }
    }),
  );
  const checksByName = Object.fromEntries(results);
  return { status: results.every(([, state]) => state === 'ok') ? 'ok' : 'unavailable', checks: checksByName };
}
