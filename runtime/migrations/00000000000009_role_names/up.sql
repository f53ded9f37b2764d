-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- Role names per deployment (issue 17): the app, bypass and directory roles of this database,
-- recorded by every migration run (`tenantry::migrate_roles`, `TENANTRY_APP_ROLE`,
-- `TENANTRY_BYPASS_ROLE`, `TENANTRY_DIRECTORY_ROLE` or `TENANTRY_ROLE_PREFIX`), so that the
-- declarations grant to them and `tenantry doctor` knows them. The defaults are tenantry's
-- historical names.

CREATE TABLE tenantry_roles (
    purpose    text PRIMARY KEY CHECK (purpose IN ('app', 'bypass', 'directory')),
    role_name  name NOT NULL
);
INSERT INTO tenantry_roles (purpose, role_name) VALUES
    ('app', 'tenantry_app'), ('bypass', 'tenantry_bypass'), ('directory', 'tenantry_directory');

-- The role of `purpose` in this database.
CREATE FUNCTION tenantry_role(purpose text) RETURNS name
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT r.role_name FROM tenantry_roles r WHERE r.purpose = $1),
                    ('tenantry_' || $1)::name)
$$;
DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION tenantry_role(text) SET search_path = %I, pg_temp', current_schema());
END $$;

-- The declarations grant to the recorded roles.
CREATE OR REPLACE FUNCTION tenantry_declare_tenant_table(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t_schema name;
    t_name   name;
    col_num  smallint;
    seq      text;
    col      record;
    expr     text := tenantry_tenant_policy(tenant_column);
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
    EXECUTE format('CREATE POLICY tenantry_tenant_isolation ON %s AS PERMISSIVE FOR ALL USING %s WITH CHECK %s',
                   tbl, expr, expr);

    IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = tbl AND i.indkey[0] = col_num) THEN
        EXECUTE format('CREATE INDEX %I ON %s (%I)', left(t_name, 40) || '_' || tenant_column || '_idx', tbl, tenant_column);
    END IF;

    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I, %I', tbl,
                   tenantry_role('app'), tenantry_role('bypass'));
    FOR col IN SELECT a.attname FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped LOOP
        seq := pg_get_serial_sequence(tbl::text, col.attname);
        IF seq IS NOT NULL THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I, %I', seq,
                           tenantry_role('app'), tenantry_role('bypass'));
        END IF;
    END LOOP;

    INSERT INTO tenantry_declared_tables (table_schema, table_name, kind, tenant_column)
    VALUES (t_schema, t_name, 'tenant', tenant_column)
    ON CONFLICT (table_schema, table_name)
    DO UPDATE SET kind = 'tenant', tenant_column = EXCLUDED.tenant_column, declared_at = now();
END $$;
REVOKE EXECUTE ON FUNCTION tenantry_declare_tenant_table(regclass, name) FROM PUBLIC;

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
    EXECUTE format('GRANT SELECT ON %s TO %I', tbl, tenantry_role('app'));
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', tbl, tenantry_role('bypass'));
    INSERT INTO tenantry_declared_tables (table_schema, table_name, kind)
    VALUES (t_schema, t_name, 'global')
    ON CONFLICT (table_schema, table_name)
    DO UPDATE SET kind = 'global', tenant_column = NULL, declared_at = now();
END $$;
REVOKE EXECUTE ON FUNCTION tenantry_declare_global_table(regclass) FROM PUBLIC;
