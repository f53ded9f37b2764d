//! Citus readiness checked on plain PostgreSQL (`tenantry::citus::check`): each rule a schema
//! breaks is reported naming its table and constraint, and a ready schema gets the DDL in
//! dependency order.

use crate::common;

use common::{Route, TestDb};
use diesel_async::SimpleAsyncConnection;
use tenantry::citus::{check, CitusFinding, Placement};

fn lines(findings: &[CitusFinding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn each_broken_rule_names_its_table_and_constraint() {
    let t = TestDb::through(Route::Direct, 1).await;
    let mut admin = t.admin().await;
    // Tenant tables keyed by `id` alone, as most schemas start (the test schema's
    // 0002_citus_keys made the keys composite: put them back).
    admin
        .batch_execute(
            "ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_project_id_fkey;
             ALTER TABLE invoices DROP CONSTRAINT invoices_pkey, ADD PRIMARY KEY (id);
             ALTER TABLE projects DROP CONSTRAINT projects_pkey, ADD PRIMARY KEY (id),
                 ADD UNIQUE (tenant_id, id);
             ALTER TABLE invoices ADD FOREIGN KEY (tenant_id, project_id)
                 REFERENCES projects (tenant_id, id);",
        )
        .await
        .expect("keys by id");
    let report = check(&mut admin).await.expect("check");
    let found = lines(&report.findings);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.contains(
        &"public.invoices: primary key invoices_pkey does not include the distribution column tenant_id (Citus enforces uniqueness per shard: make it (tenant_id, ..))".to_owned()
    ), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("public.projects: primary key projects_pkey")),
        "{found:#?}"
    );

    // Every other kind of rule, broken once each.
    admin
        .batch_execute(
            "CREATE TABLE notes (
                 id uuid NOT NULL, tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
                 project_id uuid NOT NULL, slug text NOT NULL, local_id int,
                 PRIMARY KEY (tenant_id, id),
                 CONSTRAINT notes_slug_key UNIQUE (slug),
                 CONSTRAINT notes_project_fkey FOREIGN KEY (project_id) REFERENCES projects (id));
             CREATE UNIQUE INDEX notes_lower_slug ON notes (lower(slug));
             CREATE TABLE scratchpad (id int PRIMARY KEY);
             ALTER TABLE notes ADD CONSTRAINT notes_local_fkey
                 FOREIGN KEY (local_id) REFERENCES scratchpad (id);
             CREATE TABLE labels (code text PRIMARY KEY, project_id uuid,
                 CONSTRAINT labels_project_fkey FOREIGN KEY (project_id) REFERENCES projects (id));
             CREATE TABLE exports (id int PRIMARY KEY, invoice_id uuid,
                 CONSTRAINT exports_invoice_fkey FOREIGN KEY (invoice_id) REFERENCES invoices (id));
             SELECT tenantry.tenantry_declare_tenant_table('notes');
             SELECT tenantry.tenantry_declare_global_table('labels');",
        )
        .await
        .expect("schema");
    let found = lines(&check(&mut admin).await.expect("check").findings);
    for expected in [
        "public.notes: unique constraint notes_slug_key does not include the distribution column tenant_id",
        "public.notes: unique index notes_lower_slug does not include the distribution column tenant_id",
        "public.notes: foreign key notes_project_fkey to public.projects does not pair the distribution columns",
        "public.notes: foreign key notes_local_fkey from a distributed table to the local table public.scratchpad",
        "public.labels: foreign key labels_project_fkey from a reference table to the distributed table public.projects",
        "public.exports: foreign key exports_invoice_fkey from a local table to the distributed table public.invoices",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(expected)),
            "missing {expected:?} in {found:#?}"
        );
    }
}

#[tokio::test]
async fn a_ready_schema_gets_its_ddl_in_dependency_order() {
    let t = TestDb::through(Route::Direct, 1).await;
    let mut admin = t.admin().await;
    // The test schema's keys are composite (its 0002_citus_keys).
    let report = check(&mut admin).await.expect("check");
    assert!(report.is_ok(), "{:#?}", report.findings);
    let steps: Vec<(String, Placement)> = report
        .plan
        .iter()
        .map(|s| (s.table.clone(), s.placement.clone()))
        .collect();
    let position = |t: &str| {
        steps
            .iter()
            .position(|(name, _)| name == t)
            .unwrap_or_else(|| panic!("{t} not planned: {steps:?}"))
    };
    // Referenced tables first.
    assert!(position("tenantry.tenants") < position("tenantry.memberships"));
    assert!(position("tenantry.users") < position("tenantry.memberships"));
    assert!(position("tenantry.memberships") < position("tenantry.audit_log"));
    assert!(position("public.currencies") < position("public.projects"));
    assert!(position("public.projects") < position("public.invoices"));
    let script = report.script("tenantry_app");
    for line in [
        "BEGIN;",
        "SELECT tenantry.tenantry_citus_prepare();",
        "ALTER ROLE tenantry_app SET citus.propagate_set_commands = 'local';",
        "SELECT create_reference_table('tenantry.tenantry_tenant_keys');",
        "SELECT create_reference_table('tenantry.tenants');",
        "SELECT create_reference_table('tenantry.memberships');",
        "SELECT create_reference_table('public.currencies');",
        "SELECT citus_add_local_table_to_metadata('tenantry.audit_log');",
        "SELECT create_distributed_table('public.projects', 'tenant_id');",
        "SELECT create_distributed_table('public.invoices', 'tenant_id', colocate_with => 'public.projects');",
        "ALTER TABLE public.invoices DROP CONSTRAINT invoices_tenant_id_project_id_fkey;",
        "COMMIT;",
    ] {
        assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
    }
    assert!(
        !script.contains("tenantry_migrations") && !script.contains("tenantry_declared_tables"),
        "bookkeeping tables stay local:\n{script}"
    );
}
