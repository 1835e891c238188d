import { describe, expect, it } from 'vitest';
import { assertScoped, modelMetadataFromClient, TenantScopeError, withGeneratedIds } from './tenant-scope';

const metadata = modelMetadataFromClient();
const app = { requireTenantFilter: true, metadata };
const system = { requireTenantFilter: false, metadata };
const tenantId = '0190f5a0-0000-7000-8000-000000000001';

describe('model metadata', () => {
  it('knows which models are tenant-owned', () => {
    expect(metadata.tenantOwned.has('Upstream')).toBe(true);
    expect(metadata.tenantOwned.has('AuditEvent')).toBe(true);
    expect(metadata.tenantOwned.has('Tenant')).toBe(false);
    expect(metadata.tenantOwned.has('User')).toBe(false);
    expect(metadata.withId.has('AuditChainHead')).toBe(false);
  });
});

describe('assertScoped', () => {
  it('accepts a tenant-filtered query', () => {
    expect(() =>
      assertScoped('Upstream', 'findMany', { where: { tenantId, enabled: true } }, app),
    ).not.toThrow();
    expect(() =>
      assertScoped(
        'Upstream',
        'findUnique',
        { where: { tenantId_name: { tenantId, name: 'tickets' } } },
        app,
      ),
    ).not.toThrow();
  });

  it('rejects undefined anywhere in a where clause, naming the path', () => {
    expect(() => assertScoped('Upstream', 'findMany', { where: { tenantId: undefined } }, app)).toThrow(
      /where\.tenantId is undefined/,
    );
    expect(() =>
      assertScoped(
        'Upstream',
        'deleteMany',
        { where: { tenantId, OR: [{ name: 'a' }, { name: undefined }] } },
        app,
      ),
    ).toThrow(/where\.OR\[1\]\.name is undefined/);
    // Even for global models and the system client: a vanished filter is never what the caller meant.
    expect(() => assertScoped('User', 'findFirst', { where: { email: undefined } }, system)).toThrow(
      TenantScopeError,
    );
  });

  it('requires a tenantId filter on tenant-owned models for the application client', () => {
    expect(() => assertScoped('Upstream', 'findMany', {}, app)).toThrow(/must be filtered by tenantId/);
    expect(() => assertScoped('Upstream', 'findMany', undefined, app)).toThrow(
      /must be filtered by tenantId/,
    );
    expect(() => assertScoped('ApiKey', 'updateMany', { where: { revokedAt: null }, data: {} }, app)).toThrow(
      /must be filtered by tenantId/,
    );
    expect(() => assertScoped('Policy', 'count', { where: { tenantId: { not: tenantId } } }, app)).toThrow(
      /must be filtered by tenantId/,
    );
  });

  it('lets the system client and global models query without a tenant filter', () => {
    expect(() => assertScoped('ApiKey', 'findMany', { where: { revokedAt: null } }, system)).not.toThrow();
    expect(() => assertScoped('Tenant', 'findMany', {}, app)).not.toThrow();
    expect(() => assertScoped('User', 'findUnique', { where: { email: 'a@b.example' } }, app)).not.toThrow();
  });

  it('rejects creating tenant-owned rows without a tenant id', () => {
    expect(() =>
      assertScoped('Upstream', 'create', { data: { name: 'x', tenantId: undefined } }, app),
    ).toThrow(/data\.tenantId must be a tenant id/);
    expect(() =>
      assertScoped('Group', 'createMany', { data: [{ tenantId, name: 'a' }, { name: 'b' }] }, system),
    ).toThrow(/data\[1\]\.tenantId/);
    expect(() =>
      assertScoped(
        'Group',
        'upsert',
        { where: { tenantId_externalId: { tenantId, externalId: 'e' } }, create: {}, update: {} },
        app,
      ),
    ).toThrow(/create\.tenantId/);
    expect(() => assertScoped('Upstream', 'create', { data: { tenantId, name: 'x' } }, app)).not.toThrow();
    expect(() =>
      assertScoped('Upstream', 'create', { data: { tenant: { connect: { id: tenantId } }, name: 'x' } }, app),
    ).not.toThrow();
  });

  it('rejects moving rows between tenants', () => {
    expect(() =>
      assertScoped('Upstream', 'updateMany', { where: { tenantId }, data: { tenantId: 'other' } }, app),
    ).toThrow(/rows never move between tenants/);
  });
});

describe('withGeneratedIds', () => {
  const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('adds a UUIDv7 id to created rows that lack one', () => {
    const args = withGeneratedIds('Upstream', 'create', { data: { tenantId } }, metadata) as {
      data: { id: string };
    };
    expect(args.data.id).toMatch(uuidV7);
    const many = withGeneratedIds(
      'Group',
      'createMany',
      { data: [{ tenantId }, { tenantId, id: 'kept' }] },
      metadata,
    ) as {
      data: { id: string }[];
    };
    expect(many.data[0]?.id).toMatch(uuidV7);
    expect(many.data[1]?.id).toBe('kept');
  });

  it('gives users a random (v4) id, which tells nothing of when the account was made', () => {
    const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    const args = withGeneratedIds('User', 'create', { data: { email: 'a@example.com' } }, metadata) as { data: { id: string } };
    expect(args.data.id).toMatch(uuidV4);
    const upserted = withGeneratedIds('User', 'upsert', { where: { email: 'a@example.com' }, create: { email: 'a@example.com' }, update: {} }, metadata) as { create: { id: string } };
    expect(upserted.create.id).toMatch(uuidV4);
  });

  it('leaves models without an id column and non-create operations alone', () => {
    const head = { data: { tenantId, lastSeq: 0n } };
    expect(withGeneratedIds('AuditChainHead', 'create', head, metadata)).toBe(head);
    const update = { where: { tenantId }, data: {} };
    expect(withGeneratedIds('Upstream', 'updateMany', update, metadata)).toBe(update);
  });
});
