import { describe, expect, it } from 'vitest';
import { createLogger } from '@portcullis/shared/util-logger';
import { loadTenantSettings, sealedDigestOf } from './snapshot-loaders';

describe('sealedDigestOf', () => {
  const bytes = (...values: number[]) => Uint8Array.from(values);

  it('names no digest for an upstream without sealed credentials', () => {
    expect(sealedDigestOf(null, null)).toEqual({});
  });

  it('changes with the ciphertext, and tells headers from environment', () => {
    const first = sealedDigestOf(bytes(1, 2, 3), null).sealedDigest;
    expect(first).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(sealedDigestOf(bytes(1, 2, 3), null).sealedDigest).toBe(first);
    expect(sealedDigestOf(bytes(1, 2, 4), null).sealedDigest).not.toBe(first);
    expect(sealedDigestOf(null, bytes(1, 2, 3)).sealedDigest).not.toBe(first);
    // Where one part ends and the next begins is part of what is hashed.
    expect(sealedDigestOf(bytes(1, 2), bytes(3)).sealedDigest).not.toBe(sealedDigestOf(bytes(1), bytes(2, 3)).sealedDigest);
  });
});

describe('loadTenantSettings', () => {
  const logger = createLogger({ service: 'spec', level: 'fatal', destination: { write: () => undefined } });
  const stored = (settings: unknown) => ({ tenant: { findMany: async () => [{ id: 't1', settings }] } }) as never;
  const strict = { audit: { failMode: 'closed', redactPaths: ['$.arguments.card'] }, rateLimits: { failMode: 'closed', tenant: { requests: 100, windowSeconds: 60 } } };
  // One field wrong: the tenant rate limit lacks its window.
  const broken = { ...strict, rateLimits: { failMode: 'closed', tenant: { requests: 100 } } };

  it('keeps a tenant\'s last valid settings when the stored ones stop parsing', async () => {
    const first = await loadTenantSettings(stored(strict), logger);
    expect(first.get('t1')?.audit.failMode).toBe('closed');
    const next = await loadTenantSettings(stored(broken), logger, first);
    expect(next.get('t1')).toEqual(first.get('t1'));
  });

  it('with none before, applies each section that parses and the defaults only for the others', async () => {
    const loaded = (await loadTenantSettings(stored(broken), logger)).get('t1');
    expect(loaded?.audit).toMatchObject({ failMode: 'closed', redactPaths: ['$.arguments.card'] });
    expect(loaded?.rateLimits).toEqual({ failMode: 'open' });
  });
});
