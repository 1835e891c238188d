-- Tenant isolation in the database (defence in depth; see docs/adr/0003-tenant-isolation.md).
-- Written by hand: Prisma's schema language cannot express roles, grants, RLS policies, CHECK constraints or
-- triggers, and its diff ignores them, so `npm run db:drift` stays quiet about this file.

-- ---------------------------------------------------------------------------------------------------------------
-- Roles. Cluster-wide, so created only if missing (many databases, e.g. one per test run, share them).
-- No passwords here: local development uses trust auth; production sets them out of band (ADR 0003).
-- ---------------------------------------------------------------------------------------------------------------
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
    CREATE ROLE portcullis_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL; -- created concurrently by another migration run
END
$$;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_system') THEN
    CREATE ROLE portcullis_system LOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

-- Refuse to continue if the application role was set up with powers that would void row-level security.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app' AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'role portcullis_app must be NOSUPERUSER NOBYPASSRLS: row-level security would not apply to it';
  END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------------------------
-- Privileges. Both roles use the tables; neither owns them (owners and superusers are not subject to FORCE'd RLS
-- in the same way, and DDL stays with the migration role).
-- ---------------------------------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA public TO portcullis_app, portcullis_system;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO portcullis_app, portcullis_system;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO portcullis_app, portcullis_system;

-- Tables created later by the role that runs migrations get the same grants (RLS must still be enabled per table,
-- in the migration that creates it; an integration test fails when a tenant_id table lacks it).
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO portcullis_app, portcullis_system;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO portcullis_app, portcullis_system;

-- Migration bookkeeping is not the application's business (absent when the engine replays into a shadow database).
DO $$
BEGIN
  IF to_regclass('public._prisma_migrations') IS NOT NULL THEN
    REVOKE ALL ON TABLE "_prisma_migrations" FROM portcullis_app;
    REVOKE INSERT, UPDATE, DELETE ON TABLE "_prisma_migrations" FROM portcullis_system;
  END IF;
END
$$;

-- The audit trail is append-only for the application; retention (DELETE) runs as portcullis_system.
REVOKE UPDATE, DELETE ON TABLE "audit_events" FROM portcullis_app;
REVOKE UPDATE ON TABLE "audit_events" FROM portcullis_system;

-- ---------------------------------------------------------------------------------------------------------------
-- Row-level security on every tenant-owned table. The tenant comes from the transaction-local setting
-- `app.tenant_id` (`withTenant()` sets it with set_config(..., true)). NULLIF: once a session has used the setting it
-- reads '' rather than NULL outside the transaction, and ''::uuid would be an error instead of "no rows".
-- FORCE applies the policies to the table owner too.
-- ---------------------------------------------------------------------------------------------------------------
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'memberships', 'groups', 'group_members', 'sso_connections',
    'upstreams', 'upstream_tools',
    'policies', 'policy_rules', 'policy_snapshots',
    'agent_clients', 'api_keys',
    'oauth_clients', 'oauth_consents', 'oauth_authorization_codes', 'oauth_refresh_tokens',
    'approvals',
    'audit_events', 'audit_chain_heads', 'audit_exports'
  ]
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I AS PERMISSIVE FOR ALL TO PUBLIC '
      'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
      'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)',
      t
    );
  END LOOP;
END
$$;

-- A signed-in person may list their own memberships across tenants (tenant switcher) before a tenant is chosen:
-- `withUser()` sets `app.user_id`. Read-only; every other table stays strictly per tenant.
CREATE POLICY own_memberships ON "memberships" AS PERMISSIVE FOR SELECT TO PUBLIC
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);

-- ---------------------------------------------------------------------------------------------------------------
-- Invariants Prisma's schema language cannot express.
-- ---------------------------------------------------------------------------------------------------------------
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_slug_format"
  CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$');

ALTER TABLE "upstreams" ADD CONSTRAINT "upstreams_endpoint_matches_transport"
  CHECK (
    (transport = 'stdio' AND command IS NOT NULL AND url IS NULL)
    OR (transport <> 'stdio' AND url IS NOT NULL AND command IS NULL)
  );
ALTER TABLE "upstreams" ADD CONSTRAINT "upstreams_timeouts_positive"
  CHECK (connect_timeout_ms > 0 AND call_timeout_ms > 0);

ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_has_owner"
  CHECK (agent_client_id IS NOT NULL OR user_id IS NOT NULL);

ALTER TABLE "policy_snapshots" ADD CONSTRAINT "policy_snapshots_version_positive" CHECK (version > 0);
ALTER TABLE "audit_events" ADD CONSTRAINT "audit_events_seq_positive" CHECK (seq > 0);

-- A policy snapshot is immutable except for its `active` flag.
CREATE FUNCTION "policy_snapshots_immutable"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (to_jsonb(NEW) - 'active') IS DISTINCT FROM (to_jsonb(OLD) - 'active') THEN
    RAISE EXCEPTION 'policy snapshots are immutable (only "active" may change)' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER "policy_snapshots_immutable" BEFORE UPDATE ON "policy_snapshots"
  FOR EACH ROW EXECUTE FUNCTION "policy_snapshots_immutable"();

-- Audit events are never updated, by anyone.
CREATE FUNCTION "audit_events_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER "audit_events_append_only" BEFORE UPDATE ON "audit_events"
  FOR EACH ROW EXECUTE FUNCTION "audit_events_append_only"();
