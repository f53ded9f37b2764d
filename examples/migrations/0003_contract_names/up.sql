-- The example's contract (shared/spec/example-app.md) names tenantry's tables `tenants`, `users`,
-- `memberships` and `audit_log`, and the tools that work on the example's database write them
-- so: its HTTP benchmark seeds `INSERT INTO tenants ..`, an operator types `SELECT .. FROM
-- audit_log` in psql. tenantry keeps them in its own schema; the example puts that schema on its
-- database's search path, after the app's own (`public`), so those names resolve and an
-- application table of the same name would still win. New sessions get it; tenantry's own SQL
-- names its schema and does not depend on it.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER') THEN
        RAISE EXCEPTION 'the example migrates as its database''s owner (it sets the database''s search_path): % does not own %',
            current_user, current_database();
    END IF;
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, tenantry', current_database());
END
$$;
