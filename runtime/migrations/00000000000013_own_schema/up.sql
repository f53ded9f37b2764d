-- tenantry's objects live in their own schema, `tenantry` (issue 21): an application that already
-- has a `users` or `tenants` table adopts tenantry beside them, and nothing of tenantry's is
-- found by an application's unqualified names (the app role's search path does not include
-- `tenantry`; tenantry's own SQL names every object with its schema).
--
-- On a fresh database migrations 0001 to 0012 already created everything in `tenantry` (each
-- puts `tenantry` first on its search path). A database migrated before this one holds
-- tenantry's objects in the schema its migrations ran in (`public`, usually): this migration
-- moves them with ALTER ... SET SCHEMA, which keeps every row, grant, index, trigger and policy
-- (policies, views and foreign keys name their objects by oid, not by name). What names objects
-- by text is then made to name `tenantry`: the functions' pinned search paths and the bodies that
-- spell their schema. Idempotent: on a fresh database, or run again, nothing moves.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- ---- move the objects of an earlier layout ----
DO $$
DECLARE
    legacy name;
    r      record;
    moved  text[] := ARRAY['tenants', 'users', 'memberships', 'audit_log', 'audit_log_chain',
                           'audit_log_chain_head', 'tenantry_declared_tables', 'tenantry_tenant_keys',
                           'tenantry_roles', 'tenantry_jobs', 'tenantry_current_tenant'];
BEGIN
    -- The schema the earlier migrations ran in: where their bookkeeping table is, if not here.
    FOR legacy IN SELECT n.nspname FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relname = 'tenantry_declared_tables' AND c.relkind = 'r'
                    AND n.nspname <> 'tenantry' LOOP
        FOR r IN SELECT c.relname, c.relkind FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = legacy AND c.relname = ANY (moved) AND c.relkind IN ('r', 'v')
                   AND pg_catalog.to_regclass(pg_catalog.format('tenantry.%I', c.relname)) IS NULL
                 ORDER BY c.relkind, c.relname LOOP
            EXECUTE pg_catalog.format('ALTER %s %I.%I SET SCHEMA tenantry',
                CASE r.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, legacy, r.relname);
        END LOOP;
        IF pg_catalog.to_regtype(pg_catalog.format('%I.tenantry_tenant_check', legacy)) IS NOT NULL
           AND pg_catalog.to_regtype('tenantry.tenantry_tenant_check') IS NULL THEN
            EXECUTE pg_catalog.format('ALTER DOMAIN %I.tenantry_tenant_check SET SCHEMA tenantry', legacy);
        END IF;
        FOR r IN SELECT p.proname, pg_catalog.oidvectortypes(p.proargtypes) AS args
                 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = legacy AND p.proname LIKE 'tenantry\_%' LOOP
            IF pg_catalog.to_regprocedure(pg_catalog.format('tenantry.%I(%s)', r.proname, r.args)) IS NULL THEN
                EXECUTE pg_catalog.format('ALTER FUNCTION %I.%I(%s) SET SCHEMA tenantry',
                                          legacy, r.proname, r.args);
            ELSE
                -- A later migration (run after `tenantry` came first on the search path)
                -- created its replacement in `tenantry`: the earlier copy is stale. Kept only
                -- if something still depends on it.
                BEGIN
                    EXECUTE pg_catalog.format('DROP FUNCTION %I.%I(%s)', legacy, r.proname, r.args);
                EXCEPTION WHEN dependent_objects_still_exist THEN NULL;
                END;
            END IF;
        END LOOP;
        -- The declarations of tenantry's own tables follow them.
        UPDATE tenantry.tenantry_declared_tables d SET table_schema = 'tenantry'
        WHERE d.table_schema = legacy AND d.table_name = ANY (moved)
          AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', legacy, d.table_name)) IS NULL
          AND NOT EXISTS (SELECT 1 FROM tenantry.tenantry_declared_tables o
                          WHERE o.table_schema = 'tenantry' AND o.table_name = d.table_name);
    END LOOP;
END $$;

-- ---- every pinned search path names `tenantry` ----
-- (Functions pinned to pg_catalog alone stay so.)
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'tenantry'::regnamespace
               AND EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) AS s
                           WHERE s LIKE 'search\_path=%' AND s <> 'search_path=pg_catalog, pg_temp') LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = tenantry, pg_temp', f);
    END LOOP;
END $$;

-- ---- functions that resolved names in their caller's schema ----
-- The declarations are called from an application's migrations, whose search path does not
-- include `tenantry`; the others read `current_schema()` to learn tenantry's. Each now resolves
-- names in `tenantry` (a table given to a declaration is resolved by its caller, as before: it is
-- a `regclass` argument).
ALTER FUNCTION tenantry.tenantry_tenant_policy(name) SET search_path = tenantry, pg_temp;
ALTER FUNCTION tenantry.tenantry_tenant_policy(name) SET search_path = tenantry, pg_temp;
ALTER FUNCTION tenantry.tenantry_reseal_enter() SET search_path = tenantry, pg_temp;
ALTER FUNCTION tenantry.tenantry_citus_reseal_enter() SET search_path = tenantry, pg_temp;
ALTER FUNCTION tenantry.tenantry_citus_prepare() SET search_path = tenantry, pg_temp;
ALTER FUNCTION tenantry.tenantry_citus_revoke_remote_commands() SET search_path = tenantry, pg_temp;

-- The declarations, as migration 0009 wrote them, resolving names in `tenantry` and naming
-- tenantry's table with its schema when they refuse one: an application with a `tenants` table
-- of its own that writes `REFERENCES tenants (id)` learns which table is meant.
CREATE OR REPLACE FUNCTION tenantry.tenantry_declare_tenant_table(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void LANGUAGE plpgsql SET search_path = tenantry, pg_temp AS $$
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
          AND k.confrelid = 'tenantry.tenants'::regclass
    ) THEN
        RAISE EXCEPTION 'tenant table %: column % is not the tenant key (it needs FOREIGN KEY (%) REFERENCES tenantry.tenants (id))',
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

CREATE OR REPLACE FUNCTION tenantry.tenantry_declare_global_table(tbl regclass)
RETURNS void LANGUAGE plpgsql SET search_path = tenantry, pg_temp AS $$
DECLARE
    t_schema name;
    t_name   name;
    fk       text;
BEGIN
    SELECT n.nspname, c.relname INTO t_schema, t_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF EXISTS (SELECT 1 FROM pg_attribute a
               WHERE a.attrelid = tbl AND a.attname = 'tenant_id' AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'table % has a tenant_id column, so it cannot be declared global: declare it with tenantry.tenantry_declare_tenant_table', tbl;
    END IF;
    SELECT k.conname INTO fk FROM pg_constraint k
    WHERE k.conrelid = tbl AND k.contype = 'f' AND k.confrelid = 'tenantry.tenants'::regclass
    LIMIT 1;
    IF fk IS NOT NULL THEN
        RAISE EXCEPTION 'table % references tenantry.tenants (constraint %), so it cannot be declared global: declare it with tenantry.tenantry_declare_tenant_table', tbl, fk;
    END IF;
    EXECUTE format('GRANT SELECT ON %s TO %I', tbl, tenantry_role('app'));
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', tbl, tenantry_role('bypass'));
    INSERT INTO tenantry_declared_tables (table_schema, table_name, kind)
    VALUES (t_schema, t_name, 'global')
    ON CONFLICT (table_schema, table_name)
    DO UPDATE SET kind = 'global', tenant_column = NULL, declared_at = now();
END $$;

-- For SQL of an application's own: its schema spelled out (no pinned path, so it stays inlinable).
CREATE OR REPLACE FUNCTION tenantry.tenantry_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
    SELECT tenant_id FROM tenantry.tenantry_current_tenant
$$;

-- The Citus checks (migration 0012) spelled their schema in their bodies: written again with
-- `tenantry` (CREATE OR REPLACE keeps their grants, and the policies that call them).
CREATE OR REPLACE FUNCTION tenantry.tenantry_citus_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = tenantry, pg_temp AS $$
DECLARE
    s text := pg_catalog.current_setting('tenantry.tenant', true);
    b bytea;
    k record;
BEGIN
    IF s IS NULL OR pg_catalog.length(s) OPERATOR(pg_catalog.<>) 101 THEN
        RETURN NULL;
    END IF;
    SELECT * INTO k FROM pg_catalog.get_current_transaction_id();
    IF k.transaction_number OPERATOR(pg_catalog.=) 0 OR k.transaction_stamp IS NULL THEN
        RETURN NULL;
    END IF;
    b := pg_catalog.int4send(k.initiator_node_identifier)
        OPERATOR(pg_catalog.||) pg_catalog.int8send(k.transaction_number)
        OPERATOR(pg_catalog.||) pg_catalog.timestamptz_send(k.transaction_stamp);
    FOR k IN SELECT t.ipad, t.opad FROM tenantry.tenantry_tenant_keys t LOOP
        IF pg_catalog.encode(pg_catalog.sha256(k.opad OPERATOR(pg_catalog.||) pg_catalog.sha256(k.ipad
               OPERATOR(pg_catalog.||) pg_catalog.convert_to('tenantry-citus-tx-v1:'
                   OPERATOR(pg_catalog.||) pg_catalog.substr(s, 1, 36), 'UTF8')
               OPERATOR(pg_catalog.||) b)), 'hex')
           OPERATOR(pg_catalog.=) pg_catalog.substr(s, 38) THEN
            RETURN pg_catalog.substr(s, 1, 36)::uuid;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tenantry.tenantry_citus_is_member(p_user uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = tenantry, pg_temp AS $$
DECLARE
    t uuid := tenantry.tenantry_citus_tenant();
BEGIN
    RETURN t IS NOT NULL AND EXISTS (
        SELECT 1 FROM tenantry.memberships m
        WHERE m.user_id OPERATOR(pg_catalog.=) p_user AND m.tenant_id OPERATOR(pg_catalog.=) t);
END $$;

-- `tenantry_enter` (and, on Citus, what `tenantry_citus_prepare` writes) spells its schema in its
-- body: generate it again, here.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        PERFORM tenantry.tenantry_citus_prepare();
    ELSE
        PERFORM tenantry.tenantry_reseal_enter();
    END IF;
END $$;
