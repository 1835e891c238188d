import { randomUUID } from 'node:crypto';
import { newId } from '@portcullis/shared/util-ids';
import { Prisma } from '../generated/prisma/client';

/**
 * Layer 3 of tenant isolation (docs/adr/0003-tenant-isolation.md): a Prisma extension that refuses queries whose
 * scoping could silently disappear.
 *
 * Prisma drops `undefined` from a `where`: `where: { tenantId: undefined }` means "every tenant". So this extension
 * throws on any `undefined` inside a where clause, on a missing/undefined `tenantId` when creating tenant-owned rows,
 * and (for the application client) on queries over tenant-owned models that do not filter by `tenantId` at all.
 * It also gives new rows a time-ordered UUIDv7 id when the caller did not supply one.
 */

export class TenantScopeError extends Error {
  constructor(
    readonly model: string,
    readonly operation: string,
    detail: string,
  ) {
    super(`Refusing ${model}.${operation}: ${detail}`);
    this.name = 'TenantScopeError';
  }
}

export interface ModelMetadata {
  /** Models with a `tenantId` column (row-level secured in the database). */
  readonly tenantOwned: ReadonlySet<string>;
  /** Models with a single `id` primary key column. */
  readonly withId: ReadonlySet<string>;
}

export interface TenantScopeOptions {
  /**
   * Require every read/update/delete of a tenant-owned model to filter by `tenantId` at the top level of its
   * `where` (directly or through a compound unique key such as `tenantId_name`). On for the application client, off
   * for the explicitly named system client (cross-tenant jobs).
   */
  readonly requireTenantFilter: boolean;
  readonly metadata?: ModelMetadata;
}

/** Derives the model metadata from the generated client (each model's `<Model>ScalarFieldEnum`). */
export function modelMetadataFromClient(): ModelMetadata {
  const namespace = Prisma as unknown as Record<string, Record<string, string> | undefined>;
  const tenantOwned = new Set<string>();
  const withId = new Set<string>();
  for (const model of Object.values(Prisma.ModelName)) {
    const fields = namespace[`${model}ScalarFieldEnum`];
    if (!fields) throw new Error(`Generated client has no ${model}ScalarFieldEnum`);
    if ('tenantId' in fields) tenantOwned.add(model);
    if ('id' in fields) withId.add(model);
  }
  return { tenantOwned, withId };
}

const WHERE_OPERATIONS = new Set([
  'findUnique',
  'findUniqueOrThrow',
  'findFirst',
  'findFirstOrThrow',
  'findMany',
  'update',
  'updateMany',
  'updateManyAndReturn',
  'upsert',
  'delete',
  'deleteMany',
  'count',
  'aggregate',
  'groupBy',
]);
const CREATE_OPERATIONS = new Set(['create', 'createMany', 'createManyAndReturn', 'upsert']);
const UPDATE_OPERATIONS = new Set(['update', 'updateMany', 'updateManyAndReturn', 'upsert']);

type Args = Record<string, unknown>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The path of the first `undefined` inside a where clause, or null. */
export function findUndefined(value: unknown, path: string): string | null {
  if (value === undefined) return path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUndefined(value[i], `${path}[${i}]`);
      if (found) return found;
    }
    return null;
  }
  if (isPlainObject(value)) {
    for (const [key, child] of Object.entries(value)) {
      const found = findUndefined(child, `${path}.${key}`);
      if (found) return found;
    }
  }
  return null;
}

function filtersByTenant(where: Args): boolean {
  if (typeof where['tenantId'] === 'string') return true;
  return Object.entries(where).some(
    ([key, value]) =>
      key.startsWith('tenantId_') && isPlainObject(value) && typeof value['tenantId'] === 'string',
  );
}

function hasTenant(data: unknown): boolean {
  if (!isPlainObject(data)) return false;
  if (typeof data['tenantId'] === 'string') return true;
  const tenant = data['tenant'];
  const connect = isPlainObject(tenant) ? tenant['connect'] : undefined;
  return isPlainObject(connect) && typeof connect['id'] === 'string';
}

function createPayloads(operation: string, args: Args): unknown[] {
  if (operation === 'upsert') return [args['create']];
  const data = args['data'];
  return Array.isArray(data) ? data : [data];
}

/**
 * Checks one model operation's arguments; throws a TenantScopeError when scoping could be lost.
 * Pure (no I/O): the extension calls it before every model query.
 */
export function assertScoped(
  model: string,
  operation: string,
  args: unknown,
  options: TenantScopeOptions,
): void {
  const metadata = options.metadata ?? defaultMetadata();
  const tenantOwned = metadata.tenantOwned.has(model);
  const input: Args = isPlainObject(args) ? args : {};

  if (WHERE_OPERATIONS.has(operation)) {
    const where = input['where'];
    const undefinedAt = findUndefined(where, 'where');
    if (where !== undefined && undefinedAt) {
      throw new TenantScopeError(
        model,
        operation,
        `${undefinedAt} is undefined. Prisma would drop that filter and match more rows than intended; ` +
          'leave the key out explicitly or pass a value.',
      );
    }
    if (tenantOwned && options.requireTenantFilter && !(isPlainObject(where) && filtersByTenant(where))) {
      throw new TenantScopeError(
        model,
        operation,
        'a tenant-owned model must be filtered by tenantId (where: { tenantId, ... } or a tenantId_* unique key). ' +
          'Cross-tenant work belongs to the system client.',
      );
    }
  }

  if (tenantOwned && CREATE_OPERATIONS.has(operation)) {
    createPayloads(operation, input).forEach((data, index) => {
      if (!hasTenant(data)) {
        const where =
          operation === 'upsert' ? 'create' : Array.isArray(input['data']) ? `data[${index}]` : 'data';
        throw new TenantScopeError(model, operation, `${where}.tenantId must be a tenant id string.`);
      }
    });
  }

  if (tenantOwned && UPDATE_OPERATIONS.has(operation)) {
    const data = operation === 'upsert' ? input['update'] : input['data'];
    if (isPlainObject(data) && ('tenantId' in data || 'tenant' in data)) {
      throw new TenantScopeError(
        model,
        operation,
        'rows never move between tenants: do not set tenantId in an update.',
      );
    }
  }
}

/**
 * Models whose ids are shown outside the tenant that made the row, and so must say nothing of it: a user's id is
 * returned to any tenant admin who adds that person by email, and a UUIDv7 would tell when the account was made
 * (whether the person already had one, through another tenant). Random (v4) ids for these; UUIDv7 for the rest.
 */
const RANDOM_ID_MODELS: ReadonlySet<string> = new Set(['User']);

/** Returns args with an `id` added to created rows that lack one (models with an `id` column): UUIDv7, or v4 (above). */
export function withGeneratedIds(
  model: string,
  operation: string,
  args: unknown,
  metadata: ModelMetadata,
): unknown {
  if (!metadata.withId.has(model) || !CREATE_OPERATIONS.has(operation) || !isPlainObject(args)) return args;
  const id = RANDOM_ID_MODELS.has(model) ? randomUUID : newId;
  const fill = (data: unknown): unknown =>
    isPlainObject(data) && data['id'] === undefined ? { ...data, id: id() } : data;
  if (operation === 'upsert') return { ...args, create: fill(args['create']) };
  const data = args['data'];
  return { ...args, data: Array.isArray(data) ? data.map(fill) : fill(data) };
}

let cachedMetadata: ModelMetadata | undefined;
function defaultMetadata(): ModelMetadata {
  cachedMetadata ??= modelMetadataFromClient();
  return cachedMetadata;
}

/** The Prisma client extension applying `assertScoped` and `withGeneratedIds` to every model operation. */
export function tenantScopeExtension(options: TenantScopeOptions) {
  const metadata = options.metadata ?? defaultMetadata();
  return Prisma.defineExtension({
    name: 'portcullis-tenant-scope',
    query: {
      $allModels: {
        async $allOperations({ model, operation, args, query }) {
          assertScoped(model, operation, args, { ...options, metadata });
          return query(withGeneratedIds(model, operation, args, metadata) as typeof args);
        },
      },
    },
  });
}
