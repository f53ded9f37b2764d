-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- The audit log can be neither forged nor jammed by tenantry's roles, and it is tamper-evident.
--
-- * One way in: tenantry_audit_write(..) (SECURITY DEFINER) writes a row; tenantry_app and
--   tenantry_bypass lose INSERT on audit_log and every right on its sequence (grants.sql).
-- * The server assigns every row's id (the sequence) and time (now()), whoever inserts it: a
--   BEFORE INSERT trigger overwrites whatever was sent, so no id can be chosen ahead of the
--   sequence and no time backdated.
-- * A hash chain in commit order: when a transaction commits, a deferred constraint trigger links
--   each of its rows into audit_log_chain (position, previous hash, hash) under the lock of the
--   single row of audit_log_chain_head. The lock is taken at COMMIT and released when the commit
--   ends, so concurrent bypasses and jobs, which write their audit row first and then work,
--   wait for each other only while committing. `tenantry audit --verify` recomputes the chain.
--
-- The hash of a row, also computed by `tenantry::audit_chain` (keep both in step):
--
--   sha256('tenantry audit_log v1' || prev_hash || f(id) || f(at) || f(actor_user_id)
--          || f(actor_email) || f(action) || f(reason) || f(tenant_id) || f(request_id)
--          || f(location))
--
-- prev_hash is the previous link's hash (32 zero bytes for the first); f(NULL) is the byte 0x00,
-- f(v) is 0x01, v's length in bytes (4 bytes, big-endian) and v's bytes; id is 8 bytes
-- big-endian, at its microseconds since 2000-01-01 00:00:00 UTC (8 bytes big-endian, PostgreSQL's
-- binary form), uuids their 16 bytes, texts their UTF-8 bytes.

-- Writers of the old version finish first, and none starts until this commits: every row that
-- exists is chained below, and every later one by the trigger.
LOCK TABLE audit_log IN EXCLUSIVE MODE;

-- ---- the server assigns id and time ----

ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT;

CREATE FUNCTION tenantry_audit_log_assign() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.id := nextval('audit_log_id_seq');
    NEW.at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_assign BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tenantry_audit_log_assign();

-- The only way tenantry's roles write a row. Returns the row's id.
CREATE FUNCTION tenantry_audit_write(p_actor_user_id uuid, p_actor_email text, p_action text,
                                     p_reason text, p_tenant_id uuid, p_request_id text,
                                     p_location text)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER AS $$
    INSERT INTO audit_log (actor_user_id, actor_email, action, reason, tenant_id, request_id, location)
    VALUES (p_actor_user_id, p_actor_email, p_action, p_reason, p_tenant_id, p_request_id, p_location)
    RETURNING id
$$;

-- ---- the chain ----

CREATE TABLE audit_log_chain (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    audit_id   bigint NOT NULL UNIQUE,
    prev_hash  bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32)
);

-- The last link (seq 0, no row and 32 zero bytes while the log is empty). Its row is the lock
-- that orders commits.
CREATE TABLE audit_log_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint NOT NULL CHECK (seq >= 0),
    audit_id   bigint NULL,
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE FUNCTION tenantry_audit_field(value bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value IS NULL THEN decode('00', 'hex')
                ELSE decode('01', 'hex') || int4send(octet_length(value)) || value END
$$;

CREATE FUNCTION tenantry_audit_hash(prev_hash bytea, p_id bigint, p_at timestamptz,
                                    p_actor_user_id uuid, p_actor_email text, p_action text,
                                    p_reason text, p_tenant_id uuid, p_request_id text,
                                    p_location text)
RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(convert_to('tenantry audit_log v1', 'UTF8') || prev_hash
        || tenantry_audit_field(int8send(p_id))
        || tenantry_audit_field(timestamptz_send(p_at))
        || tenantry_audit_field(uuid_send(p_actor_user_id))
        || tenantry_audit_field(convert_to(p_actor_email, 'UTF8'))
        || tenantry_audit_field(convert_to(p_action, 'UTF8'))
        || tenantry_audit_field(convert_to(p_reason, 'UTF8'))
        || tenantry_audit_field(uuid_send(p_tenant_id))
        || tenantry_audit_field(convert_to(p_request_id, 'UTF8'))
        || tenantry_audit_field(convert_to(p_location, 'UTF8')))
$$;

-- Links one new row at its transaction's commit (a deferred constraint trigger). Runs as the
-- owner of the tables: tenantry's roles have no right on the chain.
CREATE FUNCTION tenantry_audit_link() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    head_row audit_log_chain_head%ROWTYPE;
    new_hash bytea;
BEGIN
    SELECT * INTO head_row FROM audit_log_chain_head FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_log_chain_head has no row, so audit row % cannot be chained: run `tenantry audit --verify`', NEW.id
            USING ERRCODE = 'data_corrupted';
    END IF;
    new_hash := tenantry_audit_hash(head_row.hash, NEW.id, NEW.at, NEW.actor_user_id,
                                    NEW.actor_email, NEW.action, NEW.reason, NEW.tenant_id,
                                    NEW.request_id, NEW.location);
    INSERT INTO audit_log_chain (seq, audit_id, prev_hash, hash)
    VALUES (head_row.seq + 1, NEW.id, head_row.hash, new_hash);
    UPDATE audit_log_chain_head SET seq = head_row.seq + 1, audit_id = NEW.id, hash = new_hash;
    RETURN NULL;
END $$;

-- Rows written before this migration are chained in the order of their ids.
DO $$
DECLARE
    r    audit_log%ROWTYPE;
    n    bigint := 0;
    prev bytea := decode(repeat('00', 32), 'hex');
    last_id bigint;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY audit_log.id LOOP
        n := n + 1;
        INSERT INTO audit_log_chain (seq, audit_id, prev_hash, hash)
        VALUES (n, r.id, prev,
                tenantry_audit_hash(prev, r.id, r.at, r.actor_user_id, r.actor_email, r.action,
                                    r.reason, r.tenant_id, r.request_id, r.location))
        RETURNING hash INTO prev;
        last_id := r.id;
    END LOOP;
    INSERT INTO audit_log_chain_head (seq, audit_id, hash) VALUES (n, last_id, prev);
END $$;

CREATE CONSTRAINT TRIGGER audit_log_link AFTER INSERT ON audit_log
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tenantry_audit_link();

-- The chain is append-only like the log, even for its owner; the head only moves to the next
-- link and is never deleted.
CREATE FUNCTION tenantry_audit_chain_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_chain_append_only BEFORE UPDATE OR DELETE ON audit_log_chain
    FOR EACH ROW EXECUTE FUNCTION tenantry_audit_chain_is_append_only();
CREATE TRIGGER audit_log_chain_no_truncate BEFORE TRUNCATE ON audit_log_chain
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_audit_chain_is_append_only();
CREATE TRIGGER audit_log_chain_head_kept BEFORE DELETE ON audit_log_chain_head
    FOR EACH ROW EXECUTE FUNCTION tenantry_audit_chain_is_append_only();
CREATE TRIGGER audit_log_chain_head_no_truncate BEFORE TRUNCATE ON audit_log_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_audit_chain_is_append_only();

CREATE FUNCTION tenantry_audit_chain_head_advances() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.singleton IS DISTINCT FROM OLD.singleton OR NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
        SELECT 1 FROM audit_log_chain c
        WHERE c.seq = NEW.seq AND c.audit_id = NEW.audit_id AND c.hash = NEW.hash
          AND c.prev_hash = OLD.hash) THEN
        RAISE EXCEPTION 'audit_log_chain_head only moves to the next link of audit_log_chain'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain_head_advances BEFORE UPDATE ON audit_log_chain_head
    FOR EACH ROW EXECUTE FUNCTION tenantry_audit_chain_head_advances();

DO $$
DECLARE f text;
BEGIN
    -- Every function resolves names in a pinned schema, never the caller's.
    FOREACH f IN ARRAY ARRAY[
        'tenantry_audit_log_assign()',
        'tenantry_audit_write(uuid, text, text, text, uuid, text, text)',
        'tenantry_audit_field(bytea)',
        'tenantry_audit_hash(bytea, bigint, timestamptz, uuid, text, text, text, uuid, text, text)',
        'tenantry_audit_link()',
        'tenantry_audit_chain_is_append_only()',
        'tenantry_audit_chain_head_advances()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
