-- Per-database grants of tenantry's roles; idempotent, applied after every migration run.
DO $$ BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tenantry_app, tenantry_bypass', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO tenantry_app, tenantry_bypass;
GRANT SELECT ON tenants, users, memberships TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users, memberships TO tenantry_bypass;
GRANT SELECT ON audit_log TO tenantry_bypass;
GRANT SELECT ON tenantry_declared_tables TO tenantry_app, tenantry_bypass;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM tenantry_app, tenantry_bypass;
-- The directory: the app role reads it under row-level security (the active tenant, its
-- memberships and members) and reaches the rest only through these functions.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tenants, users, memberships FROM tenantry_app;
REVOKE UPDATE (cf_sub) ON users FROM tenantry_app;
GRANT EXECUTE ON FUNCTION tenantry_principal(text), tenantry_principal(text, text),
    tenantry_owner_tenant(uuid, text), tenantry_record_sub(uuid, text) TO tenantry_app;
-- The audit log: both roles write it only through tenantry_audit_write, which leaves its id and
-- time to the server; neither may insert a row, touch its sequence or write its hash chain.
REVOKE INSERT ON audit_log FROM tenantry_app, tenantry_bypass;
REVOKE ALL ON SEQUENCE audit_log_id_seq FROM tenantry_app, tenantry_bypass;
GRANT SELECT ON audit_log_chain, audit_log_chain_head TO tenantry_bypass;
GRANT EXECUTE ON FUNCTION tenantry_audit_write(uuid, text, text, text, uuid, text, text)
    TO tenantry_app, tenantry_bypass;
