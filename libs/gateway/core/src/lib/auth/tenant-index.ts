export interface TenantEntry {
  readonly id: string;
  readonly slug: string;
  readonly active: boolean;
}

/** slug → tenant, swapped as a whole on refresh (same mechanism as the API key index). */
export class TenantIndex {
  private bySlugMap: ReadonlyMap<string, TenantEntry> = new Map();
  private byIdMap: ReadonlyMap<string, TenantEntry> = new Map();

  replace(tenants: Iterable<TenantEntry>): void {
    const next = new Map<string, TenantEntry>();
    const byId = new Map<string, TenantEntry>();
    for (const tenant of tenants) {
      next.set(tenant.slug, tenant);
      byId.set(tenant.id, tenant);
    }
    this.bySlugMap = next;
    this.byIdMap = byId;
  }

  bySlug(slug: string): TenantEntry | undefined {
    return this.bySlugMap.get(slug);
  }

  byId(id: string): TenantEntry | undefined {
    return this.byIdMap.get(id);
  }

  get size(): number {
    return this.bySlugMap.size;
  }
}
