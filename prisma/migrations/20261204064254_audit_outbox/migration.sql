-- CreateTable
CREATE TABLE "audit_outbox" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "event" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT clock_timestamp(),

    CONSTRAINT "audit_outbox_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "audit_outbox_created_at_idx" ON "audit_outbox"("created_at");

-- AddForeignKey
ALTER TABLE "audit_outbox" ADD CONSTRAINT "audit_outbox_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Written by hand below (Prisma's schema cannot say it; see 20261122074500_row_level_security).
-- Per-tenant rows like every tenant-owned table: the control plane writes and deletes them inside withTenant(); only
-- the audit worker's system role (BYPASSRLS) reads across tenants to store what was left behind.
ALTER TABLE "audit_outbox" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "audit_outbox" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON "audit_outbox" AS PERMISSIVE FOR ALL TO PUBLIC
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

-- The application writes an event once and then only deletes it: it never rewrites one on its way to the trail. (The
-- system role keeps UPDATE: the worker's SELECT ... FOR UPDATE SKIP LOCKED needs it.)
REVOKE UPDATE ON TABLE "audit_outbox" FROM portcullis_app;
