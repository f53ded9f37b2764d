-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- tenantry's own tables. Roles and grants are applied separately (see roles.sql), because roles
-- are shared by every database of a server.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    name        text NOT NULL CHECK (btrim(name) <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (position('@' in email) > 1),
    display_name  text NULL,
    is_owner      boolean NOT NULL DEFAULT false,
    cf_sub        text NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE memberships (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('partner', 'client_viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tenant_id)
);
CREATE INDEX memberships_tenant_id_idx ON memberships (tenant_id);

CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_user_id  uuid NULL,
    actor_email    text NOT NULL,
    action         text NOT NULL,
    reason         text NOT NULL CHECK (btrim(reason) <> ''),
    tenant_id      uuid NULL,
    request_id     text NULL,
    location       text NULL
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);

-- Append-only, even for the table owner: no UPDATE, DELETE or TRUNCATE.
CREATE FUNCTION tenantry_audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tenantry_audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_audit_log_is_append_only();

-- Which tables are declared to tenantry, so that `tenantry doctor` can check a database
-- without the application's code.
CREATE TABLE tenantry_declared_tables (
    table_schema   text NOT NULL,
    table_name     text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('tenant', 'global')),
    tenant_column  text NULL,
    declared_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name),
    CHECK ((kind = 'tenant') = (tenant_column IS NOT NULL))
);

INSERT INTO tenantry_declared_tables (table_schema, table_name, kind)
SELECT current_schema(), t, 'global'
FROM unnest(ARRAY['tenants', 'users', 'memberships', 'audit_log']) AS t;

-- Gives a tenant table its row-level security and records it as declared.
CREATE FUNCTION tenantry_declare_tenant_table(tbl regclass, tenant_column name DEFAULT 'tenant_id')
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

-- Declares a table shared by all tenants: the app role reads it, the bypass role may write it.
CREATE FUNCTION tenantry_declare_global_table(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t_schema name;
    t_name   name;
BEGIN
    SELECT n.nspname, c.relname INTO t_schema, t_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    EXECUTE format('GRANT SELECT ON %s TO tenantry_app', tbl);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO tenantry_bypass', tbl);
    INSERT INTO tenantry_declared_tables (table_schema, table_name, kind)
    VALUES (t_schema, t_name, 'global')
    ON CONFLICT (table_schema, table_name)
    DO UPDATE SET kind = 'global', tenant_column = NULL, declared_at = now();
END $$;

REVOKE EXECUTE ON FUNCTION tenantry_declare_tenant_table(regclass, name) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenantry_declare_global_table(regclass) FROM PUBLIC;
