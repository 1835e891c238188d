-- Tenants and users are global tables (no row-level security: the registry is read by id, slug or email), so what
-- the application role may do to them is narrowed here instead. Written by hand (Prisma's schema language has no
-- grants or triggers; see the row_level_security migration and ADR 0003).

-- It creates and updates tenants (creation, renaming, suspension) and creates users (members added by email), but
-- never deletes either: a tenant-scoped code path gone wrong cannot remove another tenant or a person.
REVOKE DELETE ON TABLE "tenants" FROM portcullis_app;
REVOKE DELETE ON TABLE "users" FROM portcullis_app;

-- Whether the current role may do what only the system role (or a superuser) should: it bypasses row-level security
-- or is a superuser. Judged by what the role is, not its name (production may log in as another role that is a
-- member of portcullis_app). The search path is pinned: a caller's temporary view named pg_roles must not answer.
CREATE FUNCTION "current_role_is_privileged"() RETURNS boolean LANGUAGE sql STABLE
  SET search_path = pg_catalog, pg_temp
  AS $$ SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = current_user AND (rolsuper OR rolbypassrls)) $$;

-- users.platform_role makes a platform administrator (of every tenant). The application never grants it (bootstrap
-- does, as portcullis_system). A trigger rather than column grants: Prisma names the column, with its default, in
-- every INSERT. A platform administrator's identity (email, SSO issuer and subject) is guarded the same way: rewriting
-- it would hand the role to whoever signs in as the new identity.
CREATE FUNCTION "users_platform_role_guard"() RETURNS trigger LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  IF public.current_role_is_privileged() THEN
    RETURN NEW;
  END IF;
  IF TG_OP = 'INSERT' AND NEW.platform_role <> 'none' THEN
    RAISE EXCEPTION 'the application role may not change platform roles' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'UPDATE' AND (
    NEW.platform_role IS DISTINCT FROM OLD.platform_role
    OR (OLD.platform_role <> 'none' AND (NEW.email, NEW.sso_issuer, NEW.sso_subject) IS DISTINCT FROM (OLD.email, OLD.sso_issuer, OLD.sso_subject))
  ) THEN
    RAISE EXCEPTION 'the application role may not change platform roles or a platform administrator''s identity'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER "users_platform_role_guard" BEFORE INSERT OR UPDATE ON "users"
  FOR EACH ROW EXECUTE FUNCTION "users_platform_role_guard"();

-- The audit checkpoint guard named the application role; it now asks the same question as the one above.
CREATE OR REPLACE FUNCTION "audit_chain_heads_guard"() RETURNS trigger LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  IF NEW.last_seq < OLD.last_seq THEN
    RAISE EXCEPTION 'audit chain head cannot move backwards' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.pruned_through_seq, NEW.pruned_through_hash, NEW.pruned_at)
     IS DISTINCT FROM (OLD.pruned_through_seq, OLD.pruned_through_hash, OLD.pruned_at) THEN
    IF NOT public.current_role_is_privileged() THEN
      RAISE EXCEPTION 'only retention may move the audit checkpoint' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.pruned_through_seq < OLD.pruned_through_seq OR NEW.pruned_through_seq > NEW.last_seq THEN
      RAISE EXCEPTION 'audit checkpoint must move forwards within the chain' USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  RETURN NEW;
END
$$;
