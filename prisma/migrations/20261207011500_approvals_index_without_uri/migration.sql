-- The lookup index of one target's approvals held the target's name, which for a resource is its URI (up to 8 KiB).
-- A btree entry is bounded at about 2.7 kB: a held read of a longer URI (a signed URL) could not be recorded, and so
-- never approved (found by a review). The name leaves the index; the arguments hash still tells targets' calls apart.
-- DropIndex
DROP INDEX "approvals_tenant_id_upstream_id_kind_tool_arguments_hash_idx";

-- CreateIndex
CREATE INDEX "approvals_tenant_id_upstream_id_kind_arguments_hash_idx" ON "approvals"("tenant_id", "upstream_id", "kind", "arguments_hash");
