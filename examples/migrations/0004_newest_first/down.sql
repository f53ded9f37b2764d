CREATE INDEX invoices_tenant_created_idx ON invoices (tenant_id, created_at DESC);
DROP INDEX invoices_tenant_status_newest_idx;
DROP INDEX invoices_tenant_newest_idx;
