-- The application role stores audit events (the worker) and so inserts and advances a tenant's chain head, but never
-- removes one. With DELETE it could drop the head and let a new one start at 0: verification then saw an empty chain
-- ("intact") and the tenant's next events collided with the stored ones, stopping its audit ingestion.
REVOKE DELETE ON TABLE "audit_chain_heads" FROM portcullis_app;
