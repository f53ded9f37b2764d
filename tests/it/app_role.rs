//! `Db::connect` refuses an app role that can step outside row-level security: one that owns a
//! tenant or directory table, has `CREATEROLE`, or is a member (directly or through other roles,
//! inheriting or not) of a table's owner, of `tenantry_bypass` or of a superuser. Each case
//! first runs the attack as the SQL the role could send, so the refusal is shown to matter;
//! each role is a scratch role of its own, so these tests run in parallel.

#![allow(
    clippy::disallowed_methods,
    reason = "the escalations and weakenings under test are raw SQL on purpose"
)]

use crate::common;

use common::{count, TestDb};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::doctor::{RoleEscalation, RolePower};
use tenantry::testing::ScratchRole;
use tenantry::{no_tenant_scope, Db, DbConfig, DbError};

const ACME_INVOICES: i64 = 2;
const GLOBEX_INVOICES: i64 = 3;

/// A migrated database with tenants `acme` (2 invoices) and `globex` (3), and acme's id.
async fn world() -> (TestDb, uuid::Uuid) {
    let t = TestDb::new().await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    t.seed(acme, "acme-project", ACME_INVOICES as usize).await;
    t.seed(globex, "globex-project", GLOBEX_INVOICES as usize)
        .await;
    (t, acme)
}

/// A login role granted what `tenantry_app` is granted on the test schema.
async fn app_like(t: &TestDb, attributes: &str) -> ScratchRole {
    let role = ScratchRole::create("tenantry_r", &t.name, &format!("LOGIN {attributes}")).await;
    sql(
        &mut t.admin().await,
        &format!(
            "GRANT USAGE ON SCHEMA tenantry TO {r};
             GRANT SELECT, INSERT, UPDATE, DELETE ON projects, invoices TO {r};
             GRANT SELECT ON currencies, tenantry.tenants, tenantry.users, tenantry.memberships TO {r};
             GRANT EXECUTE ON FUNCTION tenantry.tenantry_enter(uuid, boolean, bigint, integer, bytea) TO {r};",
            r = role.name()
        ),
    )
    .await;
    role
}

/// A role that cannot log in (a table's owner, an intermediate group).
async fn group(t: &TestDb) -> ScratchRole {
    ScratchRole::create("tenantry_g", &t.name, "NOLOGIN").await
}

async fn sql(conn: &mut AsyncPgConnection, sql: &str) {
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn connect_as(role: &ScratchRole) -> AsyncPgConnection {
    tenantry::tls::establish(&role.url())
        .await
        .expect("the role logs in")
}

/// The invoices `conn` sees inside a transaction of tenant `acme`.
async fn invoices_seen_in(
    t: &TestDb,
    conn: &mut AsyncPgConnection,
    acme: uuid::Uuid,
    escalate: &str,
) -> i64 {
    t.begin_tenant(conn, acme).await.expect("enter acme");
    if !escalate.is_empty() {
        sql(conn, escalate).await;
    }
    let n = count(conn, "SELECT count(*) AS n FROM invoices").await;
    sql(conn, "ROLLBACK").await;
    n
}

/// `Db::connect` with `role`'s URL as the app URL: the refusal, checked to be one line naming
/// the setting, the role and `names`.
async fn refusal(role: &ScratchRole, names: &[&str]) -> RoleEscalation {
    let err = Db::connect(DbConfig::new(role.url(), None))
        .await
        .expect_err("the role is refused");
    let message = err.to_string();
    assert!(
        message.starts_with("TENANTRY_APP_DATABASE_URL: ") && !message.contains('\n'),
        "{message}"
    );
    for name in names.iter().chain([&role.name()]) {
        assert!(message.contains(name), "{name} in {message}");
    }
    match err {
        DbError::AppRoleEscalates { escalation } => escalation,
        other => panic!("expected AppRoleEscalates, got {other:?}"),
    }
}

#[tokio::test]
async fn an_app_role_that_owns_a_tenant_table_is_refused() {
    let (t, acme) = world().await;
    let role = app_like(&t, "").await;
    sql(
        &mut t.admin().await,
        &format!("ALTER TABLE invoices OWNER TO {}", role.name()),
    )
    .await;

    let escalation = refusal(
        &role,
        &["public.invoices", "ALTER TABLE public.invoices OWNER TO"],
    )
    .await;
    assert_eq!(
        escalation,
        RoleEscalation {
            role: role.name().to_owned(),
            via: vec![],
            power: RolePower::OwnsTable("public.invoices".into()),
        }
    );

    // The attack: the owner lifts its own table's row-level security.
    let mut conn = connect_as(&role).await;
    assert_eq!(
        invoices_seen_in(&t, &mut conn, acme, "").await,
        ACME_INVOICES
    );
    sql(
        &mut conn,
        "ALTER TABLE invoices NO FORCE ROW LEVEL SECURITY",
    )
    .await;
    assert_eq!(
        invoices_seen_in(&t, &mut conn, acme, "").await,
        ACME_INVOICES + GLOBEX_INVOICES,
        "the owner sees every tenant's invoices"
    );
}

#[tokio::test]
async fn an_app_role_that_owns_the_directory_is_refused() {
    let (t, _) = world().await;
    let role = app_like(&t, "").await;
    let mut admin = t.admin().await;
    sql(
        &mut admin,
        &format!(
            "INSERT INTO tenantry.users (email) VALUES ('mallory@example.com');
             ALTER TABLE tenantry.users OWNER TO {}",
            role.name()
        ),
    )
    .await;

    let escalation = refusal(&role, &["tenantry.users"]).await;
    assert_eq!(
        escalation.power,
        RolePower::OwnsTable("tenantry.users".into())
    );

    // The attack: `users` is not FORCEd, so its owner reads the whole directory and makes
    // anyone an Owner.
    let mut conn = connect_as(&role).await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM tenantry.users").await,
        1
    );
    sql(
        &mut conn,
        "UPDATE tenantry.users SET is_owner = true WHERE email = 'mallory@example.com'",
    )
    .await;
    let owners = "SELECT count(*) AS n FROM tenantry.users WHERE is_owner";
    assert_eq!(
        count(&mut admin, owners).await,
        1,
        "mallory is an Owner now"
    );
}

#[tokio::test]
async fn a_member_of_the_table_owner_is_refused() {
    let (t, acme) = world().await;
    let role = app_like(&t, "").await;
    let owner = group(&t).await;
    sql(
        &mut t.admin().await,
        &format!(
            "ALTER TABLE invoices OWNER TO {o}; GRANT {o} TO {r}",
            o = owner.name(),
            r = role.name()
        ),
    )
    .await;

    let escalation = refusal(
        &role,
        &[owner.name(), "public.invoices", "set_config('role'"],
    )
    .await;
    assert_eq!(escalation.via, vec![owner.name().to_owned()]);
    assert_eq!(
        escalation.power,
        RolePower::OwnsTable("public.invoices".into())
    );

    // The attack, from inside a statement: become the owner, lift row-level security.
    let mut conn = connect_as(&role).await;
    let escalate = format!(
        "SELECT set_config('role', '{}', true); ALTER TABLE invoices NO FORCE ROW LEVEL SECURITY;",
        owner.name()
    );
    assert_eq!(
        invoices_seen_in(&t, &mut conn, acme, &escalate).await,
        ACME_INVOICES + GLOBEX_INVOICES
    );
}

#[tokio::test]
async fn a_member_of_the_owner_through_another_role_is_refused_even_without_inherit() {
    let (t, acme) = world().await;
    let role = app_like(&t, "NOINHERIT").await;
    let middle = group(&t).await;
    let owner = group(&t).await;
    sql(
        &mut t.admin().await,
        &format!(
            "ALTER TABLE invoices OWNER TO {o}; GRANT {o} TO {m}; GRANT {m} TO {r}",
            o = owner.name(),
            m = middle.name(),
            r = role.name()
        ),
    )
    .await;

    let escalation = refusal(
        &role,
        &[
            middle.name(),
            owner.name(),
            &format!("REVOKE {} FROM {}", middle.name(), role.name()),
        ],
    )
    .await;
    assert_eq!(
        escalation.via,
        vec![middle.name().to_owned(), owner.name().to_owned()]
    );

    // NOINHERIT keeps the owner's privileges from applying by themselves, not from being taken.
    let mut conn = connect_as(&role).await;
    let escalate = format!(
        "SELECT set_config('role', '{}', true); ALTER TABLE invoices NO FORCE ROW LEVEL SECURITY;",
        owner.name()
    );
    assert_eq!(
        invoices_seen_in(&t, &mut conn, acme, &escalate).await,
        ACME_INVOICES + GLOBEX_INVOICES
    );
}

#[tokio::test]
async fn a_member_of_the_bypass_role_is_refused() {
    let (t, acme) = world().await;
    let role = app_like(&t, "NOINHERIT").await;
    sql(
        &mut t.admin().await,
        &format!("GRANT tenantry_bypass TO {}", role.name()),
    )
    .await;

    let escalation = refusal(&role, &["tenantry_bypass", "BYPASSRLS"]).await;
    assert_eq!(
        escalation,
        RoleEscalation {
            role: role.name().to_owned(),
            via: vec!["tenantry_bypass".into()],
            power: RolePower::BypassRls,
        }
    );

    // The attack: one set_config inside the tenant's transaction, and every tenant shows.
    let mut conn = connect_as(&role).await;
    assert_eq!(
        invoices_seen_in(
            &t,
            &mut conn,
            acme,
            "SELECT set_config('role', 'tenantry_bypass', true);"
        )
        .await,
        ACME_INVOICES + GLOBEX_INVOICES
    );
}

#[tokio::test]
async fn an_app_role_with_createrole_is_refused() {
    let (t, acme) = world().await;
    let role = app_like(&t, "CREATEROLE").await;

    let escalation = refusal(&role, &["CREATEROLE", "NOCREATEROLE"]).await;
    assert_eq!(escalation.power, RolePower::CreateRole);
    assert!(escalation.via.is_empty());

    // The attack: grant itself the bypass role, then use it.
    let mut conn = connect_as(&role).await;
    sql(
        &mut conn,
        &format!("GRANT tenantry_bypass TO {}", role.name()),
    )
    .await;
    assert_eq!(
        invoices_seen_in(
            &t,
            &mut conn,
            acme,
            "SELECT set_config('role', 'tenantry_bypass', true);"
        )
        .await,
        ACME_INVOICES + GLOBEX_INVOICES
    );
}

#[tokio::test]
async fn a_member_of_a_superuser_is_refused() {
    let (t, _) = world().await;
    let role = app_like(&t, "").await;
    sql(
        &mut t.admin().await,
        &format!("GRANT postgres TO {}", role.name()),
    )
    .await;
    let escalation = refusal(&role, &["postgres", "superuser"]).await;
    assert_eq!(escalation.via, vec!["postgres".to_owned()]);
    assert_eq!(escalation.power, RolePower::Superuser);
}

#[tokio::test]
async fn a_role_with_harmless_memberships_is_accepted() {
    let (t, _) = world().await;
    let role = app_like(&t, "").await;
    let readers = group(&t).await;
    sql(
        &mut t.admin().await,
        &format!("GRANT {} TO {}", readers.name(), role.name()),
    )
    .await;
    let db = Db::connect(DbConfig::new(role.url(), None))
        .await
        .expect("owns nothing, a member of no privileged role: accepted");
    db.close();
}

/// The escalation above, through `Db` itself: raw SQL in a tenant transaction (with an audited
/// bypass token) asks for the bypass role. An accepted app role cannot take it; a role that
/// could is refused before any transaction exists.
#[tokio::test]
async fn set_config_role_is_out_of_reach_of_every_accepted_app_role() {
    let (t, acme) = world().await;
    let err =
        t.db.tx(&common::ctx(acme), async |conn| {
            conn.raw_execute(
                no_tenant_scope!(&t.jobs.job("test"), "try to become the bypass role"),
                diesel::sql_query("SELECT set_config('role', 'tenantry_bypass', true)"),
            )
            .await
        })
        .await
        .expect_err("tenantry_app is a member of nothing");
    assert!(
        err.to_string().contains("permission denied to set role"),
        "{err}"
    );

    let role = app_like(&t, "").await;
    sql(
        &mut t.admin().await,
        &format!("GRANT tenantry_bypass TO {}", role.name()),
    )
    .await;
    refusal(&role, &["tenantry_bypass"]).await;
}
