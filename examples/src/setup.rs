//! Database setup on the migration role's plain Diesel connection: create the database if it is
//! missing, apply tenantry's and the example's migrations, declare the tables, and seed the dev
//! data. (This module does not import tenantry's prelude, so `diesel_async::RunQueryDsl` is
//! unambiguous here.)

use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::schema::{memberships, tenants, users};
use tenantry::settings::Settings;
use tenantry::Jobs;
use uuid::Uuid;

use crate::models::{self, Invoice, NewInvoice, NewProject, Project};

/// A setup step failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("DATABASE_URL: {0}")]
    Url(String),
    #[error("cannot connect to {url}: {source} (is PostgreSQL running? pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)")]
    Connect {
        url: String,
        source: diesel::ConnectionError,
    },
    #[error("migrations: {0}")]
    Migrate(#[from] tenantry::MigrateError),
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database: {0}")]
    Db(#[from] tenantry::DbError),
    #[error(transparent)]
    Scope(#[from] tenantry::ScopeError),
}

fn redacted(url: &url::Url) -> String {
    tenantry::settings::redact(url.as_str())
}

async fn connect(url: &url::Url) -> Result<AsyncPgConnection, SetupError> {
    tenantry::tls::establish(url.as_str())
        .await
        .map_err(|source| SetupError::Connect {
            url: redacted(url),
            source,
        })
}

/// Creates the database if missing and applies all migrations and table declarations.
#[allow(
    clippy::disallowed_methods,
    reason = "a literal statement on the migration connection, before any tenant work; the database name is a bound value"
)]
pub async fn prepare(settings: &Settings) -> Result<(), SetupError> {
    let url =
        url::Url::parse(&settings.database_url).map_err(|e| SetupError::Url(e.to_string()))?;
    let db_name = url.path().trim_start_matches('/').to_owned();
    if !db_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(SetupError::Url(format!(
            "database name {db_name:?} may only hold letters, digits and _"
        )));
    }
    let mut server = url.clone();
    server.set_path("/postgres");
    // Migrations take advisory locks: they need a session of their own, never a transaction
    // pooler (the request path may go through one: TENANTRY_DB_POOLER=transaction).
    tenantry::pooler::require_session(server.as_str(), "DATABASE_URL").await?;
    let mut admin = connect(&server).await?;
    let exists: bool = diesel::select(
        diesel::dsl::sql::<diesel::sql_types::Bool>(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = ",
        )
        .bind::<diesel::sql_types::Text, _>(&db_name)
        .sql(")"),
    )
    .get_result(&mut admin)
    .await?;
    if !exists {
        if let Err(e) = admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
        {
            // A concurrent start may have created it meanwhile.
            tracing::debug!(error = %e, "CREATE DATABASE");
        }
    }
    let conn = connect(&url).await?;
    let mut conn =
        tenantry::migrations::migrate_with_roles(conn, &settings.roles, models::MIGRATIONS)
            .await?
            .conn;
    tenantry::declare_tables(&mut conn, &models::declarations()).await?;
    Ok(())
}

/// In dev mode with an empty database: the tenant "Acme Corp" with a few projects and
/// invoices, and the dev user as Owner and as partner of Acme Corp.
pub async fn seed_dev(settings: &Settings, jobs: &Jobs, dev_email: &str) -> Result<(), SetupError> {
    let url =
        url::Url::parse(&settings.database_url).map_err(|e| SetupError::Url(e.to_string()))?;
    let mut conn = connect(&url).await?;
    let tenant_count: i64 = tenants::table.count().get_result(&mut conn).await?;
    if tenant_count > 0 {
        return Ok(());
    }
    let acme: Uuid = diesel::insert_into(tenants::table)
        .values((tenants::slug.eq("acme-corp"), tenants::name.eq("Acme Corp")))
        .returning(tenants::id)
        .get_result(&mut conn)
        .await?;
    let user: Uuid = diesel::insert_into(users::table)
        .values((
            users::email.eq(dev_email),
            users::display_name.eq("Dev User"),
            users::is_owner.eq(true),
        ))
        .returning(users::id)
        .get_result(&mut conn)
        .await?;
    diesel::insert_into(memberships::table)
        .values((
            memberships::user_id.eq(user),
            memberships::tenant_id.eq(acme),
            memberships::role.eq("partner"),
        ))
        .execute(&mut conn)
        .await?;
    let job = jobs.job("dev-seed");
    job.tx(acme, "seed the dev tenant Acme Corp", async |tx| {
        seed_acme(tx).await
    })
    .await?;
    tracing::info!(tenant = %acme, user = dev_email, "seeded Acme Corp and the dev user");
    Ok(())
}

async fn seed_acme(tx: &mut tenantry::TenantConn<'_>) -> Result<(), SetupError> {
    use tenantry::bounds::RunTenantQuery;
    let mut number = 0;
    for (name, amounts) in [
        ("Website relaunch", &[120_000_i64, 45_000, 9_900][..]),
        ("Mobile app", &[250_000, 80_000][..]),
        ("Support retainer", &[30_000][..]),
    ] {
        let project: Project = RunTenantQuery::get_result(
            Project::insert(
                tx,
                NewProject {
                    name: name.to_owned(),
                },
            ),
            tx,
        )
        .await?;
        let rows: Vec<NewInvoice> = amounts
            .iter()
            .map(|&amount_cents| {
                number += 1;
                NewInvoice {
                    project_id: project.id,
                    number: format!("ACME-{number:04}"),
                    amount_cents,
                    currency: if number % 3 == 0 { "USD" } else { "EUR" }.to_owned(),
                    status: ["draft", "sent", "paid"][number % 3].to_owned(),
                }
            })
            .collect();
        RunTenantQuery::execute(Invoice::insert_many(tx, rows), tx).await?;
    }
    Ok(())
}
