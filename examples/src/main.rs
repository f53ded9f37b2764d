//! The tenantry example: migrates a database, seeds two tenants, and shows that each tenant's
//! transaction sees only its own rows while an audited bypass sees all.
//!
//! `cargo run -p tenantry-example` (uses `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/tenantry_example`, creating the database if missing).

#![allow(missing_docs, dead_code, unreachable_pub)]

mod models;
mod schema;
mod setup;

use models::{Invoice, NewInvoice, NewProject, Project};
use schema::invoices;
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, DbConfig, DbError, SystemJob};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/tenantry_example";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExampleError {
    #[error("DATABASE_URL: {0}")]
    Url(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migrate(#[from] tenantry::MigrateError),
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Scope(#[from] tenantry::ScopeError),
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), ExampleError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let (app_url, bypass_url) = setup::setup(&url).await?;
    let db = tenantry::Db::connect(DbConfig::new(app_url, Some(bypass_url))).await?;

    let job = SystemJob::named("example-seed");
    for (slug, name, base) in [("acme-corp", "Acme Corp", 10_000), ("globex", "Globex", 20_000)] {
        let tenant = setup::seed_tenant(&url, slug, name).await?;
        db.job_tx(&job, tenant, "seed the example tenants", async |conn| {
            let existing: i64 = Project::scoped(conn.ctx()).count().get_result(conn).await?;
            if existing > 0 {
                return Ok::<_, ExampleError>(());
            }
            let project: Project = Project::insert(conn.ctx(), NewProject { name: format!("{name} website") })
                .get_result(conn)
                .await?;
            let rows = (1..=3).map(|i| NewInvoice {
                project_id: project.id,
                number: format!("INV-{i:04}"),
                amount_cents: base + i * 1_000,
                currency: "EUR".into(),
                status: "draft".into(),
            });
            Invoice::insert_many(conn.ctx(), rows).execute(conn).await?;
            Ok(())
        })
        .await?;
        // Until the HTTP app lands, the listing runs as an audited job inside each tenant.
        let invoices: Vec<Invoice> = db
            .job_tx(&job, tenant, "example: list one tenant's invoices", async |conn| {
                Ok::<_, ExampleError>(
                    Invoice::scoped(conn.ctx())
                        .order(invoices::number.asc())
                        .load(conn)
                        .await?,
                )
            })
            .await?;
        println!("{name}: sees {} invoices", invoices.len());
        for i in &invoices {
            println!("  {} {:>8} {} {}", i.number, i.amount_cents, i.currency, i.status);
        }
    }

    let total: i64 = db
        .bypass(
            no_tenant_scope!(&job, "example: count invoices across all tenants").action("example.count"),
            async |conn| Ok::<_, DbError>(conn.get_result(diesel::QueryDsl::count(invoices::table)).await?),
        )
        .await?;
    println!("audited bypass: {total} invoices across all tenants (one audit_log row written)");
    Ok(())
}
