/**
 * Redis pub/sub channels on which the control plane announces changes the gateway caches. The message is the id of
 * the tenant whose data changed; subscribers reload that tenant's entries (and reconcile periodically anyway, so a
 * lost message only delays a change).
 */
export const CHANGE_CHANNELS = {
  tenants: 'pcs:tenants:changed',
  upstreams: 'pcs:upstreams:changed',
  apiKeys: 'pcs:apikeys:changed',
  /** A tenant's active policy snapshot changed (a new version, or a rollback). */
  snapshots: 'pcs:snapshots:changed',
  /** An approval of the tenant was decided: gateways holding its calls look at them now (and poll anyway). */
  approvals: 'pcs:approvals:decided',
} as const;
export type ChangeChannel = (typeof CHANGE_CHANNELS)[keyof typeof CHANGE_CHANNELS];
