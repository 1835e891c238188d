-- A tenant's own name for a member. Users are global (one row per email): a member added by email to a second tenant
-- showed that tenant the name the first one chose (and told it the person had an account here). Memberships from
-- before keep showing the user's name (display_name NULL).
-- AlterTable
ALTER TABLE "memberships" ADD COLUMN     "display_name" TEXT;
