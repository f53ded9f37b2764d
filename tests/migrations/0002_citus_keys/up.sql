-- Keys Citus can shard by tenant (as the example's 0002_citus_keys): the tenant tables' primary
-- keys lead with tenant_id, so the same tests run against a Citus coordinator
-- (TENANTRY_TEST_DATABASE_URL, docs/scaling.md). tests/it/citus.rs puts keys by `id` alone back
-- to test the findings of a schema that is not ready.
ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_project_id_fkey, DROP CONSTRAINT invoices_pkey, ADD PRIMARY KEY (tenant_id, id);
ALTER TABLE projects DROP CONSTRAINT projects_pkey, DROP CONSTRAINT projects_tenant_id_id_key, ADD PRIMARY KEY (tenant_id, id);
ALTER TABLE invoices ADD FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);
