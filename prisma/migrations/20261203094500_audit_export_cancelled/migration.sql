-- An export a person stopped (queued or running): the worker leaves it, and removes what it had written.
ALTER TYPE "audit_export_status" ADD VALUE IF NOT EXISTS 'cancelled';
