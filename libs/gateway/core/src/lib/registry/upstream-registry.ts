import type { UpstreamConfig } from '@portcullis/gateway/mcp';
import { checkPrefixes } from '../naming/tool-names';

export interface TenantUpstreams {
  /** Sorted by tool prefix: the deterministic order of every merged listing. */
  readonly list: readonly UpstreamConfig[];
  readonly byId: ReadonlyMap<string, UpstreamConfig>;
  readonly byPrefix: ReadonlyMap<string, UpstreamConfig>;
}

const EMPTY: TenantUpstreams = { list: [], byId: new Map(), byPrefix: new Map() };

/** Which upstreams, in which versions: two equal signatures list the same configurations. */
const signature = (upstreams: TenantUpstreams | undefined): string => (upstreams?.list ?? []).map((config) => `${config.id}@${config.version}`).join(',');

/**
 * The enabled upstreams of every tenant, swapped as a whole on refresh. An upstream whose prefix is
 * invalid or collides with another's is left out, with a reason the caller logs (the control plane
 * rejects such configurations on save; this is the gateway's own guard).
 */
export class UpstreamRegistry {
  private byTenant: ReadonlyMap<string, TenantUpstreams> = new Map();
  /** Upstream id → its tenant, of every upstream loaded (refused ones too: their pins still belong to the tenant). */
  private tenantOfUpstream: ReadonlyMap<string, string> = new Map();

  constructor(readonly separator: string) {}

  /** Swaps in `configs`; returns the tenants whose upstreams changed (one added, removed or edited). */
  replace(configs: Iterable<UpstreamConfig>, reject: (config: UpstreamConfig, reason: string) => void): ReadonlySet<string> {
    const grouped = new Map<string, UpstreamConfig[]>();
    const tenants = new Map<string, string>();
    for (const config of configs) {
      tenants.set(config.id, config.tenantId);
      const list = grouped.get(config.tenantId) ?? [];
      list.push(config);
      grouped.set(config.tenantId, list);
    }
    const next = new Map<string, TenantUpstreams>();
    for (const [tenantId, list] of grouped) {
      list.sort((a, b) => (a.toolPrefix < b.toolPrefix ? -1 : a.toolPrefix > b.toolPrefix ? 1 : a.id < b.id ? -1 : 1));
      const accepted: UpstreamConfig[] = [];
      for (const config of list) {
        const problems = checkPrefixes([...accepted, config], this.separator);
        const problem = problems.find((line) => line.startsWith(`upstream "${config.name}"`));
        if (problem) reject(config, problem);
        else accepted.push(config);
      }
      next.set(tenantId, {
        list: accepted,
        byId: new Map(accepted.map((config) => [config.id, config])),
        byPrefix: new Map(accepted.map((config) => [config.toolPrefix, config])),
      });
    }
    const changed = new Set<string>();
    for (const tenantId of new Set([...this.byTenant.keys(), ...next.keys()])) {
      if (signature(this.byTenant.get(tenantId)) !== signature(next.get(tenantId))) changed.add(tenantId);
    }
    this.byTenant = next;
    this.tenantOfUpstream = tenants;
    return changed;
  }

  /** The tenant of an upstream the last load had; undefined for one it did not. */
  tenantOf(upstreamId: string): string | undefined {
    return this.tenantOfUpstream.get(upstreamId);
  }

  forTenant(tenantId: string): TenantUpstreams {
    return this.byTenant.get(tenantId) ?? EMPTY;
  }
}
