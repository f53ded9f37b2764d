-- tenantry's three roles, shared by every database of the server. Safe to run concurrently from
-- several databases: a role created by a concurrent run is not an error.
--   tenantry_app        the request path: subject to row-level security, owns nothing
--   tenantry_bypass     audited cross-tenant work: BYPASSRLS
--   tenantry_directory  tenantry's own lookups (principals, the tenant key): runs no SQL of the
--                       application's, may call the directory functions and nothing else
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES
        ('tenantry_app', 'NOBYPASSRLS'),
        ('tenantry_bypass', 'BYPASSRLS'),
        ('tenantry_directory', 'NOBYPASSRLS')) AS v (name, rls)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER %s NOCREATEDB NOCREATEROLE NOINHERIT',
                               r.name, r.rls);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;
    END LOOP;
END $$;
