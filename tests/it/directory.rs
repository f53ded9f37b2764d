//! tenantry's own directory (`tenants`, `users`, `memberships`) seen from the app role: inside a
//! tenant transaction only the tenant itself, its memberships and its members; outside one,
//! nothing; writes refused; the principal and owner-tenant lookups only through their functions,
//! which only the directory role may call (`tests/it/hostile_sql.rs` has the attacks).

use crate::common;

use common::{ctx, TestDb};
use tenantry::prelude::*;
use tenantry::schema::{memberships, tenants, users};
use tenantry::DbError;
use uuid::Uuid;

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
    alice: Uuid,
    olga: Uuid,
}

/// `acme` with partner alice and viewer victor, `globex` with partner bob, and olga, an Owner
/// with no membership.
async fn world() -> World {
    let t = TestDb::new().await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    let mut admin = t.admin().await;
    let alice = raw::user(&mut admin, "alice@example.com", false).await;
    let victor = raw::user(&mut admin, "victor@example.com", false).await;
    let bob = raw::user(&mut admin, "bob@example.com", false).await;
    let olga = raw::user(&mut admin, "olga@example.com", true).await;
    raw::member(&mut admin, alice, acme, "partner").await;
    raw::member(&mut admin, victor, acme, "client_viewer").await;
    raw::member(&mut admin, bob, globex, "partner").await;
    let _ = olga;
    World {
        t,
        acme,
        globex,
        alice,
        olga,
    }
}

/// Plain Diesel on plain connections (this module does not import tenantry's prelude).
mod raw {
    use diesel::sql_types::{Bool, Text, Uuid as SqlUuid};
    use diesel::QueryableByName;
    use diesel_async::{AsyncPgConnection, RunQueryDsl};
    use uuid::Uuid;

    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }

    #[derive(QueryableByName, Debug)]
    pub(crate) struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pub(crate) n: i64,
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the directory's SQL functions and grants are under test: raw SQL is the probe"
    )]
    pub(crate) async fn user(conn: &mut AsyncPgConnection, email: &str, owner: bool) -> Uuid {
        diesel::sql_query(
            "INSERT INTO tenantry.users (email, is_owner) VALUES ($1, $2) RETURNING id",
        )
        .bind::<Text, _>(email)
        .bind::<Bool, _>(owner)
        .get_result::<Id>(conn)
        .await
        .expect("insert user")
        .id
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the directory's SQL functions and grants are under test: raw SQL is the probe"
    )]
    pub(crate) async fn member(conn: &mut AsyncPgConnection, user: Uuid, tenant: Uuid, role: &str) {
        diesel::sql_query(
            "INSERT INTO tenantry.memberships (user_id, tenant_id, role) VALUES ($1, $2, $3)",
        )
        .bind::<SqlUuid, _>(user)
        .bind::<SqlUuid, _>(tenant)
        .bind::<Text, _>(role)
        .execute(conn)
        .await
        .expect("insert membership");
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the directory's SQL functions and grants are under test: raw SQL is the probe"
    )]
    pub(crate) async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
        diesel::sql_query(sql)
            .get_result::<Count>(conn)
            .await
            .expect(sql)
            .n
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the directory's SQL functions and grants are under test: raw SQL is the probe"
    )]
    pub(crate) async fn exec(
        conn: &mut AsyncPgConnection,
        sql: &str,
    ) -> diesel::QueryResult<usize> {
        diesel::sql_query(sql).execute(conn).await
    }

    #[derive(QueryableByName, Debug, PartialEq)]
    pub(crate) struct PrincipalRow {
        #[diesel(sql_type = SqlUuid)]
        pub(crate) user_id: Uuid,
        #[diesel(sql_type = Text)]
        pub(crate) email: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        pub(crate) slug: Option<String>,
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the directory's SQL functions and grants are under test: raw SQL is the probe"
    )]
    pub(crate) async fn principal(conn: &mut AsyncPgConnection, email: &str) -> Vec<PrincipalRow> {
        diesel::sql_query("SELECT user_id, email, slug FROM tenantry.tenantry_principal($1)")
            .bind::<Text, _>(email)
            .load(conn)
            .await
            .expect("tenantry_principal")
    }

    #[derive(QueryableByName, Debug)]
    pub(crate) struct Slug {
        #[diesel(sql_type = Text)]
        pub(crate) slug: String,
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the directory's SQL functions and grants are under test: raw SQL is the probe"
    )]
    pub(crate) async fn owner_tenant(
        conn: &mut AsyncPgConnection,
        owner: Uuid,
        key: &str,
    ) -> Vec<String> {
        // The caller parses the key once: an id, or else a slug (migration 00000000000008).
        let id = Uuid::parse_str(key).ok();
        let slug = id.is_none().then(|| key.to_owned());
        diesel::sql_query("SELECT slug FROM tenantry.tenantry_owner_tenant($1, $2, $3)")
            .bind::<SqlUuid, _>(owner)
            .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(id)
            .bind::<diesel::sql_types::Nullable<Text>, _>(slug)
            .load::<Slug>(conn)
            .await
            .expect("tenantry_owner_tenant")
            .into_iter()
            .map(|s| s.slug)
            .collect()
    }
}

#[tokio::test]
async fn a_tenant_transaction_sees_its_tenant_its_memberships_and_its_members_only() {
    let w = world().await;
    let (emails, slugs, member_tenants) =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                let emails: Vec<String> = users::table
                    .select(users::email)
                    .order(users::email)
                    .load(conn)
                    .await?;
                let slugs: Vec<String> = tenants::table.select(tenants::slug).load(conn).await?;
                let member_tenants: Vec<Uuid> = memberships::table
                    .select(memberships::tenant_id)
                    .load(conn)
                    .await?;
                Ok::<_, DbError>((emails, slugs, member_tenants))
            })
            .await
            .unwrap();
    assert_eq!(emails, ["alice@example.com", "victor@example.com"]);
    assert_eq!(slugs, ["acme"]);
    assert_eq!(member_tenants, [w.acme, w.acme]);

    // The same from globex: bob only; olga (an Owner with no membership) appears in neither.
    let emails: Vec<String> =
        w.t.db
            .tx(&ctx(w.globex), async |conn| {
                Ok::<_, DbError>(users::table.select(users::email).load(conn).await?)
            })
            .await
            .unwrap();
    assert_eq!(emails, ["bob@example.com"]);
}

#[tokio::test]
async fn without_a_tenant_the_app_role_sees_no_directory_row_and_writes_none() {
    let w = world().await;
    let mut app = w.t.app_conn().await;
    for table in ["tenantry.users", "tenantry.tenants", "tenantry.memberships"] {
        let n = raw::count(&mut app, &format!("SELECT count(*) AS n FROM {table}")).await;
        assert_eq!(n, 0, "{table} without a tenant");
    }
    // No write reaches the directory, whatever it targets.
    for sql in [
        "UPDATE tenantry.users SET is_owner = true".to_owned(),
        format!("UPDATE tenantry.users SET cf_sub = 'x' WHERE id = '{}'", w.alice),
        format!(
            "INSERT INTO tenantry.memberships (user_id, tenant_id, role) VALUES ('{}', '{}', 'partner')",
            w.alice, w.globex
        ),
        "INSERT INTO tenantry.tenants (slug, name) VALUES ('evil', 'Evil')".to_owned(),
        "DELETE FROM tenantry.memberships".to_owned(),
    ] {
        let err = raw::exec(&mut app, &sql).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    let mut admin = w.t.admin().await;
    let owners = raw::count(
        &mut admin,
        "SELECT count(*) AS n FROM tenantry.users WHERE is_owner",
    )
    .await;
    assert_eq!(owners, 1, "only olga");
}

#[tokio::test]
async fn the_lookup_functions_answer_one_principal_and_an_owners_tenant_only() {
    let w = world().await;
    // tenantry's own lookups run as the directory role.
    let mut app = w.t.directory_conn().await;
    let rows = raw::principal(&mut app, "ALICE@example.com").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, w.alice);
    assert_eq!(rows[0].slug.as_deref(), Some("acme"));
    assert!(raw::principal(&mut app, "nobody@example.com")
        .await
        .is_empty());
    // A prefix or a pattern matches nothing: the email is compared whole.
    assert!(raw::principal(&mut app, "%").await.is_empty());

    // An Owner may name any tenant, by slug or id; anyone else gets nothing.
    assert_eq!(
        raw::owner_tenant(&mut app, w.olga, "globex").await,
        ["globex"]
    );
    let by_id = w.globex.to_string().to_uppercase();
    assert_eq!(
        raw::owner_tenant(&mut app, w.olga, &by_id).await,
        ["globex"]
    );
    assert!(raw::owner_tenant(&mut app, w.alice, "globex")
        .await
        .is_empty());
    assert!(raw::owner_tenant(&mut app, w.olga, "initech")
        .await
        .is_empty());
    assert!(raw::owner_tenant(&mut app, w.olga, "not-a-uuid-or-slug")
        .await
        .is_empty());
}
