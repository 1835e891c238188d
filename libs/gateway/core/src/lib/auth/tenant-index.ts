export interface TenantEntry {
  readonly id: string;
  readonly slug: string;
  readonly active: boolean;
}

/** slug → tenant, swapped as a whole on refresh (same mechanism as the API key index). */
export class TenantIndex {
  private bySlugMap: ReadonlyMap<string, TenantEntry> = new Map();

  replace(tenants: Iterable<TenantEntry>): void {
    const next = new Map<string, TenantEntry>();
    for (const tenant of tenants) next.set(tenant.slug, tenant);
    this.bySlugMap = next;
  }

  bySlug(slug: string): TenantEntry | undefined {
    return this.bySlugMap.get(slug);
  }

  get size(): number {
    return this.bySlugMap.size;
  }
}
