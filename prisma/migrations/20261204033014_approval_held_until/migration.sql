-- AlterTable
ALTER TABLE "approvals" ADD COLUMN     "held_until" TIMESTAMPTZ(6);
