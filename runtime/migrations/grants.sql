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
-- The identity layer records the token's `sub` beside the user (the email stays the key).
GRANT UPDATE (cf_sub) ON users TO tenantry_app;
