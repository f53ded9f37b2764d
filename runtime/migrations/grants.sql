-- Per-database grants of tenantry's roles; idempotent, applied after every migration run.
DO $$ BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tenantry_app, tenantry_bypass, tenantry_directory',
                   current_database());
    -- No temporary objects: a temp table named like a tenant table would shadow it, without
    -- row-level security, for every later transaction of the pooled session. TEMP is granted to
    -- PUBLIC by default, so it is revoked from PUBLIC (grant it back by name to any other role
    -- of this database that needs it).
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, tenantry_app, tenantry_bypass, tenantry_directory',
                   current_database());
END $$;
-- tenantry's objects are in schema tenantry (migration 00000000000013); the application's are in
-- its own schemas (public, usually), which its migrations grant as they need.
GRANT USAGE ON SCHEMA public TO tenantry_app, tenantry_bypass, tenantry_directory;
GRANT USAGE ON SCHEMA tenantry TO tenantry_app, tenantry_bypass, tenantry_directory;
REVOKE CREATE ON SCHEMA tenantry FROM PUBLIC, tenantry_app, tenantry_bypass, tenantry_directory;
GRANT SELECT ON tenantry.tenants, tenantry.users, tenantry.memberships TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenantry.tenants, tenantry.users, tenantry.memberships TO tenantry_bypass;
GRANT SELECT ON tenantry.audit_log TO tenantry_bypass;
GRANT SELECT ON tenantry.tenantry_declared_tables TO tenantry_app, tenantry_bypass;
REVOKE UPDATE, DELETE, TRUNCATE ON tenantry.audit_log FROM tenantry_app, tenantry_bypass;
-- The directory: the app role reads it under row-level security (the active tenant, its
-- memberships and members) and nothing else. Principals are looked up by tenantry's own code on
-- the directory role, which alone may call these functions: SQL that runs in a tenant
-- transaction cannot use them as an oracle.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tenantry.tenants, tenantry.users, tenantry.memberships FROM tenantry_app;
REVOKE UPDATE (cf_sub) ON tenantry.users FROM tenantry_app;
REVOKE EXECUTE ON FUNCTION tenantry.tenantry_principal(text), tenantry.tenantry_principal(text, text),
    tenantry.tenantry_owner_tenant(uuid, uuid, text), tenantry.tenantry_record_sub(uuid, text) FROM PUBLIC, tenantry_app, tenantry_bypass;
GRANT EXECUTE ON FUNCTION tenantry.tenantry_principal(text), tenantry.tenantry_principal(text, text),
    tenantry.tenantry_owner_tenant(uuid, uuid, text), tenantry.tenantry_record_sub(uuid, text), tenantry.tenantry_tenant_keys()
    TO tenantry_directory;
-- The tenant seal (migration 0005): the app role enters a tenant with a proof; it cannot read the
-- keys.
GRANT EXECUTE ON FUNCTION tenantry.tenantry_enter(uuid, boolean, bigint, integer, bytea) TO tenantry_app;
REVOKE ALL ON tenantry.tenantry_tenant_keys FROM PUBLIC, tenantry_app, tenantry_bypass, tenantry_directory;
-- The audit log: both roles write it only through tenantry_audit_write, which leaves its id and
-- time to the server; neither may insert a row, touch its sequence or write its hash chain.
REVOKE INSERT ON tenantry.audit_log FROM tenantry_app, tenantry_bypass;
REVOKE ALL ON SEQUENCE tenantry.audit_log_id_seq FROM tenantry_app, tenantry_bypass;
GRANT SELECT ON tenantry.audit_log_chain, tenantry.audit_log_chain_head TO tenantry_bypass;
GRANT EXECUTE ON FUNCTION tenantry.tenantry_audit_write(uuid, text, text, text, uuid, text, text)
    TO tenantry_app, tenantry_bypass;
