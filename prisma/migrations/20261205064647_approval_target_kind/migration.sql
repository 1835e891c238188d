-- What a held request is about (tool, prompt, resource) and the JSON-RPC method held, so an approver can tell a prompt
-- from a tool of the same name, or a completion from the call itself. Existing rows default to kind 'tool' and method
-- null, and are backfilled below where the evidence allows. The lookup index of one target's approvals includes the
-- kind (a tool and a prompt may share a name).
-- CreateEnum
CREATE TYPE "approval_target_kind" AS ENUM ('tool', 'prompt', 'resource');

-- DropIndex
DROP INDEX "approvals_tenant_id_upstream_id_tool_arguments_hash_idx";

-- AlterTable
ALTER TABLE "approvals" ADD COLUMN     "kind" "approval_target_kind" NOT NULL DEFAULT 'tool',
ADD COLUMN     "method" TEXT;

-- CreateIndex
CREATE INDEX "approvals_tenant_id_upstream_id_kind_tool_arguments_hash_idx" ON "approvals"("tenant_id", "upstream_id", "kind", "tool", "arguments_hash");

-- Backfill: prompts and resources could already be held, so the default alone would call their rows tool calls.
-- Where the evidence is unambiguous, older rows get their kind back (their method stays unknown: null): a name the
-- upstream lists as a prompt and not as a tool is a prompt; a name with a URI scheme that the upstream does not list
-- as a tool is a resource. Everything else stays `tool`.
-- Both tables force row-level security, which binds their owner too unless it is a superuser (on managed Postgres it is
-- not): with no tenant set, the backfill would see no row and change nothing, silently. Lifted for the backfill only,
-- within this migration's transaction, and forced again after it.
ALTER TABLE "approvals" NO FORCE ROW LEVEL SECURITY;
ALTER TABLE "upstream_tools" NO FORCE ROW LEVEL SECURITY;
UPDATE "approvals" AS a SET "kind" = 'prompt'
WHERE EXISTS (
    SELECT 1 FROM "upstream_tools" AS t
    WHERE t."tenant_id" = a."tenant_id" AND t."upstream_id" = a."upstream_id" AND t."kind" = 'prompt' AND t."name" = a."tool"
  )
  AND NOT EXISTS (
    SELECT 1 FROM "upstream_tools" AS t
    WHERE t."tenant_id" = a."tenant_id" AND t."upstream_id" = a."upstream_id" AND t."kind" = 'tool' AND t."name" = a."tool"
  );
UPDATE "approvals" AS a SET "kind" = 'resource'
WHERE a."kind" = 'tool'
  AND a."tool" ~ '^[A-Za-z][A-Za-z0-9+.-]*:'
  AND NOT EXISTS (
    SELECT 1 FROM "upstream_tools" AS t
    WHERE t."tenant_id" = a."tenant_id" AND t."upstream_id" = a."upstream_id" AND t."kind" = 'tool' AND t."name" = a."tool"
  );
ALTER TABLE "approvals" FORCE ROW LEVEL SECURITY;
ALTER TABLE "upstream_tools" FORCE ROW LEVEL SECURITY;
