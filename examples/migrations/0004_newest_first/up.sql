-- `GET /api/invoices` lists a tenant's invoices newest first, `created_at DESC, id DESC`, with an
-- optional status. The index of 0001 covered `created_at` only: PostgreSQL then sorted each
-- group of equal times again by id (an incremental sort over the scanned rows), and with `LIMIT`
-- a bind parameter, a generic plan scanned more of them than the page needs. These indexes give
-- the whole order, so a page is the first rows of one index scan (measured in BENCHMARKS.md,
-- issue 18: the list's PostgreSQL CPU per request).
CREATE INDEX invoices_tenant_newest_idx ON invoices (tenant_id, created_at DESC, id DESC);
CREATE INDEX invoices_tenant_status_newest_idx ON invoices (tenant_id, status, created_at DESC, id DESC);
DROP INDEX invoices_tenant_created_idx;
