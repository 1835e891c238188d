-- The audit API filters a tenant's events by one of these columns within a time range, newest first
-- (libs/control-plane/feature-audit). Each index serves "tenant = ? AND <column> = ? AND occurred_at in range
-- ORDER BY occurred_at DESC" by reading about one page of entries, however rare the value is.

-- CreateIndex
CREATE INDEX "audit_events_tenant_id_upstream_id_occurred_at_idx" ON "audit_events"("tenant_id", "upstream_id", "occurred_at");

-- CreateIndex
CREATE INDEX "audit_events_tenant_id_tool_occurred_at_idx" ON "audit_events"("tenant_id", "tool", "occurred_at");

-- CreateIndex
CREATE INDEX "audit_events_tenant_id_method_occurred_at_idx" ON "audit_events"("tenant_id", "method", "occurred_at");

-- Decision: enum equality is not leakproof, so under row-level security `decision = x` cannot be an index condition;
-- partial indexes whose predicate the query's literal proves can be used instead. `allow` needs none (common).
-- CreateIndex
CREATE INDEX "audit_events_tenant_id_denied_occurred_at_idx" ON "audit_events"("tenant_id", "occurred_at") WHERE (decision = 'deny'::audit_decision);

-- CreateIndex
CREATE INDEX "audit_events_tenant_id_approval_occurred_at_idx" ON "audit_events"("tenant_id", "occurred_at") WHERE (decision = 'require_approval'::audit_decision);

-- CreateIndex
CREATE INDEX "audit_events_tenant_id_outcome_occurred_at_idx" ON "audit_events"("tenant_id", "outcome", "occurred_at");
