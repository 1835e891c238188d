import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { auditWorkerConfigSchema } from './config';

const base = { DATABASE_URL: 'postgresql://portcullis_app@127.0.0.1:5432/portcullis', REDIS_URL: 'redis://127.0.0.1:6379' };

describe('audit worker config', () => {
  it('drains the outbox every 10 s, rows 30 s old, and retention hourly, by default', () => {
    const config = parseConfig(auditWorkerConfigSchema, base);
    expect(config.outbox).toEqual({ everyMs: 10_000, graceMs: 30_000 });
    expect(config.retention).toEqual({ everyMs: 3_600_000 });
    expect(config.database.systemUrl).toBeNull();
  });

  it('needs the system role in production: without it the outbox would never be drained', () => {
    let error: unknown;
    try {
      parseConfig(auditWorkerConfigSchema, { ...base, NODE_ENV: 'production' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.join('\n')).toContain('DATABASE_SYSTEM_URL');
    const config = parseConfig(auditWorkerConfigSchema, { ...base, NODE_ENV: 'production', DATABASE_SYSTEM_URL: 'postgresql://portcullis_system@127.0.0.1:5432/portcullis' });
    expect(config.database.systemUrl).toContain('portcullis_system');
  });

  it('signs chain heads every minute with the key file given, and takes no interval below 100 ms', () => {
    expect(parseConfig(auditWorkerConfigSchema, base).anchors).toEqual({ signingKeyFile: null, everyMs: 60_000 });
    expect(parseConfig(auditWorkerConfigSchema, { ...base, AUDIT_SIGNING_KEY_FILE: '/run/secrets/audit.key', AUDIT_ANCHOR_EVERY_MS: '5000' }).anchors).toEqual({
      signingKeyFile: '/run/secrets/audit.key',
      everyMs: 5_000,
    });
    expect(() => parseConfig(auditWorkerConfigSchema, { ...base, AUDIT_ANCHOR_EVERY_MS: '10' })).toThrow(ConfigError);
    // An empty path is refused, not taken as unset (nothing signed) as other empty variables are.
    expect(() => parseConfig(auditWorkerConfigSchema, { ...base, AUDIT_SIGNING_KEY_FILE: '' })).toThrow(ConfigError);
    expect(() => parseConfig(auditWorkerConfigSchema, { ...base, AUDIT_SIGNING_KEY_FILE: ' ' })).toThrow(ConfigError);
  });
});
