//! Role names per deployment: a database migrated with its own roles (`TENANTRY_ROLE_PREFIX`)
//! grants them, and nothing to the shared `tenantry_*` roles, so a password leaked from another
//! deployment of the same server opens nothing here.
#![allow(
    clippy::disallowed_methods,
    reason = "probes of the catalog as the superuser"
)]

use crate::common;

use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use tenantry::auth::Identity;
use tenantry::identity::load_principal;
use tenantry::migrations::RoleNames;
use tenantry::testing::{database_url, ScratchDatabase};
use tenantry::{Db, DbConfig};

#[derive(diesel::QueryableByName)]
struct Allowed {
    #[diesel(sql_type = Bool)]
    allowed: bool,
}

async fn allowed(conn: &mut diesel_async::AsyncPgConnection, sql: &str, role: &str) -> bool {
    diesel::sql_query(sql)
        .bind::<Text, _>(role)
        .get_result::<Allowed>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .allowed
}

#[tokio::test]
async fn a_deployment_with_its_own_roles_grants_them_and_nothing_to_the_shared_ones() {
    let roles = RoleNames::with_prefix("tenantry_t17_").unwrap();
    let scratch = ScratchDatabase::create("tenantry_roles").await;
    let name = scratch.name().to_owned();
    let conn = scratch.connect().await;
    let mut conn =
        tenantry::migrations::migrate_with_roles(conn, &roles, common::schema::MIGRATIONS)
            .await
            .expect("migrations with the deployment's roles")
            .conn;
    // A table declared after the migrations (as an application's later migration would).
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "CREATE TABLE notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                             tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id), body text);
         SELECT tenantry.tenantry_declare_tenant_table('notes');
         INSERT INTO tenantry.tenants (slug, name) VALUES ('acme', 'Acme');
         INSERT INTO tenantry.users (email) VALUES ('ada@example.com');
         INSERT INTO tenantry.memberships (user_id, tenant_id, role) SELECT u.id, t.id, 'partner' FROM tenantry.users u, tenantry.tenants t",
    )
    .await
    .expect("a declared table and a member");

    for table in ["invoices", "notes", "tenantry.tenants"] {
        let sql = format!("SELECT has_table_privilege($1, '{table}', 'SELECT') AS allowed");
        assert!(
            allowed(&mut conn, &sql, &roles.app).await,
            "{} on {table}",
            roles.app
        );
        assert!(
            allowed(&mut conn, &sql, &roles.bypass).await,
            "{} on {table}",
            roles.bypass
        );
        for shared in ["tenantry_app", "tenantry_bypass"] {
            assert!(
                !allowed(&mut conn, &sql, shared).await,
                "{shared} on {table}"
            );
        }
    }
    let enter = "SELECT has_function_privilege($1, 'tenantry.tenantry_enter(uuid, boolean, bigint, integer, bytea)', 'EXECUTE') AS allowed";
    assert!(allowed(&mut conn, enter, &roles.app).await);
    assert!(!allowed(&mut conn, enter, "tenantry_app").await);
    let lookup =
        "SELECT has_function_privilege($1, 'tenantry.tenantry_principal(text, text)', 'EXECUTE') AS allowed";
    assert!(allowed(&mut conn, lookup, &roles.directory).await);
    assert!(!allowed(&mut conn, lookup, "tenantry_directory").await);

    // doctor knows the deployment's roles: nothing to report.
    let report = tenantry::doctor::inspect(&mut conn, &roles.app)
        .await
        .expect("inspect");
    assert!(report.findings.is_empty(), "{:?}", report.findings);

    // The pools connect as the deployment's roles; the directory URL defaults to its own.
    let mut config = DbConfig::new(
        database_url(&name, Some(&roles.app)),
        Some(database_url(&name, Some(&roles.bypass))),
    );
    config.roles = roles.clone();
    let db = Db::connect(config)
        .await
        .expect("a Db on the deployment's roles");
    db.ping().await.expect("a tenant transaction");
    let ada = Identity::User {
        email: "ada@example.com".into(),
        sub: None,
    };
    let principal = load_principal(&db, &ada)
        .await
        .expect("looked up as the directory role");
    assert_eq!(principal.memberships()[0].slug, "acme");
}
