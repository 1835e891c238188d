/**
 * The part of an AbortSignal that request paths use: whether and why it was aborted, and one-shot abort listeners.
 * An AbortSignal satisfies it, so callers may pass either.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * `promise`, or the error `stopped()` makes once `signal` aborts first: only this caller stops waiting, the promise
 * itself goes on. `stopped` runs at most once, and not at all if the promise settles first.
 */
export function untilAborted<T>(promise: Promise<T>, signal: CancelSignal | undefined, stopped: () => unknown): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(stopped());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(stopped());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * A per-request AbortController without the EventTarget: the gateway makes one for every request it serves, and a
 * request has at most a few listeners (the upstream call, a held approval), so a plain array does. Same semantics as
 * AbortController where request paths rely on them: `abort` runs each listener once, in order, and only the first
 * `abort` counts; a listener added after the abort is not called; the default reason is an `AbortError`.
 */
export class Cancellation implements CancelSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;

  /** The signal to hand out (the object itself; the name mirrors AbortController). */
  get signal(): CancelSignal {
    return this;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? new DOMException('This operation was aborted', 'AbortError');
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners === undefined) return;
    for (const listener of listeners) {
      try {
        listener();
      } catch (error) {
        // As with an EventTarget: one failing listener neither stops the others nor the caller of abort().
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return;
    const listeners = (this.listeners ??= []);
    if (!listeners.includes(listener)) listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const listeners = this.listeners;
    if (listeners === undefined) return;
    const index = listeners.indexOf(listener);
    if (index !== -1) listeners.splice(index, 1);
  }
}
