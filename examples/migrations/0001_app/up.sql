-- The example app's own tables (tenantry's migrations run first and create `tenants`).
CREATE TABLE currencies (
    code  char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    name  text NOT NULL
);
INSERT INTO currencies (code, name) VALUES ('EUR', 'Euro'), ('USD', 'US dollar'), ('GBP', 'Pound sterling');

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (btrim(name) <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- lets invoices reference (tenant_id, id), so the database rejects a cross-tenant project
    UNIQUE (tenant_id, id)
);

CREATE TABLE invoices (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
    project_id    uuid NOT NULL,
    number        text NOT NULL CHECK (btrim(number) <> ''),
    amount_cents  bigint NOT NULL CHECK (amount_cents >= 0),
    currency      char(3) NOT NULL REFERENCES currencies (code),
    status        text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'sent', 'paid', 'void')),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)
);
CREATE INDEX invoices_tenant_created_idx ON invoices (tenant_id, created_at DESC);

-- Declared to tenantry here (row-level security, grants, the registry `tenantry doctor` reads),
-- so that `diesel migration run` gives the same database as the app's start. The app declares
-- its models again at start (`tenantry::declare_tables`, idempotent), which catches a table
-- declared in code and forgotten here.
SELECT tenantry.tenantry_declare_global_table('currencies');
SELECT tenantry.tenantry_declare_tenant_table('projects');
SELECT tenantry.tenantry_declare_tenant_table('invoices');
