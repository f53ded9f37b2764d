//! What `declare_tables` (the start check of an app's declarations) refuses for a
//! `#[global_table]`: a table that is a tenant table under its SQL name (a second `table!` with
//! `#[sql_name = ".."]` and no tenant column compiles), a table with row-level security, and a
//! table declared both ways in one list. Each refusal names the table and the fix, and applies
//! nothing.
#![allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
#![allow(missing_docs)]

use crate::common;

use common::TestDb;
use diesel::{Queryable, QueryableByName, Selectable};
use diesel_async::SimpleAsyncConnection;
use tenantry::bounds::Declared;
use tenantry::{global_table, TableDecl};
use uuid::Uuid;

// The tenant table `invoices` again, under another Rust name, without its tenant column.
diesel::table! {
    #[sql_name = "invoices"]
    every_invoice (id) {
        id -> Uuid,
        number -> Text,
    }
}

#[global_table]
#[derive(Queryable, Selectable)]
#[diesel(table_name = every_invoice)]
#[allow(dead_code)]
struct AnyInvoice {
    id: Uuid,
    number: String,
}

#[derive(QueryableByName)]
struct RowSecurity {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    on: bool,
}

async fn row_security(t: &TestDb, table: &str) -> bool {
    let query = diesel::sql_query(format!(
        "SELECT relrowsecurity AS on FROM pg_class WHERE oid = '{table}'::regclass"
    ));
    diesel_async::RunQueryDsl::get_result::<RowSecurity>(query, &mut t.admin().await)
        .await
        .unwrap()
        .on
}

#[tokio::test]
async fn a_global_model_over_a_tenant_tables_sql_name_is_refused() {
    let t = TestDb::new().await;
    let decl = <every_invoice::table as Declared>::DECL;
    assert_eq!(
        decl.table(),
        "invoices",
        "the declaration names the SQL table"
    );
    let err = tenantry::declare_tables(&mut t.admin().await, &[decl])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table `invoices` cannot be declared global")
            && err.contains("row-level security")
            && err.contains("#[sql_name = \"invoices\"]"),
        "{err}"
    );
    assert!(row_security(&t, "invoices").await, "still a tenant table");
}

#[tokio::test]
async fn a_global_table_with_row_level_security_is_refused() {
    let t = TestDb::new().await;
    // No tenant column and no foreign key to `tenants`: only its row-level security says it.
    t.admin()
        .await
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;",
        )
        .await
        .unwrap();
    let err = tenantry::declare_tables(&mut t.admin().await, &[TableDecl::global("notes")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table `notes` cannot be declared global")
            && err.contains("row-level security"),
        "{err}"
    );
    // Without it, the same table is a global table.
    t.admin()
        .await
        .batch_execute("ALTER TABLE notes DISABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    tenantry::declare_tables(&mut t.admin().await, &[TableDecl::global("notes")])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_table_declared_both_ways_in_one_list_is_refused_before_anything_is_applied() {
    let t = TestDb::new().await;
    t.admin()
        .await
        .batch_execute(&crate::common::sql(
            "CREATE TABLE ledger (id int PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id))",
        ))
        .await
        .unwrap();
    let err = tenantry::declare_tables(
        &mut t.admin().await,
        &[
            TableDecl::tenant("ledger", "tenant_id"),
            TableDecl::global("ledger"),
        ],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("declared a tenant table in the same list"),
        "{err}"
    );
    assert!(!row_security(&t, "ledger").await, "nothing was applied");
}
