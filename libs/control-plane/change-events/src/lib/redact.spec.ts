import { describe, expect, it } from 'vitest';
import { redactSecrets } from './redact';
import { withTimeout } from './bounded';

describe('redactSecrets', () => {
  it('replaces values under credential-like keys at any depth and keeps the rest', () => {
    const input = {
      after: { name: 'tickets', headers: { Authorization: 'Bearer x' }, env: { TOKEN: 'y' }, hasHeaders: true },
      list: [{ clientSecret: 'z', id: 1 }],
      secret: null,
    };
    expect(redactSecrets(input)).toEqual({
      after: { name: 'tickets', headers: '[redacted]', env: '[redacted]', hasHeaders: true },
      list: [{ clientSecret: '[redacted]', id: 1 }],
      secret: null,
    });
  });
});

describe('withTimeout', () => {
  it('gives up after the bound without waiting for the promise', async () => {
    const started = Date.now();
    await expect(withTimeout(new Promise(() => undefined), 20, 'slow thing')).rejects.toThrow(/slow thing/);
    expect(Date.now() - started).toBeLessThan(1_000);
    await expect(withTimeout(Promise.resolve(3), 20, 'fast')).resolves.toBe(3);
  });
});
