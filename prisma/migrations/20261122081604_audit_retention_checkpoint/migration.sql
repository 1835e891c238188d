-- AlterTable
ALTER TABLE "audit_chain_heads" ADD COLUMN     "pruned_at" TIMESTAMPTZ(6),
ADD COLUMN     "pruned_through_hash" TEXT,
ADD COLUMN     "pruned_through_seq" BIGINT NOT NULL DEFAULT 0;

-- Retention deletes the oldest audit events of a tenant; the chain stays verifiable from a checkpoint kept on the
-- chain head (pruned_through_seq/hash). Two guards make the order "checkpoint first, then delete" a database rule:
--   1. only portcullis_system (retention) or the owner may move the checkpoint, and only forwards; nobody may move
--      last_seq backwards;
--   2. an audit event can be deleted only if the checkpoint already covers it.
CREATE FUNCTION "audit_chain_heads_guard"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.last_seq < OLD.last_seq THEN
    RAISE EXCEPTION 'audit chain head cannot move backwards' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.pruned_through_seq, NEW.pruned_through_hash, NEW.pruned_at)
     IS DISTINCT FROM (OLD.pruned_through_seq, OLD.pruned_through_hash, OLD.pruned_at) THEN
    IF current_user = 'portcullis_app' THEN
      RAISE EXCEPTION 'only retention may move the audit checkpoint' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.pruned_through_seq < OLD.pruned_through_seq OR NEW.pruned_through_seq > NEW.last_seq THEN
      RAISE EXCEPTION 'audit checkpoint must move forwards within the chain' USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER "audit_chain_heads_guard" BEFORE UPDATE ON "audit_chain_heads"
  FOR EACH ROW EXECUTE FUNCTION "audit_chain_heads_guard"();

CREATE FUNCTION "audit_events_delete_checkpointed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM audit_chain_heads h WHERE h.tenant_id = OLD.tenant_id AND OLD.seq <= h.pruned_through_seq
  ) THEN
    RAISE EXCEPTION 'audit event % is not covered by the retention checkpoint', OLD.seq
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END
$$;
CREATE TRIGGER "audit_events_delete_checkpointed" BEFORE DELETE ON "audit_events"
  FOR EACH ROW EXECUTE FUNCTION "audit_events_delete_checkpointed"();
