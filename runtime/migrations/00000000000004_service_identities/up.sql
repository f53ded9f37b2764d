-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- Service identities. A Cloudflare Access service token is identified by its `common_name`,
-- `<client id>.access`, which has no `@`, so migration 0001's check on `users.email` could not
-- store it. A `users` row is now of a kind: a person, keyed by email, or a service, keyed by its
-- token's common name (kept in the same `email` column, unique case-insensitively across both
-- kinds). Roles and memberships work the same for both. The principal lookup matches the kind
-- of the verified identity as well, so a person's email never resolves to a service row, nor a
-- service token's common name to a person's.

ALTER TABLE users ADD COLUMN kind text NOT NULL DEFAULT 'person'
    CONSTRAINT users_kind_check CHECK (kind IN ('person', 'service'));
ALTER TABLE users DROP CONSTRAINT users_email_check;
ALTER TABLE users ADD CONSTRAINT users_identity_check CHECK (
    (kind = 'person' AND position('@' in email) > 1)
    OR (kind = 'service' AND email ~ '^[A-Za-z0-9][A-Za-z0-9_-]*\.access$')
);

-- One principal of one kind ('person' or 'service') by its key (case-insensitive), with one row
-- per membership (membership columns NULL when it has none); no row for an unknown identity.
CREATE FUNCTION tenantry_principal(p_key text, p_kind text)
RETURNS TABLE (user_id uuid, email text, is_owner boolean, cf_sub text,
               tenant_id uuid, role text, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT u.id, u.email, u.is_owner, u.cf_sub, m.tenant_id, m.role, t.slug, t.name
    FROM users u
    LEFT JOIN memberships m ON m.user_id = u.id
    LEFT JOIN tenants t ON t.id = m.tenant_id
    WHERE lower(u.email) = lower(p_key) AND u.kind = p_kind
    ORDER BY t.slug
$$;

-- The one-argument form of migration 0002 now finds persons only: an email is a person's key.
CREATE OR REPLACE FUNCTION tenantry_principal(p_email text)
RETURNS TABLE (user_id uuid, email text, is_owner boolean, cf_sub text,
               tenant_id uuid, role text, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT * FROM tenantry_principal(p_email, 'person')
$$;

DO $$
DECLARE f text;
BEGIN
    -- CREATE OR REPLACE drops a function's settings: pin the search path of both again.
    FOREACH f IN ARRAY ARRAY['tenantry_principal(text)', 'tenantry_principal(text, text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
