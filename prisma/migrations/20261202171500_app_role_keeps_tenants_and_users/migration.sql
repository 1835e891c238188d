-- Tenants and users are global tables (no row-level security: the registry is read by id, slug or email). The
-- application role creates and updates them (tenant creation and suspension, members added by email) but never
-- deletes either, so it may not: a tenant-scoped code path gone wrong cannot remove another tenant or a person.
-- Written by hand (Prisma's schema language has no grants; see the row_level_security migration).
REVOKE DELETE ON TABLE "tenants" FROM portcullis_app;
REVOKE DELETE ON TABLE "users" FROM portcullis_app;
