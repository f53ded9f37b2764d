//! Migrated template databases (`ScratchDatabase::from_template`): a migration set runs once per
//! test binary, on a template nobody connects to; each test's database is a copy of it, with the
//! grants on the database itself applied again, and only the newest templates are kept.

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{admin_conn, count, TestDb};
use tenantry::testing::ScratchDatabase;

use crate::common;

#[tokio::test]
async fn a_copy_is_migrated_and_granted_like_a_fresh_database() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    // The test schema's tables and tenantry's are there, declared.
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM tenantry.tenantry_declared_tables WHERE table_name IN ('projects', 'invoices')"
        )
        .await,
        2
    );
    // The database's own grants, which a copy does not inherit: CONNECT for the roles,
    // TEMPORARY for none of them.
    let granted = format!(
        "SELECT count(*) AS n FROM (VALUES ('tenantry_app'), ('tenantry_bypass'), \
         ('tenantry_directory')) r(role) WHERE has_database_privilege(role, '{0}', 'CONNECT') \
         AND NOT has_database_privilege(role, '{0}', 'TEMPORARY')",
        t.name
    );
    assert_eq!(count(&mut admin, &granted).await, 3);
}

#[tokio::test]
async fn a_set_is_migrated_once_and_its_template_takes_no_connections() {
    let prepared = AtomicUsize::new(0);
    // One set name for every run: a new binary makes its template once, a rerun of the same
    // binary finds it made.
    let set = "templates_test";
    let mut copies = Vec::new();
    for _ in 0..3 {
        copies.push(
            ScratchDatabase::from_template("tenantry_t", set, async |conn| {
                prepared.fetch_add(1, Ordering::SeqCst);
                let mut conn = conn;
                common::exec(&mut conn, "CREATE TABLE made_once (id int)").await;
            })
            .await,
        );
    }
    assert!(
        prepared.load(Ordering::SeqCst) <= 1,
        "one template for the set, made at most once"
    );
    for copy in &copies {
        let mut conn = copy.connect().await;
        assert_eq!(
            count(&mut conn, "SELECT count(*) AS n FROM made_once").await,
            0,
            "the copy has the template's table"
        );
    }
    let mut server = admin_conn("postgres").await;
    let templates = "SELECT count(*) AS n FROM pg_database \
                     WHERE starts_with(datname, 'tenantry_tmpl_') AND datistemplate";
    // The set's template (and any an earlier build of this binary left) takes no connections.
    let of_the_set = |filter: &str| {
        format!(
            "SELECT count(*) AS n FROM pg_database \
             WHERE starts_with(datname, 'tenantry_tmpl_{set}_') AND {filter}"
        )
    };
    assert!(count(&mut server, &of_the_set("datistemplate")).await >= 1);
    assert_eq!(
        count(&mut server, &of_the_set("datallowconn")).await,
        0,
        "a template nobody may connect to"
    );
    // Only the newest few are kept (eight; a ninth may exist while another binary builds one).
    assert!(count(&mut server, templates).await <= 9);
}
