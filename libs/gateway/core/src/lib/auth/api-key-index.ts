/** What the gateway knows about an API key: never the key, only what its hash resolves to. */
export interface ApiKeyEntry {
  readonly apiKeyId: string;
  readonly tenantId: string;
  readonly agentClientId: string | null;
  readonly userId: string | null;
  /** Epoch milliseconds, or null for no expiry. */
  readonly expiresAt: number | null;
  /** Revoked keys, and keys of disabled agent clients. */
  readonly revoked: boolean;
}

/**
 * hash → key, swapped as a whole on every refresh (readers never see a half-built index). Loaded from
 * the database at boot and refreshed periodically and on `pcs:apikeys:changed`.
 */
export class ApiKeyIndex {
  private byHash: ReadonlyMap<string, ApiKeyEntry> = new Map();

  replace(entries: Iterable<readonly [hash: string, entry: ApiKeyEntry]>): void {
    this.byHash = new Map(entries);
  }

  lookup(hash: string): ApiKeyEntry | undefined {
    return this.byHash.get(hash);
  }

  get size(): number {
    return this.byHash.size;
  }
}
