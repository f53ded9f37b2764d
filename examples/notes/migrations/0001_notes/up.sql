-- tenantry's migrations run first and create `tenants`; the key leads with the tenant column.
CREATE TABLE notes (
    tenant_id   uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    body        text NOT NULL CHECK (btrim(body) <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- Row-level security, grants and the registry `tenantry doctor` reads.
SELECT tenantry.tenantry_declare_tenant_table('notes');
