import { describe, expect, it } from 'vitest';
import { tenantSettings } from './tenant-settings';

describe('tenantSettings', () => {
  it('gives an empty object safe defaults', () => {
    expect(tenantSettings.parse({})).toEqual({
      audit: { failMode: 'open', results: 'metadata', redactPaths: [] },
      rateLimits: { failMode: 'open' },
    });
  });

  it('keeps a full configuration', () => {
    const settings = {
      audit: { retentionDays: 30, failMode: 'closed', results: 'full', redactPaths: ['$.arguments.card.number'] },
      rateLimits: { failMode: 'closed', tenant: { requests: 100, windowSeconds: 60, maxConcurrent: 5 } },
    };
    expect(tenantSettings.parse(settings)).toEqual(settings);
  });

  it('rejects unparseable redaction paths and half-specified limits with a message', () => {
    const bad = tenantSettings.safeParse({ audit: { redactPaths: ['arguments..x'] }, rateLimits: { tenant: { requests: 5 } } });
    expect(bad.success).toBe(false);
    const paths = bad.error?.issues.map((issue) => issue.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['audit.redactPaths.0', 'rateLimits.tenant.requests']));
  });
});
