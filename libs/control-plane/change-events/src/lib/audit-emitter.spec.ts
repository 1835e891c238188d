import { AppError } from '@portcullis/shared/util-errors';
import { newId, type TenantId, type UserId } from '@portcullis/shared/util-ids';
import { createLogger } from '@portcullis/shared/util-logger';
import { afterEach, describe, expect, it } from 'vitest';
import type { PortcullisPrismaClient } from '@portcullis/data/db';
import { AuditEmitter, type ControlPlaneChange } from './audit-emitter';

// The paths the integration specs cannot reach on a healthy database: the outbox write itself failing.
const emitters: AuditEmitter[] = [];
afterEach(async () => {
  await Promise.all(emitters.splice(0).map((emitter) => emitter.onApplicationShutdown()));
});

function emitterOn(db: Pick<PortcullisPrismaClient, '$transaction'>) {
  let logs = '';
  const logger = createLogger({ service: 'spec', level: 'info', destination: { write: (line: string) => void (logs += line) } });
  // Redis is never reached here: nothing gets as far as the queue.
  const emitter = new AuditEmitter({ redisUrl: 'redis://127.0.0.1:1', queuePrefix: 'spec', timeoutMs: 100, logger }, db as PortcullisPrismaClient);
  emitters.push(emitter);
  return { emitter, logs: () => logs };
}

const change: ControlPlaneChange = {
  tenantId: newId() as TenantId,
  actor: { userId: newId() as UserId, traceId: 't', traceparent: null },
  action: 'audit.export.download',
  target: { type: 'audit_export', id: 'e1' },
  before: null,
  after: { token: 'Bearer sk-secret-value-1234567890' },
};

describe('AuditEmitter.emit when the outbox cannot be written', () => {
  const failing = { $transaction: () => Promise.reject(new Error('connection to postgres://app:hunter2@db refused')) };

  it('refuses a required event with a 503 that names nothing of the failure (the caller hands no data out)', async () => {
    const { emitter, logs } = emitterOn(failing);
    const refused = emitter.emit(change, { required: true });
    await expect(refused).rejects.toBeInstanceOf(AppError);
    await expect(refused).rejects.toMatchObject({ code: 'DEPENDENCY_UNAVAILABLE' });
    await expect(refused).rejects.not.toThrow(/hunter2|postgres/);
    // The operator's log says what was not recorded, never the change's before/after.
    expect(logs()).toContain('audit event not recorded');
    expect(logs()).toContain('audit.export.download');
    expect(logs()).not.toContain('sk-secret-value');
  });

  it('logs and carries on for an event that is not required (the change it records is made already)', async () => {
    const { emitter, logs } = emitterOn(failing);
    await expect(emitter.emit(change)).resolves.toBeUndefined();
    expect(logs()).toContain('audit event not recorded');
  });
});
