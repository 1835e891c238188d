-- Tenants and users are global tables (no row-level security: the registry is read by id, slug or email), so what
-- the application role may do to them is narrowed here instead. Written by hand (Prisma's schema language has no
-- grants or triggers; see the row_level_security migration and ADR 0003).

-- It creates and updates tenants (creation, renaming, suspension) and creates users (members added by email), but
-- never deletes either: a tenant-scoped code path gone wrong cannot remove another tenant or a person.
REVOKE DELETE ON TABLE "tenants" FROM portcullis_app;
REVOKE DELETE ON TABLE "users" FROM portcullis_app;

-- users.platform_role makes a platform administrator (of every tenant). The application never grants it (bootstrap
-- does, as portcullis_system). A trigger rather than column grants: Prisma names the column, with its default, in
-- every INSERT. Judged by what the role is rather than its name (production may log in as another role granted
-- portcullis_app's rights): only a role that bypasses row-level security (portcullis_system, the owner) may.
CREATE FUNCTION "users_platform_role_guard"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolbypassrls)) AND (
    (TG_OP = 'INSERT' AND NEW.platform_role <> 'none')
    OR (TG_OP = 'UPDATE' AND NEW.platform_role IS DISTINCT FROM OLD.platform_role)
  ) THEN
    RAISE EXCEPTION 'the application role may not change platform roles' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER "users_platform_role_guard" BEFORE INSERT OR UPDATE ON "users"
  FOR EACH ROW EXECUTE FUNCTION "users_platform_role_guard"();
