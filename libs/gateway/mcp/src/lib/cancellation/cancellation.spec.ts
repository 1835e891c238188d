import { describe, expect, it, vi } from 'vitest';
import { Cancellation, type CancelSignal } from './cancellation';

describe('Cancellation', () => {
  it('calls each listener once, in order, on the first abort only, with the reason set before', () => {
    const cancellation = new Cancellation();
    const seen: string[] = [];
    const first = () => seen.push(`first:${String(cancellation.reason)}`);
    cancellation.addEventListener('abort', first);
    cancellation.addEventListener('abort', first); // the same listener twice counts once, as on an EventTarget
    cancellation.addEventListener('abort', () => seen.push('second'));
    expect(cancellation.aborted).toBe(false);
    cancellation.abort('stop');
    cancellation.abort('again');
    expect(seen).toEqual(['first:stop', 'second']);
    expect(cancellation.aborted).toBe(true);
    expect(cancellation.reason).toBe('stop');
  });

  it('does not call removed listeners, nor listeners added after the abort; the default reason is an AbortError', () => {
    const cancellation = new Cancellation();
    const removed = vi.fn();
    cancellation.addEventListener('abort', removed);
    cancellation.removeEventListener('abort', removed);
    cancellation.abort();
    const late = vi.fn();
    cancellation.addEventListener('abort', late);
    expect(removed).not.toHaveBeenCalled();
    expect(late).not.toHaveBeenCalled();
    expect(cancellation.reason).toBeInstanceOf(DOMException);
    expect((cancellation.reason as DOMException).name).toBe('AbortError');
  });

  it('goes on with the other listeners when one throws, and reports the error asynchronously', async () => {
    const cancellation = new Cancellation();
    const after = vi.fn();
    const reported = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
    cancellation.addEventListener('abort', () => {
      throw new Error('listener failed');
    });
    cancellation.addEventListener('abort', after);
    expect(() => cancellation.abort()).not.toThrow();
    expect(after).toHaveBeenCalledOnce();
    expect(await reported).toMatchObject({ message: 'listener failed' });
  });

  it('is interchangeable with an AbortSignal where a CancelSignal is taken', () => {
    const controller = new AbortController();
    const signals: CancelSignal[] = [controller.signal, new Cancellation().signal];
    const calls = vi.fn();
    for (const signal of signals) signal.addEventListener('abort', calls, { once: true });
    controller.abort();
    expect(calls).toHaveBeenCalledOnce();
  });
});
