-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- Identity keys that cannot be bent (issue 17):
--
-- 1. A tenant is named by id or by slug, never both at once: a slug shaped like a UUID (any form
--    Rust's `Uuid::parse_str` accepts) is refused, and the Owner's lookup takes the id or the
--    slug as two arguments, parsed once by the caller.
-- 2. Emails are folded ASCII-only: `lower()` follows the server's locale (the Kelvin sign K
--    becomes k, İ becomes i), so a look-alike address could resolve to an existing user. Keys
--    are printable ASCII; uniqueness and lookups use `lower(email COLLATE "C")`.
-- 3. A user's kind follows its key's shape: a person's key has an `@`, a service's is a common
--    name `<client id>.access`. A row inserted with the contract's columns alone gets its kind.
-- 4. The identity provider's subject (`sub`) is recorded once and then compared: a token for the
--    same email with another subject is refused until an operator clears it
--    (`tenantry add-user --reset-subject`).
--
-- Constraints are added NOT VALID where rows written before could break them: they hold for
-- every row written from now on, and a key that breaks them cannot be looked up.

CREATE FUNCTION tenantry_uuid_shaped(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT p ~* ('^([0-9a-f]{32}'
                 || '|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
                 || '|\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}'
                 || '|urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$')
$$;
ALTER FUNCTION tenantry_uuid_shaped(text) SET search_path = pg_catalog, pg_temp;

ALTER TABLE tenants ADD CONSTRAINT tenants_slug_is_not_an_id
    CHECK (NOT tenantry_uuid_shaped(slug)) NOT VALID;

DROP FUNCTION tenantry_owner_tenant(uuid, text);
-- The tenant an Owner names, by id (p_id) or, when p_id is NULL, by slug; only if p_owner really
-- is an Owner.
CREATE FUNCTION tenantry_owner_tenant(p_owner uuid, p_id uuid, p_slug text)
RETURNS TABLE (id uuid, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT t.id, t.slug, t.name
    FROM tenants t
    WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p_owner AND u.is_owner)
      AND CASE WHEN p_id IS NOT NULL THEN t.id = p_id ELSE t.slug = p_slug END
$$;

DROP INDEX users_email_lower_key;
CREATE UNIQUE INDEX users_email_ascii_key ON users (lower(email COLLATE "C"));
ALTER TABLE users ADD CONSTRAINT users_email_is_ascii
    CHECK (email ~ '^[\x21-\x7e]+$') NOT VALID;

CREATE FUNCTION tenantry_key_kind(p_key text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN position('@' in p_key) > 1 THEN 'person'
                WHEN p_key ~ '^[A-Za-z0-9][A-Za-z0-9_-]*\.access$' THEN 'service' END
$$;
ALTER FUNCTION tenantry_key_kind(text) SET search_path = pg_catalog, pg_temp;

ALTER TABLE users DROP CONSTRAINT users_identity_check;
ALTER TABLE users ADD CONSTRAINT users_identity_check
    CHECK (kind IS NOT DISTINCT FROM tenantry_key_kind(email));

CREATE FUNCTION tenantry_users_kind() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.kind := coalesce(tenantry_key_kind(NEW.email), NEW.kind);
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION tenantry_users_kind() FROM PUBLIC;
CREATE TRIGGER tenantry_users_kind BEFORE INSERT OR UPDATE OF email, kind ON users
    FOR EACH ROW EXECUTE FUNCTION tenantry_users_kind();

CREATE OR REPLACE FUNCTION tenantry_principal(p_key text, p_kind text)
RETURNS TABLE (user_id uuid, email text, is_owner boolean, cf_sub text,
               tenant_id uuid, role text, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT u.id, u.email, u.is_owner, u.cf_sub, m.tenant_id, m.role, t.slug, t.name
    FROM users u
    LEFT JOIN memberships m ON m.user_id = u.id
    LEFT JOIN tenants t ON t.id = m.tenant_id
    WHERE lower(u.email COLLATE "C") = lower(p_key COLLATE "C")
      AND tenantry_key_kind(u.email) = p_kind
    ORDER BY t.slug
$$;

DROP FUNCTION tenantry_record_sub(uuid, text);
-- Records the token's `sub` beside a user that has none yet, and returns the stored one: the
-- caller refuses a token whose `sub` differs from it.
CREATE FUNCTION tenantry_record_sub(p_user uuid, p_sub text)
RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER AS $$
    UPDATE users SET cf_sub = p_sub WHERE id = p_user AND cf_sub IS NULL;
    SELECT cf_sub FROM users WHERE id = p_user;
$$;

DO $$
DECLARE f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['tenantry_owner_tenant(uuid, uuid, text)',
                             'tenantry_principal(text, text)', 'tenantry_record_sub(uuid, text)',
                             'tenantry_users_kind()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
