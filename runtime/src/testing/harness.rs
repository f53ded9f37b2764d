//! The fixture of `#[tenantry::test]`: a migrated scratch database with the app and bypass
//! pools, two tenants with a partner and a viewer each, and an Owner; dropped after the test,
//! also when it panics.

use std::future::Future;

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::ExpressionMethods;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::scratch::ScratchDatabase;
use crate::ctx::{Actor, ReadOnly, ReadWrite, TenantCtx};
use crate::db::{Db, DbConfig};
use crate::identity::{OwnerProof, Proof};
use crate::jobs::Jobs;
use crate::schema::tables::{memberships, tenants, users};

/// A user of the fixture: its `users` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    /// `users.id`.
    pub id: Uuid,
    /// `users.email` (send it in the trusted header, or mint a token for it).
    pub email: String,
}

impl TestUser {
    /// This user as the actor of audit rows.
    pub fn actor(&self) -> Actor {
        Actor::user(self.id, self.email.clone())
    }
}

/// A tenant of the fixture with its two members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestTenant {
    /// `tenants.id`.
    pub id: Uuid,
    /// `tenants.slug` (`acme`, `globex`): the `X-Tenant` header's value.
    pub slug: String,
    /// Its partner (`partner@<slug>.test`): reads and writes in this tenant only.
    pub partner: TestUser,
    /// Its client viewer (`viewer@<slug>.test`): reads in this tenant only.
    pub viewer: TestUser,
}

impl TestTenant {
    /// A read-write context of this tenant, acting as its partner.
    pub fn as_partner(&self) -> TenantCtx<'static, ReadWrite> {
        TenantCtx::for_test(self.id, self.partner.actor())
    }

    /// A read-only context of this tenant, acting as its viewer: its transactions are
    /// `READ ONLY`, and writes do not compile.
    pub fn as_viewer(&self) -> TenantCtx<'static, ReadOnly> {
        TenantCtx::for_test(self.id, self.viewer.actor())
    }
}

/// What a `#[tenantry::test]` receives: a scratch database with tenantry's migrations and then
/// the test's own (`migrations = ..`), pools on the app role (`tenantry_app`, row-level
/// security applies) and the bypass role, the [`Jobs`] capability, two tenants with a partner
/// and a viewer each, and an Owner. The database is dropped when the value is, also when the
/// test panics.
///
/// ```text
/// use tenantry::prelude::*;
/// use tenantry::testing::TestDb;
///
/// #[tenantry::test(migrations = app::MIGRATIONS)]
/// async fn a_viewer_reads_its_own_tenant(t: TestDb) {
///     let ctx = t.acme.as_viewer();
///     t.db.tx(&ctx, async |conn| Ok::<_, tenantry::DbError>(conn.tenant_id()))
///         .await
///         .unwrap();
/// }
/// ```
#[derive(Debug)]
pub struct TestDb {
    /// The pools: tenant work on `tenantry_app`, audited bypasses on `tenantry_bypass`.
    pub db: Db,
    /// The system-job capability of this database (`t.jobs.job("name").tx(..)`).
    pub jobs: Jobs,
    /// The tenant `acme`, with `partner@acme.test` and `viewer@acme.test`.
    pub acme: TestTenant,
    /// The tenant `globex`, with `partner@globex.test` and `viewer@globex.test`.
    pub globex: TestTenant,
    /// An Owner (`owner@tenantry.test`), a member of no tenant.
    pub owner: TestUser,
    scratch: ScratchDatabase,
}

impl TestDb {
    /// Creates the fixture on the test server (`TENANTRY_TEST_DATABASE_URL`): a scratch
    /// database, tenantry's migrations, then `migrations`, the people, and the pools.
    ///
    /// Panics, naming `TENANTRY_TEST_DATABASE_URL`, when the server cannot be reached, and with
    /// the migration's error when one fails.
    pub async fn create<S>(migrations: S) -> Self
    where
        S: MigrationSource<Pg> + Send + 'static,
    {
        // The migrations run once per set, on a template each test's database copies; on the
        // copy, running tenantry's migrations again applies nothing and grants the roles the
        // database itself, which a copy does not inherit.
        let set = migration_set(&migrations);
        let scratch = ScratchDatabase::from_template("tenantry_test", &set, async |conn| {
            drop(
                crate::schema::migrate_with(conn, migrations)
                    .await
                    .unwrap_or_else(|e| panic!("migrating the test template: {e}")),
            );
        })
        .await;
        let conn = scratch.connect().await;
        let mut conn = crate::schema::migrate(conn)
            .await
            .unwrap_or_else(|e| panic!("granting on the test database {}: {e}", scratch.name()))
            .conn;
        let owner = add_user(&mut conn, "owner@tenantry.test", true).await;
        let acme = add_tenant(&mut conn, "acme", "Acme Corp").await;
        let globex = add_tenant(&mut conn, "globex", "Globex Corporation").await;
        drop(conn);
        let mut config = DbConfig::new(
            scratch.url(Some("tenantry_app")),
            Some(scratch.url(Some("tenantry_bypass"))),
        );
        // Small pools: many tests share the server's connection limit.
        config.max_connections = 4;
        config.max_bypass_connections = 2;
        let (db, jobs) = Db::connect_with_jobs(config)
            .await
            .unwrap_or_else(|e| panic!("the pools of the test database: {e}"));
        TestDb {
            db,
            jobs,
            acme,
            globex,
            owner,
            scratch,
        }
    }

    /// The scratch database's name.
    pub fn name(&self) -> &str {
        self.scratch.name()
    }

    /// Its URL as the server's superuser, or as `role` (`tenantry_app`, `tenantry_bypass`).
    pub fn url(&self, role: Option<&str>) -> String {
        self.scratch.url(role)
    }

    /// A superuser connection (row-level security does not apply): for setting up rows and
    /// checking what really is in the tables.
    pub async fn admin(&self) -> AsyncPgConnection {
        self.scratch.connect().await
    }

    /// A bare connection as the app role `tenantry_app`, outside any tenant transaction: what
    /// row-level security alone allows.
    pub async fn app_conn(&self) -> AsyncPgConnection {
        let url = self.url(Some("tenantry_app"));
        crate::pool::tls::establish(&url)
            .await
            .unwrap_or_else(|e| panic!("the app role connects to {url}: {e}"))
    }

    /// Opens a transaction on `conn` (a raw connection as the app role, [`TestDb::app_conn`]) and
    /// enters `tenant` the way tenantry does: `BEGIN`, then `tenantry_enter(..)` with a proof
    /// signed by the tenant key. What row-level security alone allows a raw connection that
    /// holds the key; without it (`set_config`, a copied setting) no tenant can be entered.
    pub async fn begin_tenant(
        &self,
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
    ) -> diesel::QueryResult<()> {
        begin_tenant(&self.db, conn, tenant).await
    }

    /// A bare connection as the directory role `tenantry_directory` (which alone may call the
    /// directory functions).
    pub async fn directory_conn(&self) -> AsyncPgConnection {
        let url = self.url(Some("tenantry_directory"));
        crate::pool::tls::establish(&url)
            .await
            .unwrap_or_else(|e| panic!("the directory role connects to {url}: {e}"))
    }

    /// Another tenant `slug` with its partner and viewer, like `acme` and `globex`.
    pub async fn add_tenant(&self, slug: &str) -> TestTenant {
        add_tenant(&mut self.admin().await, slug, slug).await
    }

    /// The Owner's proof, which opens audited bypasses: `no_tenant_scope!(&owner, "..")`.
    pub fn owner_proof(&self) -> OwnerProof<'static> {
        Proof::for_test(self.owner.actor())
    }
}

/// The name of a migration set: its migrations' names, in order.
fn migration_set<S: MigrationSource<Pg>>(migrations: &S) -> String {
    let names = migrations
        .migrations()
        .map(|all| all.iter().map(|m| m.name().to_string()).collect::<Vec<_>>())
        .unwrap_or_default();
    format!("test_{}", names.join(","))
}

async fn add_user(conn: &mut AsyncPgConnection, email: &str, owner: bool) -> TestUser {
    let id = diesel::insert_into(users::table)
        .values((users::email.eq(email), users::is_owner.eq(owner)))
        .returning(users::id)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("the test user {email}: {e}"));
    TestUser {
        id,
        email: email.to_owned(),
    }
}

async fn add_tenant(conn: &mut AsyncPgConnection, slug: &str, name: &str) -> TestTenant {
    let id: Uuid = diesel::insert_into(tenants::table)
        .values((tenants::slug.eq(slug), tenants::name.eq(name)))
        .returning(tenants::id)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("the test tenant {slug}: {e}"));
    let partner = add_user(conn, &format!("partner@{slug}.test"), false).await;
    let viewer = add_user(conn, &format!("viewer@{slug}.test"), false).await;
    for (user, role) in [(&partner, "partner"), (&viewer, "client_viewer")] {
        diesel::insert_into(memberships::table)
            .values((
                memberships::user_id.eq(user.id),
                memberships::tenant_id.eq(id),
                memberships::role.eq(role),
            ))
            .execute(conn)
            .await
            .unwrap_or_else(|e| panic!("the membership of {} in {slug}: {e}", user.email));
    }
    TestTenant {
        id,
        slug: slug.to_owned(),
        partner,
        viewer,
    }
}

/// Opens a transaction on `conn` (a raw connection as the app role) and enters `tenant` the way
/// `db`'s transactions do: `BEGIN`, then `tenantry_enter(..)` with a proof signed by `db`'s tenant
/// key. For tests of what row-level security alone allows a raw connection.
pub async fn begin_tenant(
    db: &Db,
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> diesel::QueryResult<()> {
    use diesel_async::SimpleAsyncConnection;
    conn.batch_execute("BEGIN").await?;
    crate::pool::seal::EnterQuery(db.entry(tenant, false))
        .execute(conn)
        .await
        .map(|_| ())
}

/// No migrations of the test's own: `#[tenantry::test]` without `migrations = ..`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMigrations;

impl MigrationSource<Pg> for NoMigrations {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        Ok(Vec::new())
    }
}

/// The body of a `#[tenantry::test]`: an `async fn` taking the [`TestDb`].
#[diagnostic::on_unimplemented(
    message = "a `#[tenantry::test]` function takes the test database: `t: tenantry::testing::TestDb`",
    label = "this function's parameter is not a `TestDb`",
    note = "write it as `#[tenantry::test] async fn name(t: tenantry::testing::TestDb) {{ .. }}`"
)]
pub trait TestFn<T> {
    /// The test's future.
    type Future: Future<Output = T>;
    /// Starts the test on the fixture.
    fn call(self, db: TestDb) -> Self::Future;
}

impl<F, Fut, T> TestFn<T> for F
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = T>,
{
    type Future = Fut;
    fn call(self, db: TestDb) -> Fut {
        self(db)
    }
}

/// What `#[tenantry::test(migrations = M)]` expands to: runs `test` on a current-thread Tokio
/// runtime (as `#[tokio::test]` does) with a fresh [`TestDb`] migrated with `migrations`, and
/// returns what the test returns. The database is dropped when the test ends, also when it
/// panics.
pub fn run_test<S, F, T>(migrations: S, test: F) -> T
where
    S: MigrationSource<Pg> + Send + 'static,
    F: TestFn<T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("the test's Tokio runtime: {e}"));
    runtime.block_on(async move {
        let db = TestDb::create(migrations).await;
        test.call(db).await
    })
}

/// A [`Jobs`] for `db`, for a test kit of your own that makes many for one database in one
/// process (`Db::connect_with_jobs` makes one per process and database, as `main` does). Like any
/// `Jobs`, its jobs refuse to run in a task that serves a request. `#[tenantry::test]` needs none
/// of this: each test has a database of its own.
pub fn jobs_for_test(db: &Db) -> Jobs {
    Jobs::for_test(db)
}
