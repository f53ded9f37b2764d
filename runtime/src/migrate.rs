//! Embedded migrations: tenantry's own tables and roles, and a runner for an application's own.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use thiserror::Error;

/// One migration: a version (sorted as text, e.g. `0001_init`) and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Unique, sortable version name.
    pub version: &'static str,
    /// The SQL, run as one transaction.
    pub sql: &'static str,
}

/// tenantry's own migrations (`tenants`, `users`, `memberships`, `audit_log`, declarations).
pub const FRAMEWORK_MIGRATIONS: &[Migration] = &[
    Migration {
        version: "0001_framework",
        sql: include_str!("../migrations/0001_framework.sql"),
    },
    Migration {
        version: "0002_directory",
        sql: include_str!("../migrations/0002_directory.sql"),
    },
];

const ROLES_SQL: &str = include_str!("../migrations/roles.sql");
const GRANTS_SQL: &str = include_str!("../migrations/grants.sql");

/// A migration failed.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A statement failed.
    #[error("migration {version} failed: {source}")]
    Failed {
        /// The failing migration (or `roles` / `grants`).
        version: String,
        /// The database's error.
        source: diesel::result::Error,
    },
}

/// Applies tenantry's own migrations, then creates the roles `tenantry_app` and
/// `tenantry_bypass` if missing and grants them what they need. Idempotent.
///
/// Run it as a role that may create tables and roles (the `DATABASE_URL` of the contract).
pub async fn migrate(conn: &mut AsyncPgConnection) -> Result<Vec<&'static str>, MigrateError> {
    ensure_roles(conn).await?;
    let applied = run_migrations(conn, "tenantry", FRAMEWORK_MIGRATIONS).await?;
    // Concurrent GRANTs on one object fail ("tuple concurrently updated"), so runs on one
    // database take the migrations' advisory lock for them too.
    let grants = format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtext('tenantry_migrations'));\n{GRANTS_SQL}\n;COMMIT"
    );
    if let Err(source) = conn.batch_execute(&grants).await {
        let _ = conn.batch_execute("ROLLBACK").await;
        return Err(MigrateError::Failed {
            version: "grants".into(),
            source,
        });
    }
    Ok(applied)
}

/// [`migrate`] on a fresh connection to `database_url`.
pub async fn migrate_url(database_url: &str) -> Result<Vec<&'static str>, MigrateError> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    migrate(&mut conn).await
}

async fn ensure_roles(conn: &mut AsyncPgConnection) -> Result<(), MigrateError> {
    // Roles are shared by the databases of a server; concurrent runs may still collide on the
    // catalog ("tuple concurrently updated"), so retry a few times.
    let mut attempt = 0;
    loop {
        match conn.batch_execute(ROLES_SQL).await {
            Ok(()) => return Ok(()),
            Err(source) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(%source, attempt, "retrying role creation");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(source) => {
                return Err(MigrateError::Failed {
                    version: "roles".into(),
                    source,
                })
            }
        }
    }
}

/// Applies the migrations of `set` that this database lacks, each in its own transaction, in
/// version order, and returns the versions applied. Concurrent runs on one database wait for
/// each other (an advisory lock).
pub async fn run_migrations(
    conn: &mut AsyncPgConnection,
    set: &str,
    migrations: &[Migration],
) -> Result<Vec<&'static str>, MigrateError> {
    let fail = |version: &str| {
        let version = version.to_owned();
        move |source| MigrateError::Failed { version, source }
    };
    // Two first runs at once would both try to create the table (and fail with a unique
    // violation or "type already exists"), so creating it takes the advisory lock too.
    if let Err(e) = conn
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('tenantry_migrations'));
            CREATE TABLE IF NOT EXISTS tenantry_migrations (
                migration_set text NOT NULL,
                version text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (migration_set, version));
            COMMIT",
        )
        .await
    {
        let _ = conn.batch_execute("ROLLBACK").await;
        return Err(fail("tenantry_migrations")(e));
    }

    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    let mut applied = Vec::new();
    for m in sorted {
        conn.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('tenantry_migrations'))")
            .await
            .map_err(fail(m.version))?;
        let done: bool = {
            use crate::schema::tenantry_migrations as tm;
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::RunQueryDsl;
            diesel::select(diesel::dsl::exists(
                tm::table
                    .filter(tm::migration_set.eq(set))
                    .filter(tm::version.eq(m.version)),
            ))
            .get_result(conn)
            .await
            .map_err(fail(m.version))?
        };
        if done {
            conn.batch_execute("COMMIT")
                .await
                .map_err(fail(m.version))?;
            continue;
        }
        let set_lit = quote_literal(set);
        let version_lit = quote_literal(m.version);
        let body = format!(
            "{}\n;INSERT INTO tenantry_migrations (migration_set, version) VALUES ({set_lit}, {version_lit});",
            m.sql
        );
        if let Err(e) = conn.batch_execute(&body).await {
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(fail(m.version)(e));
        }
        conn.batch_execute("COMMIT")
            .await
            .map_err(fail(m.version))?;
        applied.push(m.version);
    }
    Ok(applied)
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
