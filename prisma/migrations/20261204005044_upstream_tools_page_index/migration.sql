-- Pages of GET …/upstreams/{id}/tools walk one upstream's rows in id order; without it each page read and sorted all of them.
-- CreateIndex
CREATE INDEX "upstream_tools_tenant_id_upstream_id_id_idx" ON "upstream_tools"("tenant_id", "upstream_id", "id");
