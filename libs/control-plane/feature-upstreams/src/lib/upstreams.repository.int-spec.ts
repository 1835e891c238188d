import { createPrismaClient, createSystemPrismaClient, withTenant } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamsRepository, type NewUpstream } from './upstreams.repository';

const ctx = testContext();
const db = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const repository = new UpstreamsRepository();
let a: TestTenant;
let b: TestTenant;

const upstream = (overrides: Partial<NewUpstream> = {}): NewUpstream => ({
  id: newId(),
  name: `up-${newId().slice(-6)}`,
  description: null,
  toolPrefix: `p${newId().slice(-6).replace(/-/g, '')}`,
  transport: 'streamable_http',
  url: 'https://example.test/mcp',
  command: null,
  args: [],
  headersCiphertext: new Uint8Array([1, 2, 3]),
  envCiphertext: null,
  encryptionKeyId: 'k1',
  ...overrides,
});

beforeAll(async () => {
  a = await createTestTenant(system);
  b = await createTestTenant(system);
});
afterAll(async () => {
  await db.$disconnect();
  await system.$disconnect();
});

describe('UpstreamsRepository', () => {
  it('creates, reads and pages within a tenant, reporting secrets only as present/absent', async () => {
    const created = await withTenant(db, a.id, (tx) => repository.create(a.id, tx, upstream()));
    expect(created).toMatchObject({ hasHeaders: true, hasEnv: false, version: 1 });
    expect(Object.keys(created)).not.toContain('headersCiphertext');
    const page = await withTenant(db, a.id, (tx) => repository.list(a.id, tx, { after: undefined, limit: 50 }));
    expect(page.map((u) => u.id)).toContain(created.id);
  });

  it('bumps the version on every update', async () => {
    const created = await withTenant(db, a.id, (tx) => repository.create(a.id, tx, upstream()));
    const updated = await withTenant(db, a.id, (tx) => repository.update(a.id, tx, created.id, { enabled: false }));
    expect(updated).toMatchObject({ enabled: false, version: 2 });
  });

  it('changes nothing when the row moved past the version the caller read (compare-and-set), also while another transaction holds it', async () => {
    const created = await withTenant(db, a.id, (tx) => repository.create(a.id, tx, upstream()));
    expect(await withTenant(db, a.id, (tx) => repository.update(a.id, tx, created.id, { url: 'https://other.example.test/mcp' }, 1))).toMatchObject({ version: 2 });
    expect(await withTenant(db, a.id, (tx) => repository.update(a.id, tx, created.id, { enabled: false }, 1))).toBeNull();
    // Two updates that both read version 2: the second waits for the first's commit, then finds version 3 and writes nothing.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let updatedFirst: () => void = () => undefined;
    const firstUpdated = new Promise<void>((resolve) => (updatedFirst = resolve));
    const first = withTenant(db, a.id, async (tx) => {
      const done = await repository.update(a.id, tx, created.id, { description: 'first' }, 2);
      updatedFirst();
      await held;
      return done;
    });
    await firstUpdated;
    const second = withTenant(db, a.id, (tx) => repository.update(a.id, tx, created.id, { description: 'second' }, 2));
    // The second waits on the first's row lock (a lock not granted, in pg_locks) until the first commits.
    await waitFor(async () => (await system.$queryRaw<{ waiting: bigint }[]>`SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted`)[0]?.waiting ?? 0n, { timeoutMs: 5_000 });
    release();
    expect(await first).toMatchObject({ version: 3, description: 'first' });
    expect(await second).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.find(a.id, tx, created.id))).toMatchObject({ version: 3, description: 'first', enabled: true });
  });

  it('must not read, list, update or delete another tenant’s upstream', async () => {
    const ofB = await withTenant(db, b.id, (tx) => repository.create(b.id, tx, upstream()));
    // Through tenant A's scope, even naming B's id, nothing is visible or changeable.
    expect(await withTenant(db, a.id, (tx) => repository.find(a.id, tx, ofB.id))).toBeNull();
    expect((await withTenant(db, a.id, (tx) => repository.list(a.id, tx, { after: undefined, limit: 200 }))).map((u) => u.id)).not.toContain(ofB.id);
    expect(await withTenant(db, a.id, (tx) => repository.update(a.id, tx, ofB.id, { name: 'hijacked' }))).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.delete(a.id, tx, ofB.id))).toBe(false);
    expect(await withTenant(db, a.id, (tx) => repository.findHolder(a.id, tx, { toolPrefix: ofB.toolPrefix }))).toBeNull();
    // A mismatched scope (B's id in A's RLS context) sees nothing either: RLS is the second wall.
    expect(await withTenant(db, a.id, (tx) => repository.find(b.id, tx, ofB.id))).toBeNull();
    const still = await system.upstream.findFirstOrThrow({ where: { tenantId: b.id, id: ofB.id }, select: { name: true, version: true } });
    expect(still).toEqual({ name: ofB.name, version: 1 });
  });

  it('lets two tenants use the same tool prefix', async () => {
    const prefix = `shared${newId().slice(-4)}`;
    await withTenant(db, a.id, (tx) => repository.create(a.id, tx, upstream({ toolPrefix: prefix })));
    await expect(withTenant(db, b.id, (tx) => repository.create(b.id, tx, upstream({ toolPrefix: prefix })))).resolves.toBeDefined();
  });
});
