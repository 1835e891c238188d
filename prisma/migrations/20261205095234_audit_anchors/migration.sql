-- CreateTable
CREATE TABLE "audit_anchors" (
    "tenant_id" UUID NOT NULL,
    "seq" BIGINT NOT NULL,
    "hash" TEXT NOT NULL,
    "signed_at" TIMESTAMPTZ(3) NOT NULL,
    "key_id" TEXT NOT NULL,
    "signature" TEXT NOT NULL,

    CONSTRAINT "audit_anchors_pkey" PRIMARY KEY ("tenant_id","seq")
);

-- AddForeignKey
ALTER TABLE "audit_anchors" ADD CONSTRAINT "audit_anchors_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Written by hand below (Prisma's schema cannot say it; see 20261122074500_row_level_security).
-- Tenant-owned like the chain it signs: the application role reads a tenant's anchors inside withTenant() (the audit
-- API), and only the audit worker's system role (BYPASSRLS), which signs every tenant's chain head, writes them.
ALTER TABLE "audit_anchors" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "audit_anchors" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON "audit_anchors" AS PERMISSIVE FOR ALL TO PUBLIC
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

ALTER TABLE "audit_anchors" ADD CONSTRAINT "audit_anchors_seq_positive" CHECK (seq > 0);

-- Append-only: the application only reads; the system role adds anchors and never changes or removes one (a removed
-- anchor is a check an auditor can no longer make). A database owner can still do both, which the copies of anchors
-- outside the database (the worker's log, export manifests) exist to reveal.
REVOKE INSERT, UPDATE, DELETE ON TABLE "audit_anchors" FROM portcullis_app;
REVOKE UPDATE, DELETE ON TABLE "audit_anchors" FROM portcullis_system;

CREATE FUNCTION "audit_anchors_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit anchors are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER "audit_anchors_append_only" BEFORE UPDATE OR DELETE ON "audit_anchors"
  FOR EACH ROW EXECUTE FUNCTION "audit_anchors_append_only"();
