-- tenantry's objects live in their own schema, `tenantry` (see 00000000000013_own_schema): the
-- names below are created and resolved there first, never beside an application's tables.
CREATE SCHEMA IF NOT EXISTS tenantry;
SELECT pg_catalog.set_config('search_path', 'tenantry, ' || pg_catalog.current_setting('search_path'), true);

-- The durable per-tenant job queue (tenantry::queue). A tenant table like any other: row-level
-- security keyed on the sealed tenant, so a request enqueues into its own tenant only (the
-- tenant column comes from the transaction) and reads its own jobs only. The runner, which
-- holds `Jobs`, claims due jobs of every tenant on the bypass pool (FOR UPDATE SKIP LOCKED, a
-- lease), and runs each inside its tenant in an audited job transaction that also marks it done.
CREATE TABLE tenantry_jobs (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._:-]{0,63}$'),
    payload       jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    run_after     timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- The runner's claim: due jobs, oldest first.
CREATE INDEX tenantry_jobs_due_idx ON tenantry_jobs (run_after) WHERE state IN ('queued', 'running');
SELECT tenantry_declare_tenant_table('tenantry_jobs');
