-- AlterEnum
ALTER TYPE "approval_status" ADD VALUE 'cancelled';
