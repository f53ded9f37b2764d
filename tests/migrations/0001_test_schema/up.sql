-- The integration tests' schema: two tenant tables and a global one, declared to tenantry.
CREATE TABLE currencies (code char(3) PRIMARY KEY, name text NOT NULL);
INSERT INTO currencies VALUES ('EUR', 'Euro'), ('USD', 'US dollar'), ('GBP', 'Pound sterling');
CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
    project_id uuid NOT NULL,
    number text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    currency char(3) NOT NULL REFERENCES currencies (code),
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'sent', 'paid', 'void')),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)
);

SELECT tenantry.tenantry_declare_global_table('currencies');
SELECT tenantry.tenantry_declare_tenant_table('projects');
SELECT tenantry.tenantry_declare_tenant_table('invoices');
