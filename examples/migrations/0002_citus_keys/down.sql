ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_project_id_fkey;
ALTER TABLE invoices DROP CONSTRAINT invoices_pkey;
ALTER TABLE invoices ADD PRIMARY KEY (id);
ALTER TABLE projects DROP CONSTRAINT projects_pkey;
ALTER TABLE projects ADD PRIMARY KEY (id);
ALTER TABLE projects ADD UNIQUE (tenant_id, id);
ALTER TABLE invoices ADD FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);
