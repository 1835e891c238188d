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
  private byIdMap: ReadonlyMap<string, ApiKeyEntry> = new Map();

  replace(entries: Iterable<readonly [hash: string, entry: ApiKeyEntry]>): void {
    const byHash = new Map(entries);
    const byId = new Map<string, ApiKeyEntry>();
    for (const entry of byHash.values()) byId.set(entry.apiKeyId, entry);
    this.byHash = byHash;
    this.byIdMap = byId;
  }

  lookup(hash: string): ApiKeyEntry | undefined {
    return this.byHash.get(hash);
  }

  /** The key with this id (a credential id a request carried), if the index still has it. */
  byId(apiKeyId: string): ApiKeyEntry | undefined {
    return this.byIdMap.get(apiKeyId);
  }

  get size(): number {
    return this.byHash.size;
  }
}
