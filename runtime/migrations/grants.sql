-- Per-database grants of tenantry's roles; idempotent, applied after every migration run.
DO $$ BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tenantry_app, tenantry_bypass', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO tenantry_app, tenantry_bypass;
GRANT SELECT ON tenants, users, memberships TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users, memberships TO tenantry_bypass;
GRANT INSERT ON audit_log TO tenantry_app;
GRANT SELECT, INSERT ON audit_log TO tenantry_bypass;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO tenantry_app, tenantry_bypass;
GRANT SELECT ON tenantry_declared_tables TO tenantry_app, tenantry_bypass;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM tenantry_app, tenantry_bypass;
-- The directory: the app role reads it under row-level security (the active tenant, its
-- memberships and members) and reaches the rest only through these functions.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tenants, users, memberships FROM tenantry_app;
REVOKE UPDATE (cf_sub) ON users FROM tenantry_app;
GRANT EXECUTE ON FUNCTION tenantry_principal(text), tenantry_principal(text, text),
    tenantry_owner_tenant(uuid, text), tenantry_record_sub(uuid, text) TO tenantry_app;
