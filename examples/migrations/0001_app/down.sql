DELETE FROM tenantry.tenantry_declared_tables
WHERE table_schema = current_schema() AND table_name IN ('invoices', 'projects', 'currencies');
DROP TABLE invoices;
DROP TABLE projects;
DROP TABLE currencies;
