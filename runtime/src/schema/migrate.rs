//! Migrations the Diesel way: tenantry's own (embedded), then an application's
//! (`diesel_migrations::embed_migrations!`), run by `diesel_migrations` on the async connection
//! through diesel-async's `AsyncConnectionWrapper`, under an advisory lock so that concurrent
//! starts are safe.
//!
//! Every applied version is recorded in Diesel's `__diesel_schema_migrations`, so `diesel
//! migration run` sees the same state. tenantry's migrations are versioned `00000000000001`,
//! `00000000000002`, … (the scheme of Diesel's own `00000000000000_diesel_initial_setup`): they
//! sort before and never collide with an application's versions, whether timestamps
//! (`2024-05-01-120000_invoices`) or counters (`0001_app`).
//!
//! A database migrated by tenantry's earlier runner (table `tenantry_migrations`, rows of
//! `(migration_set, version)`) is adopted once: each recorded migration whose directory now
//! carries the same name (`0001_app` → `migrations/0001_app/up.sql`; tenantry's `0001_framework`
//! → `00000000000001_framework`) is recorded as applied without running again, and its old row
//! is kept and marked `adopted_at`. Nothing is deleted.

use std::error::Error as StdError;

use crate::schema::render::{render, RenderedMigrations};
use crate::schema::role_names::RoleNames;
use crate::schema::tables::NAME;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sql_types::{Array, Bool, Text};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::MigrationHarness;
use thiserror::Error;

/// tenantry's own migrations (`tenants`, `users`, `memberships`, `audit_log`, declarations, the
/// directory functions), in Diesel's layout under the crate's `migrations/`, written for the
/// schema `tenantry` and rendered for this build's ([`NAME`](crate::schema::tables::NAME)).
///
/// [`migrate`] applies them (with the roles and grants around them); a harness of your own may
/// too: `harness.run_pending_migrations(tenantry::FRAMEWORK_MIGRATIONS)`, as the tables' owner,
/// after creating the roles (`tenantry migrate` does all of it).
pub const FRAMEWORK_MIGRATIONS: RenderedMigrations = RenderedMigrations::new(include!(concat!(
    env!("OUT_DIR"),
    "/framework_migrations.rs"
)));

/// The roles (shared by the databases of a server) and the grants, written for the schema
/// `tenantry`: [`roles_sql`] and [`grants_sql`] render them.
pub(crate) const ROLES_SQL: &str = include_str!("../../migrations/roles.sql");
pub(crate) const GRANTS_SQL: &str = include_str!("../../migrations/grants.sql");

/// The SQL that creates the roles, for this build's schema and `roles`.
pub(crate) fn roles_sql(roles: &RoleNames) -> String {
    roles.rewrite(&render(ROLES_SQL, NAME))
}

/// The SQL that grants the roles what they need, for this build's schema and `roles`.
pub(crate) fn grants_sql(roles: &RoleNames) -> String {
    roles.rewrite(&render(GRANTS_SQL, NAME))
}

/// One key for every runner on a database, the earlier one included: concurrent starts wait.
const LOCK_SQL: &str = "SELECT pg_advisory_lock(hashtext('tenantry_migrations'))";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(hashtext('tenantry_migrations'))";

/// A migration run failed.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A step around the migrations failed: the roles, the lock, the grants, or adopting the
    /// earlier runner's records.
    #[error("{step} failed: {source}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// The database's error.
        source: diesel::result::Error,
    },
    /// A migration failed. It ran in a transaction (unless its `metadata.toml` says otherwise)
    /// and was rolled back; the migrations before it stay applied.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// The migration's directory name (`00000000000001_framework`, `0001_app`).
        name: String,
        /// Diesel's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// tenantry's objects are in another schema than this build's (`TENANTRY_SCHEMA`): a CLI
    /// built with another name migrated the database. Nothing was changed.
    #[error("{}", crate::schema::placement::mismatch(found))]
    OtherSchema {
        /// The schema that holds them.
        found: String,
    },
    /// The earlier runner recorded the same version under several sets, so it cannot tell which
    /// of them these migrations are.
    #[error(
        "tenantry_migrations records {version} under the sets {sets}: record the applied \
         versions in __diesel_schema_migrations by hand, or mark the other rows adopted \
         (UPDATE tenantry_migrations SET adopted_at = now() WHERE ...)"
    )]
    AmbiguousLegacyVersion {
        /// The version recorded several times.
        version: String,
        /// The sets it is recorded under.
        sets: String,
    },
}

/// `BEGIN` or `COMMIT` of the transaction that adopts the earlier runner's records failed.
impl From<diesel::result::Error> for MigrateError {
    fn from(source: diesel::result::Error) -> Self {
        MigrateError::Step {
            step: "adopting tenantry_migrations",
            source,
        }
    }
}

/// What a migration run did: the connection, handed back for what follows (declaring tables,
/// seeding), and the migrations it applied.
#[must_use = "the connection is handed back; the applied list says what changed"]
pub struct Migrated {
    /// The connection the run used (no lock held, no transaction open).
    pub conn: AsyncPgConnection,
    /// The directory names of the migrations applied by this run, in order
    /// (`00000000000001_framework`, …, then the application's); empty when the database was up
    /// to date.
    pub applied: Vec<String>,
}

/// Applies tenantry's own migrations ([`FRAMEWORK_MIGRATIONS`]), after creating the roles
/// `tenantry_app` and `tenantry_bypass` if missing, and grants them what they need. Idempotent.
///
/// Run it as a role that may create tables and roles (the `DATABASE_URL` of the contract).
/// Concurrent runs on one database wait for each other (an advisory lock); runs on several
/// databases of one server proceed together.
pub async fn migrate(conn: AsyncPgConnection) -> Result<Migrated, MigrateError> {
    run(conn, None::<RenderedMigrations>, &RoleNames::default()).await
}

/// [`migrate`] with this deployment's role names (`TENANTRY_APP_ROLE`, `TENANTRY_BYPASS_ROLE`,
/// `TENANTRY_DIRECTORY_ROLE` or `TENANTRY_ROLE_PREFIX`; see [`RoleNames`]): creates them if
/// missing, grants them what tenantry's roles need, and records them in `tenantry_roles` for
/// `tenantry_declare_tenant_table` and `tenantry doctor`. Renaming the roles of a database
/// later grants the new ones; the old keep their grants until you drop them.
pub async fn migrate_roles(
    conn: AsyncPgConnection,
    roles: &RoleNames,
) -> Result<Migrated, MigrateError> {
    run(conn, None::<RenderedMigrations>, roles).await
}

/// [`migrate_with`] with this deployment's role names (see [`migrate_roles`]).
pub async fn migrate_with_roles<S>(
    conn: AsyncPgConnection,
    roles: &RoleNames,
    app: S,
) -> Result<Migrated, MigrateError>
where
    S: MigrationSource<Pg> + Send + 'static,
{
    run(conn, Some(app), roles).await
}

/// [`migrate`], then the application's migrations `app` (usually
/// `diesel_migrations::embed_migrations!("migrations")`), under the same lock.
///
/// A migration of `app` declares its tables to tenantry in SQL, so that `diesel migration run`
/// gives the same database:
///
/// ```sql
/// CREATE TABLE invoices (tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id), id uuid, .., PRIMARY KEY (tenant_id, id));
/// SELECT tenantry.tenantry_declare_tenant_table('invoices');
/// ```
pub async fn migrate_with<S>(conn: AsyncPgConnection, app: S) -> Result<Migrated, MigrateError>
where
    S: MigrationSource<Pg> + Send + 'static,
{
    run(conn, Some(app), &RoleNames::default()).await
}

/// [`migrate`] on a fresh connection to `database_url`; returns the migrations applied.
pub async fn migrate_url(database_url: &str) -> Result<Vec<String>, MigrateError> {
    let conn = crate::pool::tls::establish(database_url).await?;
    Ok(migrate(conn).await?.applied)
}

impl std::fmt::Debug for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrated")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

async fn run<S>(
    mut conn: AsyncPgConnection,
    app: Option<S>,
    roles: &RoleNames,
) -> Result<Migrated, MigrateError>
where
    S: MigrationSource<Pg> + Send + 'static,
{
    ensure_roles(&mut conn, roles).await?;
    // On an error below the connection is dropped, which releases the lock.
    step(
        "taking the migration lock",
        conn.batch_execute(LOCK_SQL).await,
    )?;
    step(
        "creating __diesel_schema_migrations",
        conn.batch_execute(diesel::migration::CREATE_MIGRATIONS_TABLE)
            .await,
    )?;

    // A build with another TENANTRY_SCHEMA migrated this database: change nothing.
    if let Some(found) = step(
        "looking for tenantry's schema",
        crate::schema::placement::migrated_elsewhere(&mut conn).await,
    )? {
        return Err(MigrateError::OtherSchema { found });
    }
    adopt_legacy(&mut conn, &FRAMEWORK_MIGRATIONS, Legacy::Framework).await?;
    let (mut conn, mut applied) = run_pending(conn, FRAMEWORK_MIGRATIONS).await?;
    // Concurrent GRANTs on one object fail ("tuple concurrently updated"): the lock covers them.
    // The roles of this deployment, recorded for the declarations and doctor (the names are
    // checked identifiers: nothing to escape).
    let record = format!(
        "INSERT INTO {NAME}.tenantry_roles (purpose, role_name) VALUES ('app', '{}'), ('bypass', '{}'), \
         ('directory', '{}') ON CONFLICT (purpose) DO UPDATE SET role_name = EXCLUDED.role_name",
        roles.app, roles.bypass, roles.directory
    );
    step(
        "granting tenantry's roles",
        conn.batch_execute(&format!(
            "BEGIN;\n{record};\n{}\n;COMMIT",
            grants_sql(roles)
        ))
        .await,
    )?;

    if let Some(app) = app {
        adopt_legacy(&mut conn, &app, Legacy::Application).await?;
        let (c, more) = run_pending(conn, app).await?;
        conn = c;
        applied.extend(more);
    }
    step(
        "releasing the migration lock",
        conn.batch_execute(UNLOCK_SQL).await,
    )?;
    Ok(Migrated { conn, applied })
}

fn step<T>(step: &'static str, result: diesel::QueryResult<T>) -> Result<T, MigrateError> {
    result.map_err(|source| MigrateError::Step { step, source })
}

async fn ensure_roles(conn: &mut AsyncPgConnection, roles: &RoleNames) -> Result<(), MigrateError> {
    let sql = roles_sql(roles);
    // Roles are shared by the databases of a server; concurrent runs may still collide on the
    // catalog ("tuple concurrently updated"), so retry a few times.
    let mut attempt = 0;
    loop {
        match conn.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(source) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(%source, attempt, "retrying role creation");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(source) => {
                return Err(MigrateError::Step {
                    step: "creating tenantry's roles (app, bypass, directory)",
                    source,
                })
            }
        }
    }
}

/// Runs the pending migrations of `source` through `diesel_migrations` on a blocking thread
/// (the wrapper blocks on each query), each in its own transaction, and hands the connection
/// back with the names applied.
async fn run_pending<S>(
    conn: AsyncPgConnection,
    source: S,
) -> Result<(AsyncPgConnection, Vec<String>), MigrateError>
where
    S: MigrationSource<Pg> + Send + 'static,
{
    // Made here, inside the runtime, so that it blocks on this runtime's handle.
    let mut wrapper = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
    let (wrapper, applied) = tokio::task::spawn_blocking(move || {
        let applied = apply_pending(&mut wrapper, source);
        (wrapper, applied)
    })
    .await
    .map_err(|e| MigrateError::Migration {
        name: "(the migration thread)".into(),
        source: Box::new(e),
    })?;
    Ok((wrapper.into_inner(), applied?))
}

fn apply_pending<S: MigrationSource<Pg>>(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
    source: S,
) -> Result<Vec<String>, MigrateError> {
    let pending = conn
        .pending_migrations(source)
        .map_err(|source| MigrateError::Migration {
            name: "(listing the pending migrations)".into(),
            source,
        })?;
    let mut applied = Vec::with_capacity(pending.len());
    for migration in &pending {
        let name = migration.name().to_string();
        conn.run_migration(&**migration)
            .map_err(|source| MigrateError::Migration {
                name: name.clone(),
                source,
            })?;
        tracing::info!(migration = %name, "applied");
        applied.push(name);
    }
    Ok(applied)
}

/// Whose records of the earlier runner a source adopts.
#[derive(Clone, Copy)]
enum Legacy {
    /// tenantry's own: set `tenantry`, versions `0001_framework` for `00000000000001_framework`.
    Framework,
    /// The application's: any other set, the same name as the migration's directory.
    Application,
}

impl Legacy {
    /// The name the earlier runner recorded for the migration now named `name`.
    fn recorded_name(self, name: &str) -> String {
        match (self, name.split_once('_')) {
            (Legacy::Framework, Some((version, rest))) if version.len() >= 4 => {
                format!("{}_{rest}", &version[version.len() - 4..])
            }
            _ => name.to_owned(),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Ambiguous {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Text)]
    sets: String,
}

/// Records as applied, once, the migrations of `source` that tenantry's earlier runner applied.
#[allow(
    clippy::disallowed_methods,
    reason = "tenantry's own migration bookkeeping, literal SQL on the migration connection"
)]
async fn adopt_legacy<S: MigrationSource<Pg>>(
    conn: &mut AsyncPgConnection,
    source: &S,
    legacy: Legacy,
) -> Result<(), MigrateError> {
    let present: bool = step(
        "looking for tenantry_migrations",
        diesel::select(diesel::dsl::sql::<Bool>(
            "to_regclass('tenantry_migrations') IS NOT NULL",
        ))
        .get_result(conn)
        .await,
    )?;
    if !present {
        return Ok(());
    }
    let migrations = source
        .migrations()
        .map_err(|source| MigrateError::Migration {
            name: "(listing the migrations)".into(),
            source,
        })?;
    let (versions, recorded): (Vec<String>, Vec<String>) = migrations
        .iter()
        .map(|m| {
            let name = m.name().to_string();
            (m.name().version().to_string(), legacy.recorded_name(&name))
        })
        .unzip();
    drop(migrations);
    let framework = matches!(legacy, Legacy::Framework);
    conn.transaction::<_, MigrateError, _>(async |conn| {
        step(
            "adopting tenantry_migrations",
            conn.batch_execute(
                "ALTER TABLE tenantry_migrations ADD COLUMN IF NOT EXISTS adopted_at timestamptz",
            )
            .await,
        )?;
        let ambiguous: Vec<Ambiguous> = step(
            "adopting tenantry_migrations",
            diesel::sql_query(
                "SELECT version, string_agg(migration_set, ', ' ORDER BY migration_set) AS sets
                 FROM tenantry_migrations
                 WHERE adopted_at IS NULL AND version = ANY($1) AND (migration_set = 'tenantry') = $2
                 GROUP BY version HAVING count(*) > 1",
            )
            .bind::<Array<Text>, _>(&recorded)
            .bind::<Bool, _>(framework)
            .load(conn)
            .await,
        )?;
        if let Some(a) = ambiguous.into_iter().next() {
            return Err(MigrateError::AmbiguousLegacyVersion {
                version: a.version,
                sets: a.sets,
            });
        }
        let adopted = step(
            "adopting tenantry_migrations",
            diesel::sql_query(
                "WITH wanted (version, recorded) AS (SELECT * FROM unnest($1::text[], $2::text[])),
                 found AS (
                     SELECT w.version, m.migration_set, m.version AS recorded
                     FROM wanted w JOIN tenantry_migrations m ON m.version = w.recorded
                     WHERE m.adopted_at IS NULL AND (m.migration_set = 'tenantry') = $3),
                 noted AS (
                     INSERT INTO __diesel_schema_migrations (version)
                     SELECT DISTINCT version FROM found ON CONFLICT DO NOTHING)
                 UPDATE tenantry_migrations m SET adopted_at = now() FROM found f
                 WHERE m.migration_set = f.migration_set AND m.version = f.recorded",
            )
            .bind::<Array<Text>, _>(&versions)
            .bind::<Array<Text>, _>(&recorded)
            .bind::<Bool, _>(framework)
            .execute(conn)
            .await,
        )?;
        if adopted > 0 {
            tracing::info!(
                adopted,
                "recorded migrations of tenantry's earlier runner in __diesel_schema_migrations"
            );
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::Legacy;
    use diesel::migration::MigrationSource;
    use diesel::pg::Pg;

    #[test]
    fn earlier_names_map_to_the_directories() {
        assert_eq!(
            Legacy::Framework.recorded_name("00000000000002_directory"),
            "0002_directory"
        );
        assert_eq!(Legacy::Application.recorded_name("0001_app"), "0001_app");
    }

    #[test]
    fn framework_versions_sort_before_any_application_version() {
        let migrations = MigrationSource::<Pg>::migrations(&super::FRAMEWORK_MIGRATIONS)
            .expect("embedded migrations");
        let versions: Vec<String> = migrations
            .iter()
            .map(|m| m.name().version().to_string())
            .collect();
        assert!(versions.len() >= 3, "{versions:?}");
        for v in &versions {
            assert_eq!(v.len(), 14, "{v}");
            assert!(v.as_str() < "0001", "{v} sorts before `0001_..`");
            assert!(
                v.as_str() > "00000000000000",
                "{v} is not Diesel's initial setup"
            );
        }
    }
}
