-- AlterTable
ALTER TABLE "audit_events" ADD COLUMN     "hash_version" SMALLINT NOT NULL DEFAULT 1;

-- Written by hand below (Prisma's schema cannot say it).
-- Existing rows were hashed with version 1 (the default above, a catalogue-only change: no row is rewritten, so the
-- append-only trigger does not fire). The worker writes version 2 from now on. Only versions the code can verify.
ALTER TABLE "audit_events" ADD CONSTRAINT "audit_events_hash_version_known" CHECK (hash_version IN (1, 2));
