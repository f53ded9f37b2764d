-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- The directory (tenants, users, memberships) is no longer readable whole by the app role: inside
-- a tenant transaction row-level security shows the tenant itself, its memberships and its
-- members; outside one, nothing. The identity layer looks a principal up through narrow
-- SECURITY DEFINER functions instead. Declarations also refuse tables that hide a tenant key.

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
-- Not FORCEd: the tables' owner (the migration role, which the CLI uses) and the functions below,
-- which run as that owner, see every row; tenantry_app never owns them.

CREATE POLICY tenantry_directory_tenant ON tenants AS PERMISSIVE FOR ALL
    USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY tenantry_directory_membership ON memberships AS PERMISSIVE FOR ALL
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY tenantry_directory_member ON users AS PERMISSIVE FOR ALL
    USING (EXISTS (SELECT 1 FROM memberships m
                   WHERE m.user_id = users.id
                     AND m.tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (false);

-- One principal: the user with this email (case-insensitive) and its memberships, one row per
-- membership (membership columns NULL when it has none); no row for an unknown email.
CREATE FUNCTION tenantry_principal(p_email text)
RETURNS TABLE (user_id uuid, email text, is_owner boolean, cf_sub text,
               tenant_id uuid, role text, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT u.id, u.email, u.is_owner, u.cf_sub, m.tenant_id, m.role, t.slug, t.name
    FROM users u
    LEFT JOIN memberships m ON m.user_id = u.id
    LEFT JOIN tenants t ON t.id = m.tenant_id
    WHERE lower(u.email) = lower(p_email)
    ORDER BY t.slug
$$;

-- The tenant an Owner names by id or slug, only if p_owner really is an Owner.
CREATE FUNCTION tenantry_owner_tenant(p_owner uuid, p_key text)
RETURNS TABLE (id uuid, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT t.id, t.slug, t.name
    FROM tenants t
    WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p_owner AND u.is_owner)
      AND (t.slug = p_key
           OR t.id = CASE WHEN p_key ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                          THEN p_key::uuid END)
$$;

-- Records the token's `sub` beside the user (Cloudflare issues a new one when a user is removed
-- and re-added; the email stays the key). The only write the app role makes to the directory.
CREATE FUNCTION tenantry_record_sub(p_user uuid, p_sub text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER AS $$
    UPDATE users SET cf_sub = p_sub WHERE id = p_user AND cf_sub IS DISTINCT FROM p_sub
$$;

DO $$
DECLARE f text;
BEGIN
    -- A SECURITY DEFINER function resolves names in a pinned schema, never the caller's.
    FOREACH f IN ARRAY ARRAY['tenantry_principal(text)', 'tenantry_owner_tenant(uuid, text)',
                             'tenantry_record_sub(uuid, text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- A tenant table's tenant column is its key into `tenants`: a single-column foreign key to
-- tenants (id). This refuses a declaration naming another column (`column = project_id`).
CREATE OR REPLACE FUNCTION tenantry_declare_tenant_table(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t_schema name;
    t_name   name;
    col_num  smallint;
    seq      text;
    col      record;
BEGIN
    SELECT n.nspname, c.relname INTO t_schema, t_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;

    SELECT a.attnum INTO col_num FROM pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = tenant_column AND NOT a.attisdropped
      AND a.atttypid = 'uuid'::regtype AND a.attnotnull;
    IF col_num IS NULL THEN
        RAISE EXCEPTION 'tenant table %: column % must exist and be "uuid NOT NULL"', tbl, tenant_column;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint k
        WHERE k.conrelid = tbl AND k.contype = 'f' AND k.conkey = ARRAY[col_num]
          AND k.confrelid = to_regclass('tenants')
    ) THEN
        RAISE EXCEPTION 'tenant table %: column % is not the tenant key (it needs FOREIGN KEY (%) REFERENCES tenants (id))',
            tbl, tenant_column, tenant_column;
    END IF;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenantry_tenant_isolation ON %s', tbl);
    EXECUTE format(
        'CREATE POLICY tenantry_tenant_isolation ON %s AS PERMISSIVE FOR ALL '
        'USING (%I = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
        'WITH CHECK (%I = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)',
        tbl, tenant_column, tenant_column);

    IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indkey[0] = col_num) THEN
        EXECUTE format('CREATE INDEX %I ON %s (%I)', left(t_name, 40) || '_' || tenant_column || '_idx', tbl, tenant_column);
    END IF;

    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO tenantry_app, tenantry_bypass', tbl);
    FOR col IN SELECT a.attname FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped LOOP
        seq := pg_get_serial_sequence(tbl::text, col.attname);
        IF seq IS NOT NULL THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO tenantry_app, tenantry_bypass', seq);
        END IF;
    END LOOP;

    INSERT INTO tenantry_declared_tables (table_schema, table_name, kind, tenant_column)
    VALUES (t_schema, t_name, 'tenant', tenant_column)
    ON CONFLICT (table_schema, table_name)
    DO UPDATE SET kind = 'tenant', tenant_column = EXCLUDED.tenant_column, declared_at = now();
END $$;

-- A global table has no tenant key: neither a column named tenant_id nor a foreign key to
-- tenants, whatever its column is called. Such a table would be read without a filter and
-- without row-level security.
CREATE OR REPLACE FUNCTION tenantry_declare_global_table(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t_schema name;
    t_name   name;
    fk       text;
BEGIN
    SELECT n.nspname, c.relname INTO t_schema, t_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF EXISTS (SELECT 1 FROM pg_attribute a
               WHERE a.attrelid = tbl AND a.attname = 'tenant_id' AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'table % has a tenant_id column, so it cannot be declared global: declare it with tenantry_declare_tenant_table', tbl;
    END IF;
    SELECT k.conname INTO fk FROM pg_constraint k
    WHERE k.conrelid = tbl AND k.contype = 'f' AND k.confrelid = to_regclass('tenants')
    LIMIT 1;
    IF fk IS NOT NULL THEN
        RAISE EXCEPTION 'table % references tenants (constraint %), so it cannot be declared global: declare it with tenantry_declare_tenant_table', tbl, fk;
    END IF;
    EXECUTE format('GRANT SELECT ON %s TO tenantry_app', tbl);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO tenantry_bypass', tbl);
    INSERT INTO tenantry_declared_tables (table_schema, table_name, kind)
    VALUES (t_schema, t_name, 'global')
    ON CONFLICT (table_schema, table_name)
    DO UPDATE SET kind = 'global', tenant_column = NULL, declared_at = now();
END $$;

REVOKE EXECUTE ON FUNCTION tenantry_declare_tenant_table(regclass, name) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_declare_global_table(regclass) FROM PUBLIC;
