-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- The tenant seal: the tenant that row-level security sees can no longer be set by SQL.
--
-- Until now the policies trusted `app.tenant_id`, an ordinary setting: any SQL the app role runs
-- (a `sql()` fragment in a filter, raw SQL under a bypass token) could `set_config` it to another
-- tenant. Now:
--
-- * A tenant transaction is entered with `tenantry_enter(tenant, read_only, at, key_id, proof)`,
--   whose arguments travel as bind parameters. `proof` is an HMAC-SHA256, under a secret key the
--   app role cannot read, of the tenant, the read-only flag and the client's clock (`at`, Unix
--   seconds, accepted within 5 minutes of the server's). Only a process that holds the key (the
--   application, which reads it at start through the directory role) can make one.
-- * `tenantry_enter` writes the transaction-local setting `tenantry.tenant` as `<tenant>:<mac>`,
--   where the MAC covers the tenant and what makes this transaction
--   unique on the server: the backend's process id and the transaction's start time. A value
--   copied from another transaction, or left in the session by `set_config(.., false)`, does not
--   verify; forging one needs the key.
-- * Policies compare with `(SELECT tenant_id FROM tenantry_current_tenant)`: a view, owned by
--   the migration role, that returns the setting's tenant only when its MAC verifies (else no
--   row: NULL, so zero rows). As an uncorrelated subquery it is an initplan, evaluated once per
--   statement, not per row; the key is read with the view owner's rights.
-- * At the end of every tenant transaction tenantry asserts the tenant with a cast to the domain
--   `tenantry_tenant_check`, whose constraint `tenantry_tenant_moved` fails when the verified
--   tenant is not the one entered: the transaction rolls back.
--
-- The key: `tenantry_tenant_keys` holds 32 random bytes per key (and the HMAC pads derived from
-- them); nobody but the migration role (the tables' owner) and superusers may read it. The
-- directory role reads the unexpired keys at the application's start through
-- `tenantry_tenant_keys()`. `tenantry_rotate_tenant_key(grace)` adds a key and lets the older
-- ones expire after `grace`.

CREATE TABLE tenantry_tenant_keys (
    id          integer PRIMARY KEY,
    key         bytea NOT NULL CHECK (length(key) = 32),
    -- HMAC-SHA256's inner and outer padded keys (RFC 2104): key XOR 0x36.., key XOR 0x5c..,
    -- each 64 bytes, so that the view and the functions hash without deriving them.
    ipad        bytea NOT NULL CHECK (length(ipad) = 64),
    opad        bytea NOT NULL CHECK (length(opad) = 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NULL
);
REVOKE ALL ON tenantry_tenant_keys FROM PUBLIC;

-- key XOR pad, padded to SHA-256's block of 64 bytes.
CREATE FUNCTION tenantry_hmac_pad(k bytea, pad integer) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    out bytea := '\x00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000';
BEGIN
    FOR i IN 0..63 LOOP
        out := set_byte(out, i, (CASE WHEN i < length(k) THEN get_byte(k, i) ELSE 0 END) # pad);
    END LOOP;
    RETURN out;
END $$;
REVOKE ALL ON FUNCTION tenantry_hmac_pad(bytea, integer) FROM PUBLIC;

-- Adds a key (32 bytes from two random UUIDs' strong randomness: 244 random bits) and lets every
-- older unexpired key expire after `grace`. Returns the new key's id.
CREATE FUNCTION tenantry_rotate_tenant_key(grace interval DEFAULT interval '1 hour')
RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k     bytea := decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
    new_id integer;
BEGIN
    IF grace < interval '0' THEN
        RAISE EXCEPTION 'tenantry_rotate_tenant_key: grace must not be negative (got %)', grace;
    END IF;
    LOCK TABLE tenantry_tenant_keys IN EXCLUSIVE MODE;
    SELECT coalesce(max(id), 0) + 1 INTO new_id FROM tenantry_tenant_keys;
    UPDATE tenantry_tenant_keys SET expires_at = now() + grace
    WHERE expires_at IS NULL OR expires_at > now() + grace;
    INSERT INTO tenantry_tenant_keys (id, key, ipad, opad)
    VALUES (new_id, k, tenantry_hmac_pad(k, 54), tenantry_hmac_pad(k, 92));
    -- `tenantry_enter` holds the keys as constants of its cached plans (see below): touching its
    -- definition makes every session re-plan it with the new key.
    PERFORM tenantry_reseal_enter();
    RETURN new_id;
END $$;
REVOKE ALL ON FUNCTION tenantry_rotate_tenant_key(interval) FROM PUBLIC;

-- The keys a client may sign with: unexpired, newest first. Only the directory role may call it
-- (granted in grants.sql).
CREATE FUNCTION tenantry_tenant_keys()
RETURNS TABLE (id integer, key bytea, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT k.id, k.key, k.expires_at FROM tenantry_tenant_keys k
    WHERE k.expires_at IS NULL OR k.expires_at > now()
    ORDER BY k.id DESC
$$;

-- The newest key (slot 0) and the one before it (slot 1), for `tenantry_enter`. IMMUTABLE on
-- purpose: the planner evaluates a call with constant arguments once, when it plans the
-- statement, so `tenantry_enter`'s cached plan carries the key as a constant and reads no table
-- per call (reading it costs more than the rest of the transaction's work). Plans inside a
-- function are never shown to the caller. `tenantry_reseal_enter` re-plans them after a rotation.
CREATE FUNCTION tenantry_tenant_key_slot(slot integer)
RETURNS TABLE (id integer, ipad bytea, opad bytea, expires_at timestamptz)
LANGUAGE sql IMMUTABLE SECURITY DEFINER AS $$
    SELECT k.id, k.ipad, k.opad, k.expires_at FROM tenantry_tenant_keys k
    ORDER BY k.id DESC OFFSET slot LIMIT 1
$$;
CREATE FUNCTION tenantry_tenant_key_id(slot integer) RETURNS integer
LANGUAGE sql IMMUTABLE SECURITY DEFINER AS $$
    SELECT coalesce((SELECT id FROM tenantry_tenant_key_slot(slot)), -1)
$$;
CREATE FUNCTION tenantry_tenant_key_ipad(slot integer) RETURNS bytea
LANGUAGE sql IMMUTABLE SECURITY DEFINER AS $$
    SELECT ipad FROM tenantry_tenant_key_slot(slot)
$$;
CREATE FUNCTION tenantry_tenant_key_opad(slot integer) RETURNS bytea
LANGUAGE sql IMMUTABLE SECURITY DEFINER AS $$
    SELECT opad FROM tenantry_tenant_key_slot(slot)
$$;
CREATE FUNCTION tenantry_tenant_key_expires(slot integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE SECURITY DEFINER AS $$
    SELECT coalesce((SELECT expires_at FROM tenantry_tenant_key_slot(slot)), 'infinity')
$$;

DO $$
DECLARE f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['tenantry_tenant_keys()', 'tenantry_tenant_key_slot(integer)',
                             'tenantry_tenant_key_id(integer)', 'tenantry_tenant_key_ipad(integer)',
                             'tenantry_tenant_key_opad(integer)', 'tenantry_tenant_key_expires(integer)',
                             'tenantry_rotate_tenant_key(interval)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- (Re)creates `tenantry_enter`. Its body names every object with its schema instead of pinning
-- `search_path` (a pinned search_path costs a GUC save and restore per call, as much as the
-- function's own work), so no object of the caller's can stand in for one of its names. Creating
-- it again is also how a rotation reaches every session: PL/pgSQL re-plans a function whose
-- definition changed.
CREATE FUNCTION tenantry_reseal_enter() RETURNS void
LANGUAGE plpgsql VOLATILE AS $outer$
DECLARE s text := quote_ident(current_schema());
BEGIN
    EXECUTE replace($body$
CREATE OR REPLACE FUNCTION @.tenantry_enter(
    p_tenant uuid, p_read_only boolean, p_at bigint, p_key integer, p_proof bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER PARALLEL UNSAFE AS $$
DECLARE
    -- Constants of the cached plan (see tenantry_tenant_key_slot).
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
    -- The transaction's seal: `<tenant>:<HMAC of the tenant, this backend and this transaction's
    -- start, under the newest key>` (the view tries every key, so a rotation mid-transaction
    -- keeps it valid).
    PERFORM pg_catalog.set_config('tenantry.tenant',
        p_tenant::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) pg_catalog.encode(
            pg_catalog.sha256(o0 OPERATOR(pg_catalog.||) pg_catalog.sha256(i0
                OPERATOR(pg_catalog.||) pg_catalog.convert_to('tenantry-tx-v1:' OPERATOR(pg_catalog.||) p_tenant::text, 'UTF8')
                OPERATOR(pg_catalog.||) pg_catalog.int4send(pg_catalog.pg_backend_pid())
                OPERATOR(pg_catalog.||) pg_catalog.timestamptz_send(pg_catalog.transaction_timestamp()))), 'hex'),
        true);
    IF p_read_only THEN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
    END IF;
END $$;
$body$, '@', s);
    EXECUTE format('REVOKE ALL ON FUNCTION %s.tenantry_enter(uuid, boolean, bigint, integer, bytea) FROM PUBLIC', s);
END $outer$;
REVOKE ALL ON FUNCTION tenantry_reseal_enter() FROM PUBLIC;

INSERT INTO tenantry_tenant_keys (id, key, ipad, opad)
SELECT 1, k, tenantry_hmac_pad(k, 54), tenantry_hmac_pad(k, 92)
FROM (SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex') AS k) g;
SELECT tenantry_reseal_enter();

-- The verified tenant of the current transaction: one row whose tenant_id is the setting's
-- tenant when its MAC verifies under one of the keys, else no row. The MAC is compared as text
-- and the tenant cast only in the row that verified (which `tenantry_enter` wrote), so a garbled
-- value gives no row rather than an error. One table scan of one or two rows: no join, no hash.
CREATE VIEW tenantry_current_tenant WITH (security_barrier) AS
SELECT substr(c.s, 1, 36)::uuid AS tenant_id
FROM (SELECT current_setting('tenantry.tenant', true) AS s) c, tenantry_tenant_keys k
WHERE encode(sha256(k.opad || sha256(k.ipad
          || convert_to('tenantry-tx-v1:' || substr(c.s, 1, 36), 'UTF8')
          || int4send(pg_backend_pid())
          || timestamptz_send(transaction_timestamp()))), 'hex')
      = substr(c.s, 38);
GRANT SELECT ON tenantry_current_tenant TO PUBLIC;

-- The same for SQL of an application's own (its own policies, reports): NULL outside a tenant
-- transaction.
CREATE FUNCTION tenantry_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
    SELECT tenant_id FROM tenantry_current_tenant
$$;

-- The end-of-transaction assertion: `SELECT (<verified tenant> IS NOT DISTINCT FROM $1)::tenantry_tenant_check`.
CREATE DOMAIN tenantry_tenant_check AS boolean
    CONSTRAINT tenantry_tenant_moved CHECK (VALUE);

-- Every policy of tenantry compares with the verified tenant.
CREATE OR REPLACE FUNCTION tenantry_tenant_policy(tenant_column name) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('(%I = (SELECT tenant_id FROM %I.tenantry_current_tenant))', tenant_column, current_schema())
$$;

DO $$
DECLARE
    t record;
    expr text;
BEGIN
    FOR t IN SELECT d.table_schema, d.table_name, d.tenant_column
             FROM tenantry_declared_tables d WHERE d.kind = 'tenant' LOOP
        expr := tenantry_tenant_policy(t.tenant_column);
        EXECUTE format('ALTER POLICY tenantry_tenant_isolation ON %I.%I USING %s WITH CHECK %s',
                       t.table_schema, t.table_name, expr, expr);
    END LOOP;
END $$;

ALTER POLICY tenantry_directory_tenant ON tenants
    USING (id = (SELECT tenant_id FROM tenantry_current_tenant))
    WITH CHECK (id = (SELECT tenant_id FROM tenantry_current_tenant));
ALTER POLICY tenantry_directory_membership ON memberships
    USING (tenant_id = (SELECT tenant_id FROM tenantry_current_tenant))
    WITH CHECK (tenant_id = (SELECT tenant_id FROM tenantry_current_tenant));
ALTER POLICY tenantry_directory_member ON users
    USING (EXISTS (SELECT 1 FROM memberships m
                   WHERE m.user_id = users.id
                     AND m.tenant_id = (SELECT tenant_id FROM tenantry_current_tenant)))
    WITH CHECK (false);

-- Declarations write the new policy.
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
REVOKE EXECUTE ON FUNCTION tenantry_declare_tenant_table(regclass, name) FROM PUBLIC;
