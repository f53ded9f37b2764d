-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- tenantry on Citus: the tenant seal, the directory's policies and its change notifications in
-- forms that Citus distributes and that hold on the workers. Nothing changes on a database
-- without the citus extension: the functions below are created everywhere (unused), and
-- `tenantry_citus_prepare()` switches the database over only when citus is installed (at the end
-- of this migration, and again from `tenantry citus-plan`'s script, for a database that gets
-- citus later).
--
-- Why the plain seal does not work on Citus: the seal (migration 0005) is bound to the backend's
-- process id and the transaction's start, and a query of a distributed table runs on a worker in
-- another backend, whose own process id and start do not match; every tenant would see nothing.
-- What a worker's backend shares with the coordinator's transaction, and what no SQL of the app
-- role can set there, is Citus's distributed transaction id (`get_current_transaction_id()`:
-- initiator node, transaction number, timestamp), assigned by the coordinator when it opens the
-- worker's connection. On Citus the seal is bound to that id instead:
--
-- * `tenantry_enter` makes the coordinator assign the id at once (`create_intermediate_result`
--   of an empty query, ~0.2 ms; `assign_distributed_transaction_id` is not called on the
--   coordinator: Citus's deadlock detection and 2PC recovery rely on ids it assigns itself),
--   MACs the tenant with it, and writes the seal with `SET LOCAL`, which Citus sends to every
--   worker the transaction reaches (the app role has `citus.propagate_set_commands = 'local'`).
-- * The policies compare with `tenantry_citus_tenant()`, a function call (Citus refuses
--   subqueries in the policies of distributed and reference tables), SECURITY DEFINER: it reads
--   the keys (a reference table, so present on every node) and verifies the seal against the
--   current distributed transaction id, on the coordinator and on the workers alike.
-- * A seal copied from another transaction (it is visible in the workers' pg_stat_activity, in
--   the propagated SET LOCAL) verifies only in a backend holding that transaction's id: one the
--   coordinator opened for it, or one where `assign_distributed_transaction_id` was called by
--   hand in a fresh session. The app role cannot open such a session: the functions that run
--   arbitrary commands on other nodes are revoked from PUBLIC on every node (`citus-plan`), and
--   the workers must accept connections from the coordinator only (pg_hba.conf).

-- The seal's binding on Citus: the current distributed transaction id as bytes, or NULL when the
-- transaction has none. With `force`, the coordinator assigns one first.
CREATE FUNCTION tenantry_citus_binding(force boolean) RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id record;
BEGIN
    SELECT * INTO id FROM pg_catalog.get_current_transaction_id();
    IF id.transaction_number = 0 AND force THEN
        PERFORM pg_catalog.create_intermediate_result('tenantry_seal', 'SELECT 1 WHERE false');
        SELECT * INTO id FROM pg_catalog.get_current_transaction_id();
    END IF;
    IF id.transaction_number = 0 OR id.transaction_stamp IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.int4send(id.initiator_node_identifier)
        OPERATOR(pg_catalog.||) pg_catalog.int8send(id.transaction_number)
        OPERATOR(pg_catalog.||) pg_catalog.timestamptz_send(id.transaction_stamp);
END $$;
REVOKE ALL ON FUNCTION tenantry_citus_binding(boolean) FROM PUBLIC;

-- The verified tenant of the current transaction on Citus (coordinator or worker), or NULL. It
-- reads the keys, a reference table: on a worker that is a query inside a query on a shard, which
-- Citus refuses unless nested execution is allowed; this read touches the local placement only.
-- `@` is this schema: every name is qualified (no search_path pinned, no object of the caller's
-- stands in for one of its names).
DO $do$ BEGIN
    EXECUTE replace($f$
CREATE FUNCTION @.tenantry_citus_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = @, pg_temp AS $$
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
    FOR k IN SELECT t.ipad, t.opad FROM @.tenantry_tenant_keys t LOOP
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
$f$, '@', quote_ident(current_schema()));

    -- The `users` policy on Citus: a member of the verified tenant (a function: no subquery).
    EXECUTE replace($f$
CREATE FUNCTION @.tenantry_citus_is_member(p_user uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = @, pg_temp AS $$
DECLARE
    t uuid := @.tenantry_citus_tenant();
BEGIN
    RETURN t IS NOT NULL AND EXISTS (
        SELECT 1 FROM @.memberships m
        WHERE m.user_id OPERATOR(pg_catalog.=) p_user AND m.tenant_id OPERATOR(pg_catalog.=) t);
END $$;
$f$, '@', quote_ident(current_schema()));
    -- Policies run them as the querying role: the app role alone (the bypass role skips
    -- row-level security; the directory role reads through functions of the owner's).
    REVOKE ALL ON FUNCTION tenantry_citus_tenant(), tenantry_citus_is_member(uuid) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION tenantry_citus_tenant(), tenantry_citus_is_member(uuid) TO %I',
                   tenantry_role('app'));
END $do$;

-- (Re)creates `tenantry_enter` for Citus: the same checks as migration 0005's, the seal bound to
-- the distributed transaction id and written with SET LOCAL (which Citus propagates).
CREATE FUNCTION tenantry_citus_reseal_enter() RETURNS void
LANGUAGE plpgsql VOLATILE AS $outer$
DECLARE s text := quote_ident(current_schema());
BEGIN
    EXECUTE replace($body$
CREATE OR REPLACE FUNCTION @.tenantry_enter(
    p_tenant uuid, p_read_only boolean, p_at bigint, p_key integer, p_proof bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE AS $$
DECLARE
    k0 integer := @.tenantry_tenant_key_id(0);
    k1 integer := @.tenantry_tenant_key_id(1);
    i0 bytea := @.tenantry_tenant_key_ipad(0);
    o0 bytea := @.tenantry_tenant_key_opad(0);
    i1 bytea := @.tenantry_tenant_key_ipad(1);
    o1 bytea := @.tenantry_tenant_key_opad(1);
    e1 timestamptz := @.tenantry_tenant_key_expires(1);
    ipad bytea;
    opad bytea;
    message bytea;
    binding bytea;
BEGIN
    IF p_tenant IS NULL OR p_read_only IS NULL OR p_at IS NULL OR p_key IS NULL OR p_proof IS NULL THEN
        RAISE EXCEPTION 'tenantry_enter: every argument is required'
            USING ERRCODE = '28000';
    END IF;
    IF p_key OPERATOR(pg_catalog.=) k0 THEN
        ipad := i0; opad := o0;
    ELSIF p_key OPERATOR(pg_catalog.=) k1 AND e1 OPERATOR(pg_catalog.>) pg_catalog.now() THEN
        ipad := i1; opad := o1;
    ELSE
        RAISE EXCEPTION 'tenantry_enter: unknown or expired tenant key %', p_key
            USING ERRCODE = '28000', HINT = 'tenantry refreshes its keys and retries';
    END IF;
    IF pg_catalog.abs(p_at OPERATOR(pg_catalog.-) pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()))::bigint) OPERATOR(pg_catalog.>) 300 THEN
        RAISE EXCEPTION 'tenantry_enter: the client''s clock is more than 5 minutes from the server''s'
            USING ERRCODE = '28000';
    END IF;
    message := pg_catalog.convert_to('tenantry-enter-v1', 'UTF8')
        OPERATOR(pg_catalog.||) pg_catalog.uuid_send(p_tenant)
        OPERATOR(pg_catalog.||) pg_catalog.boolsend(p_read_only)
        OPERATOR(pg_catalog.||) pg_catalog.int8send(p_at);
    IF pg_catalog.sha256(opad OPERATOR(pg_catalog.||) pg_catalog.sha256(ipad OPERATOR(pg_catalog.||) message))
       OPERATOR(pg_catalog.<>) p_proof THEN
        RAISE EXCEPTION 'tenantry_enter: the proof does not verify'
            USING ERRCODE = '28000';
    END IF;
    binding := @.tenantry_citus_binding(true);
    IF binding IS NULL THEN
        RAISE EXCEPTION 'tenantry_enter: Citus assigned this transaction no distributed transaction id'
            USING ERRCODE = '28000';
    END IF;
    EXECUTE 'SET LOCAL tenantry.tenant = ' OPERATOR(pg_catalog.||) pg_catalog.quote_literal(
        p_tenant::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) pg_catalog.encode(
            pg_catalog.sha256(o0 OPERATOR(pg_catalog.||) pg_catalog.sha256(i0
                OPERATOR(pg_catalog.||) pg_catalog.convert_to('tenantry-citus-tx-v1:' OPERATOR(pg_catalog.||) p_tenant::text, 'UTF8')
                OPERATOR(pg_catalog.||) binding)), 'hex'));
    IF p_read_only THEN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
    END IF;
END $$;
$body$, '@', s);
    EXECUTE format('REVOKE ALL ON FUNCTION %s.tenantry_enter(uuid, boolean, bigint, integer, bytea) FROM PUBLIC', s);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s.tenantry_enter(uuid, boolean, bigint, integer, bytea) TO %I',
                   s, tenantry_role('app'));
END $outer$;
REVOKE ALL ON FUNCTION tenantry_citus_reseal_enter() FROM PUBLIC;

-- Switches the database to the Citus seal, policies and notifications; idempotent. Refuses on a
-- database without citus.
CREATE FUNCTION tenantry_citus_prepare() RETURNS void
LANGUAGE plpgsql VOLATILE AS $prepare$
DECLARE
    s text := quote_ident(current_schema());
    t record;
    expr text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'tenantry_citus_prepare: the citus extension is not installed in this database';
    END IF;

    -- The checks below read the keys on a worker inside a query on a shard, which Citus allows
    -- only with nested execution on. Attached here, not where they are created: on PostgreSQL
    -- without Citus the parameter is an unknown placeholder, which PostgreSQL 15 lets only a
    -- superuser attach to a function, and `tenantry migrate` runs as the database's owner.
    EXECUTE replace('ALTER FUNCTION @.tenantry_citus_tenant() SET citus.allow_nested_distributed_execution = on', '@', s);
    EXECUTE replace('ALTER FUNCTION @.tenantry_citus_is_member(uuid) SET citus.allow_nested_distributed_execution = on', '@', s);

    -- Rotations re-create the Citus entry.
    EXECUTE replace($f$
CREATE OR REPLACE FUNCTION @.tenantry_reseal_enter() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM @.tenantry_citus_reseal_enter(); END $$
$f$, '@', s);
    PERFORM tenantry_citus_reseal_enter();

    -- The verified tenant for SQL of the application's own, and the seal's end-of-transaction
    -- assertion (which reads the view).
    EXECUTE replace($f$
CREATE OR REPLACE VIEW @.tenantry_current_tenant WITH (security_barrier) AS
SELECT t AS tenant_id FROM @.tenantry_citus_tenant() t WHERE t IS NOT NULL
$f$, '@', s);
    EXECUTE replace($f$
CREATE OR REPLACE FUNCTION @.tenantry_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL RESTRICTED AS 'SELECT @.tenantry_citus_tenant()'
$f$, '@', s);

    -- Policies: a function call, no subquery.
    EXECUTE replace($f$
CREATE OR REPLACE FUNCTION @.tenantry_tenant_policy(tenant_column name) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('(%I = %I.tenantry_citus_tenant())', tenant_column, current_schema())
$$
$f$, '@', s);
    FOR t IN SELECT d.table_schema, d.table_name, d.tenant_column
             FROM tenantry_declared_tables d
             JOIN pg_namespace n ON n.nspname = d.table_schema
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.table_name
             WHERE d.kind = 'tenant' LOOP
        expr := tenantry_tenant_policy(t.tenant_column);
        EXECUTE format('ALTER POLICY tenantry_tenant_isolation ON %I.%I USING %s WITH CHECK %s',
                       t.table_schema, t.table_name, expr, expr);
    END LOOP;
    EXECUTE format('ALTER POLICY tenantry_directory_tenant ON tenants
        USING (id = %1$s.tenantry_citus_tenant()) WITH CHECK (id = %1$s.tenantry_citus_tenant())', s);
    EXECUTE format('ALTER POLICY tenantry_directory_membership ON memberships
        USING (tenant_id = %1$s.tenantry_citus_tenant())
        WITH CHECK (tenant_id = %1$s.tenantry_citus_tenant())', s);
    EXECUTE format('ALTER POLICY tenantry_directory_member ON users
        USING (%1$s.tenantry_citus_is_member(id)) WITH CHECK (false)', s);

    -- Change notifications from the coordinator only: the directory's tables are reference
    -- tables, whose triggers fire on every node's placement, and a worker's part of Citus's
    -- two-phase commit cannot PREPARE a transaction that notified. The coordinator's own
    -- placement fires them, in the transaction the listeners hear.
    CREATE OR REPLACE FUNCTION tenantry_directory_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF pg_catalog.citus_is_coordinator() THEN
            PERFORM pg_notify('tenantry_directory', TG_TABLE_NAME);
        END IF;
        RETURN NULL;
    END $$;

    -- SQL of the app role must not open sessions of its own on other nodes, where it could take
    -- another transaction's distributed id (see the top of this migration). On this node; the
    -- plan does it on every node.
    PERFORM tenantry_citus_revoke_remote_commands();
END $prepare$;
REVOKE ALL ON FUNCTION tenantry_citus_prepare() FROM PUBLIC;

-- The Citus functions that run a command given as text on other nodes (or on this one, in a new
-- session), as the calling role: EXECUTE is revoked from PUBLIC (superusers keep them).
CREATE FUNCTION tenantry_citus_remote_command_functions() RETURNS SETOF regprocedure
LANGUAGE sql STABLE AS $$
    SELECT p.oid::regprocedure FROM pg_proc p
    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'citus'
    WHERE p.proname IN ('run_command_on_workers', 'run_command_on_all_nodes',
                        'run_command_on_coordinator', 'run_command_on_placements',
                        'run_command_on_colocated_placements', 'run_command_on_shards',
                        'master_run_on_worker', 'citus_run_local_command',
                        'worker_execute_sql_task')
$$;

CREATE FUNCTION tenantry_citus_revoke_remote_commands() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT * FROM tenantry_citus_remote_command_functions() LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION tenantry_citus_revoke_remote_commands() FROM PUBLIC;

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM tenantry_citus_prepare();
    END IF;
END $$;
