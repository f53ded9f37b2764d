-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- Every change to the directory (tenants, users, memberships) notifies channel
-- `tenantry_directory` when its transaction commits. Each instance of the application listens on
-- it and drops its cached principals (the principal cache of `tenantry::identity`), so a revoked
-- membership or a removed Owner takes effect at once everywhere. The payload is the table's
-- name; PostgreSQL delivers one notification per distinct payload per transaction.
--
-- A table added to the directory later (anything `tenantry_principal` reads) needs the same
-- triggers, or the caches would not see its changes until their TTL.

CREATE FUNCTION tenantry_directory_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_directory', TG_TABLE_NAME);
    RETURN NULL;
END $$;
ALTER FUNCTION tenantry_directory_changed() SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION tenantry_directory_changed() FROM PUBLIC;

CREATE TRIGGER tenantry_directory_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_directory_changed();
CREATE TRIGGER tenantry_directory_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON memberships
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_directory_changed();
CREATE TRIGGER tenantry_directory_changed AFTER INSERT OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_directory_changed();
-- Recording a token's new `sub` (`tenantry_record_sub`, the app role's only write to the
-- directory, on a user's first request) changes nothing a principal grants, so it does not
-- empty every cache; any other change of a `users` row does, whatever columns it touches
-- (present or added later).
CREATE TRIGGER tenantry_directory_user_changed AFTER UPDATE ON users
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'cf_sub') IS DISTINCT FROM (to_jsonb(NEW) - 'cf_sub'))
    EXECUTE FUNCTION tenantry_directory_changed();
