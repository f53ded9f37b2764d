//! Migrations, table declarations and `inspect` (what `tenantry doctor` reports), against a
//! real database.

use crate::common;

use common::{admin_url_of, count, EmptyDb, TestDb};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::doctor::{Finding, PolicyDifference, Report};
use tenantry::TableDecl;

/// `inspect` as the migration role.
async fn inspect(conn: &mut AsyncPgConnection, role: &str) -> Report {
    tenantry::doctor::inspect(conn, role)
        .await
        .expect("inspect runs")
}

async fn batch(conn: &mut AsyncPgConnection, sql: &str) {
    let sql = &common::sql(sql);
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The findings on a migrated database with the test schema after `sql` ran as the owner.
async fn findings_after(sql: &str) -> Vec<Finding> {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(&mut admin, sql).await;
    inspect(&mut admin, "tenantry_app").await.findings
}

async fn migrate_url(url: String) -> Result<Vec<String>, tenantry::MigrateError> {
    tenantry::migrations::migrate_url(&url).await
}

/// The tables as the report lists them: sorted by their qualified names.
fn sorted(mut tables: Vec<String>) -> Vec<String> {
    tables.sort();
    tables
}

fn table(name: &str) -> String {
    format!("public.{name}")
}

/// A tenant table whose only index leading with `tenant_id` is the one tenantry creates.
const NOTES_SQL: &str = "CREATE TABLE notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
    body text NOT NULL
)";

const NOTES: TableDecl = TableDecl::tenant("notes", "tenant_id");

/// Indexes of `tbl` whose first column is `tenant_id`.
const TENANT_INDEXES_SQL: &str = "SELECT count(*) AS n FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = '{tbl}'::regclass AND a.attname = 'tenant_id'";

async fn tenant_indexes(conn: &mut AsyncPgConnection, tbl: &str) -> i64 {
    count(conn, &TENANT_INDEXES_SQL.replace("{tbl}", tbl)).await
}

#[tokio::test]
async fn a_sound_database_has_no_findings() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let report = inspect(&mut admin, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(
        report.tenant_tables,
        sorted(vec![
            table("invoices"),
            table("projects"),
            format!("{}.tenantry_jobs", tenantry::schema::NAME)
        ])
    );
}

#[tokio::test]
async fn rls_disabled_is_reported() {
    let findings = findings_after("ALTER TABLE invoices DISABLE ROW LEVEL SECURITY").await;
    assert_eq!(
        findings,
        vec![Finding::RlsNotEnabled {
            table: table("invoices")
        }]
    );
}

#[tokio::test]
async fn rls_not_forced_is_reported() {
    let findings = findings_after("ALTER TABLE invoices NO FORCE ROW LEVEL SECURITY").await;
    assert_eq!(
        findings,
        vec![Finding::RlsNotForced {
            table: table("invoices")
        }]
    );
}

#[tokio::test]
async fn a_missing_policy_is_reported() {
    let findings = findings_after("DROP POLICY tenantry_tenant_isolation ON invoices").await;
    assert_eq!(
        findings,
        vec![Finding::PolicyMissing {
            table: table("invoices")
        }]
    );
}

#[tokio::test]
async fn a_policy_that_ignores_the_tenant_setting_is_reported() {
    let findings = findings_after(
        "DROP POLICY tenantry_tenant_isolation ON projects;
         CREATE POLICY tenantry_tenant_isolation ON projects USING (true) WITH CHECK (true)",
    )
    .await;
    assert!(
        matches!(
            findings.as_slice(),
            [
                Finding::PolicyDiffers { table: t1, difference: PolicyDifference::Using { found: Some(u), .. }, .. },
                Finding::PolicyDiffers { table: t2, difference: PolicyDifference::WithCheck { found: Some(c), .. }, .. },
            ] if *t1 == table("projects") && *t2 == table("projects") && u == "true" && c == "true"
        ),
        "{findings:?}"
    );
}

#[tokio::test]
async fn an_extra_permissive_policy_is_reported() {
    let findings = findings_after("CREATE POLICY open_door ON invoices USING (true)").await;
    assert_eq!(
        findings,
        vec![Finding::ExtraPermissivePolicy {
            table: table("invoices"),
            policy: "open_door".into()
        }]
    );
    let restrictive = findings_after(
        "CREATE POLICY only_eur ON invoices AS RESTRICTIVE USING (currency = 'EUR')",
    )
    .await;
    assert_eq!(restrictive, vec![], "a restrictive policy only narrows");
}

#[tokio::test]
async fn a_missing_tenant_index_is_reported() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(&mut admin, NOTES_SQL).await;
    tenantry::declare_tables(&mut admin, &[NOTES])
        .await
        .unwrap();
    assert_eq!(
        tenant_indexes(&mut admin, "notes").await,
        1,
        "declare_tables created the index"
    );
    let report = inspect(&mut admin, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
    assert!(report.tenant_tables.contains(&table("notes")));

    batch(&mut admin, "DROP INDEX notes_tenant_id_idx").await;
    let findings = inspect(&mut admin, "tenantry_app").await.findings;
    assert_eq!(
        findings,
        vec![Finding::TenantIndexMissing {
            table: table("notes"),
            column: "tenant_id".into()
        }]
    );

    // An index that merely contains the column, not first, does not count.
    batch(
        &mut admin,
        "CREATE INDEX notes_body_tenant_idx ON notes (body, tenant_id)",
    )
    .await;
    assert_eq!(inspect(&mut admin, "tenantry_app").await.findings, findings);
}

#[tokio::test]
async fn dropping_the_only_index_leading_with_tenant_id_is_reported() {
    // In the test schema, UNIQUE (tenant_id, number) and the primary key (tenant_id, id) lead
    // with tenant_id: without both, keyed by `id` alone, invoices has no tenant index.
    let findings = findings_after(
        "ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_number_key, \
         DROP CONSTRAINT invoices_pkey, ADD PRIMARY KEY (id)",
    )
    .await;
    assert_eq!(
        findings,
        vec![Finding::TenantIndexMissing {
            table: table("invoices"),
            column: "tenant_id".into()
        }]
    );
}

#[tokio::test]
async fn an_undeclared_tenant_column_is_reported() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(
        &mut admin,
        "CREATE TABLE stray (id int PRIMARY KEY, tenant_id uuid)",
    )
    .await;
    let findings = inspect(&mut admin, "tenantry_app").await.findings;
    assert_eq!(
        findings,
        vec![Finding::UndeclaredTenantColumn {
            table: table("stray")
        }]
    );

    // It cannot be declared global: a `tenant_id` column means rows of tenants.
    let err = tenantry::declare_tables(&mut admin, &[TableDecl::global("stray")])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has a tenant_id column, so it cannot be declared global"),
        "{err}"
    );
    let sql =
        "SELECT count(*) AS n FROM tenantry.tenantry_declared_tables WHERE table_name = 'stray'";
    assert_eq!(count(&mut admin, sql).await, 0, "nothing recorded");
    let sql = "SELECT count(*) AS n FROM information_schema.role_table_grants \
               WHERE table_name = 'stray' AND grantee = 'tenantry_app'";
    assert_eq!(count(&mut admin, sql).await, 0, "nothing granted");

    // Nor a tenant table while its tenant column is not the tenant key (nullable, no foreign key).
    let err = tenantry::declare_tables(&mut admin, &[TableDecl::tenant("stray", "tenant_id")])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must exist and be \"uuid NOT NULL\""),
        "{err}"
    );

    // Made a real tenant key and declared as a tenant table, it is no longer reported.
    batch(
        &mut admin,
        "ALTER TABLE stray ALTER COLUMN tenant_id SET NOT NULL, \
         ADD FOREIGN KEY (tenant_id) REFERENCES tenantry.tenants (id)",
    )
    .await;
    tenantry::declare_tables(&mut admin, &[TableDecl::tenant("stray", "tenant_id")])
        .await
        .unwrap();
    let report = inspect(&mut admin, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
}

#[tokio::test]
async fn a_table_referencing_tenants_under_another_name_is_reported_and_refused_as_global() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(
        &mut admin,
        "CREATE TABLE org_notes (id int PRIMARY KEY, org uuid NOT NULL \
         CONSTRAINT org_notes_org_fkey REFERENCES tenantry.tenants (id), body text)",
    )
    .await;
    let findings = inspect(&mut admin, "tenantry_app").await.findings;
    assert_eq!(
        findings,
        vec![Finding::TenantReferenceWithoutPolicy {
            table: table("org_notes"),
            constraint: "org_notes_org_fkey".into(),
        }],
        "a foreign key to tenants without row-level security, whatever the column is called"
    );

    let err = tenantry::declare_tables(&mut admin, &[TableDecl::global("org_notes")])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            &common::sql("references tenantry.tenants (constraint org_notes_org_fkey), so it cannot be declared global")
        ),
        "{err}"
    );
    // A tenant table keyed on another column that is not the tenant key is refused too.
    let err = tenantry::declare_tables(&mut admin, &[TableDecl::tenant("invoices", "project_id")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not the tenant key"), "{err}");

    tenantry::declare_tables(&mut admin, &[TableDecl::tenant("org_notes", "org")])
        .await
        .unwrap();
    let report = inspect(&mut admin, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
}

#[tokio::test]
async fn a_dropped_declared_table_is_reported() {
    let findings = findings_after("DROP TABLE invoices").await;
    assert_eq!(
        findings,
        vec![Finding::DeclaredTableMissing {
            table: table("invoices")
        }]
    );
}

#[tokio::test]
async fn privileged_and_missing_app_roles_are_reported() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    // (The superuser also owns every table: those findings follow.)
    let findings = inspect(&mut admin, "postgres").await.findings;
    assert!(
        matches!(
            findings.first(),
            Some(Finding::AppRolePrivileged { role, superuser: true, .. }) if role == "postgres"
        ),
        "{findings:?}"
    );
    let findings = inspect(&mut admin, "tenantry_bypass").await.findings;
    assert_eq!(
        findings,
        vec![Finding::AppRolePrivileged {
            role: "tenantry_bypass".into(),
            superuser: false,
            bypassrls: true
        }]
    );
    let findings = inspect(&mut admin, "tenantry_no_such_role").await.findings;
    assert_eq!(
        findings,
        vec![Finding::AppRoleMissing {
            role: "tenantry_no_such_role".into()
        }]
    );
}

#[tokio::test]
async fn an_unmigrated_database_is_reported() {
    let db = EmptyDb::new().await;
    let mut conn = db.admin().await;
    let report = inspect(&mut conn, "tenantry_app").await;
    // `tenantry_app` is server-wide and may not exist yet if no other test has migrated.
    // `tenantry_app` is server-wide and may not exist yet if no other test has migrated; TEMP is
    // PUBLIC's until the migrations revoke it.
    let findings: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| {
            !matches!(
                f,
                Finding::AppRoleMissing { .. } | Finding::TempAllowed { .. }
            )
        })
        .collect();
    assert_eq!(findings, vec![&Finding::NotMigrated]);
    assert!(report.tenant_tables.is_empty());
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let db = EmptyDb::new().await;
    let conn = db.admin().await;
    let first = tenantry::migrate(conn).await.unwrap();
    assert_eq!(first.applied, common::framework_migrations());
    assert_eq!(
        tenantry::migrate(first.conn).await.unwrap().applied,
        Vec::<String>::new()
    );
    // And on a new connection (a restarted application).
    let again = tenantry::migrate(db.admin().await).await.unwrap();
    assert_eq!(again.applied, Vec::<String>::new());
    let mut conn = again.conn;
    let report = inspect(&mut conn, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
    // tenantry's own tenant table: the job queue.
    assert_eq!(
        report.tenant_tables,
        vec![format!("{}.tenantry_jobs", tenantry::schema::NAME)]
    );
    // Recorded where `diesel migration run` looks.
    let sql = "SELECT count(*) AS n FROM __diesel_schema_migrations";
    assert_eq!(
        count(&mut conn, sql).await,
        common::framework_migrations().len() as i64
    );
}

#[tokio::test]
async fn several_databases_migrate_at_once() {
    let dbs = futures_util::future::join_all((0..4).map(|_| EmptyDb::new())).await;
    let results =
        futures_util::future::join_all(dbs.iter().map(|db| migrate_url(admin_url_of(&db.name))))
            .await;
    for (db, result) in dbs.iter().zip(results) {
        assert_eq!(
            result.unwrap_or_else(|e| panic!("{}: {e}", db.name)),
            common::framework_migrations()
        );
        let mut conn = db.admin().await;
        let report = inspect(&mut conn, "tenantry_app").await;
        assert!(report.is_ok(), "{}: {:?}", db.name, report.findings);
    }
}

#[tokio::test]
async fn several_connections_migrate_one_database_at_once() {
    let db = EmptyDb::new().await;
    let url = admin_url_of(&db.name);
    let results = futures_util::future::join_all((0..4).map(|_| migrate_url(url.clone()))).await;
    let mut applied = Vec::new();
    for result in results {
        applied.extend(result.unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(
        applied,
        common::framework_migrations(),
        "applied exactly once"
    );
    let mut conn = db.admin().await;
    let report = inspect(&mut conn, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
}

#[tokio::test]
async fn declare_tables_is_idempotent() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(&mut admin, NOTES_SQL).await;
    let mut decls = common::schema::decls();
    decls.push(NOTES);
    let before = count(
        &mut admin,
        "SELECT count(*) AS n FROM pg_indexes WHERE schemaname = 'public'",
    )
    .await;
    for _ in 0..2 {
        tenantry::declare_tables(&mut admin, &decls)
            .await
            .expect("declare tables");
    }
    let after = count(
        &mut admin,
        "SELECT count(*) AS n FROM pg_indexes WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(after, before + 1, "one new index (notes), not one per run");
    assert_eq!(tenant_indexes(&mut admin, "notes").await, 1);
    let sql = "SELECT count(*) AS n FROM pg_policies WHERE schemaname IN ('public', 'tenantry') \
               AND policyname = 'tenantry_tenant_isolation'";
    assert_eq!(
        count(&mut admin, sql).await,
        4,
        "one policy per tenant table (notes, projects, invoices, tenantry_jobs)"
    );
    let sql = "SELECT count(*) AS n FROM tenantry.tenantry_declared_tables WHERE kind = 'tenant'";
    assert_eq!(count(&mut admin, sql).await, 4);
    let report = inspect(&mut admin, "tenantry_app").await;
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(
        report.tenant_tables,
        sorted(vec![
            table("invoices"),
            table("notes"),
            table("projects"),
            format!("{}.tenantry_jobs", tenantry::schema::NAME)
        ])
    );
}
