-- Memberships from before display_name keep showing what they showed (the user's name); from now on a tenant's
-- listings never read users.name, so no later change of it, and no other tenant's choice, reaches them.
UPDATE "memberships" AS m SET "display_name" = u."name" FROM "users" AS u WHERE u."id" = m."user_id" AND m."display_name" IS NULL;
