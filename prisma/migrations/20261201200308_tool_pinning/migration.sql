-- CreateEnum
CREATE TYPE "tool_approval_mode" AS ENUM ('trust_on_first_use', 'require_approval');

-- AlterTable
ALTER TABLE "upstream_tools" ADD COLUMN     "approved_definition" JSONB;

-- AlterTable
ALTER TABLE "upstreams" ADD COLUMN     "tool_approval" "tool_approval_mode" NOT NULL DEFAULT 'trust_on_first_use';
