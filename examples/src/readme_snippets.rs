//! The README's Rust snippets, compiled: each function holds one snippet verbatim between its
//! first and last lines, with what the snippet takes as given (a `db`, a `ctx`, a `conn`) as its
//! parameters. `tests/it/getting_started.rs` checks that every Rust block of the README and of
//! `docs/` appears in a compiled file, so a snippet cannot break unseen.

#![allow(dead_code, unused_variables, clippy::all)]

use axum::extract::State;
use axum::Json;
use tenantry::auth::Authenticator;
use tenantry::identity::{CsrfPolicy, OwnerProof, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, Db, DbConfig, DbError};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::models::{Currency, Invoice, NewInvoice, NewProject, Project};
use crate::schema::{currencies, invoices};

/// "Work inside one tenant".
async fn work_inside_one_tenant(db: &Db, ctx: TenantCtx<'_>) -> Result<(), DbError> {
use tenantry::prelude::*;

    let invoices: Vec<Invoice> = db
        .tx(&ctx, async |conn| {
            let rows = Invoice::scoped(conn)
                .filter(invoices::amount_cents.gt(100))
                .order(invoices::id.desc())
                .limit(50)
                .load(conn)
                .await?;
            Ok::<_, DbError>(rows) // the closure's error type: DbError, or one of yours that is From<DbError>
        })
        .await?;
    Ok(())
}

/// Inserts, updates, deletes, upserts and global tables.
async fn writes(
    db: &Db,
    ctx: TenantCtx<'_>,
    id: Uuid,
    rows: Vec<NewInvoice>,
    new: NewInvoice,
) -> Result<(), DbError> {
    db.tx(&ctx, async |conn| {
// inserts: tenant_id comes from the transaction, never from the caller
let p: Project = Project::insert(conn, NewProject { name: "Website".into() }).get_result(conn).await?;
Invoice::insert_many(conn, rows).execute(conn).await?;

// updates and deletes: only through a scoped target; another tenant's id touches zero rows.
// Changes are `column.to(value)` or a struct with tenantry's #[derive(AsChangeset)] (from the
// prelude): tenantry sees their columns, and the tenant column cannot be set.
diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
    .set((invoices::status.to("paid"), invoices::amount_cents.to(invoices::amount_cents + 1)))
    .execute(conn).await?;
diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id))).execute(conn).await?;

// upserts: the conflict target leads with the tenant column
Invoice::insert(conn, new)
    .on_conflict((invoices::tenant_id, invoices::number))
    .do_update()
    .set(invoices::amount_cents.to(tenantry::excluded(invoices::amount_cents)))
    .execute(conn).await?;

// global tables: no ceremony (a global query reads global tables only: no subquery over a
// tenant table in its filter or selection; start from the scoped query and join instead)
let all: Vec<Currency> = currencies::table.load(conn).await?;
        Ok::<_, DbError>(())
    })
    .await
}

/// SQL fragments.
async fn fragments(db: &Db, ctx: TenantCtx<'_>, status: String) -> Result<(), DbError> {
    db.tx(&ctx, async |conn| {
use diesel::sql_types::Text;

let rows: Vec<Invoice> = Invoice::scoped(conn)
    .filter(tenantry::sql!("amount_cents % 2 = 0"))                   // SQL type Bool
    .filter(tenantry::sql!(Text, "lower(status)").eq(status))         // the value is bound
    .order(tenantry::sql!(Text, "split_part(number, '-', 2)"))
    .load(conn).await?;
        Ok::<_, DbError>(())
    })
    .await
}

/// One statement, one round trip.
async fn one_round_trip(db: &Db, ctx: TenantCtx<'_>, id: Uuid) -> Result<(), DbError> {
let invoice: Option<Invoice> = db
    .query(&ctx, |conn| Invoice::scoped(conn).filter(invoices::id.eq(id)).first(conn).optional())
    .await?;
let deleted: usize = db
    .query(&ctx, |conn| diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id))).execute(conn))
    .await?;
    Ok(())
}

#[requires_role(Owner)]
async fn summary(owner: OwnerProof, State(app): State<AppState>) -> Result<Json<i64>, ApiError> {
    let bypass = no_tenant_scope!(&owner, "cross-tenant invoice count").action("admin.count");
    let n = app.tenantry.db.bypass(bypass, async |conn| {
        Ok::<_, DbError>(conn.get_result(invoices::table.count()).await?) // the closure's error type
    }).await?;
    Ok(Json(n))
}

/// Background work.
async fn jobs(
    config: DbConfig,
    tenant_id: Uuid,
    auth: std::sync::Arc<Authenticator>,
    csrf: CsrfPolicy,
) -> Result<(), DbError> {
let (db, jobs) = Db::connect_with_jobs(config).await?;
let runner = db.clone();
tokio::spawn(async move {
    let job = jobs.job("nightly-reminders");                  // the actor: `job:nightly-reminders`
    let due: i64 = job.read_only_tx(tenant_id, "count sent invoices", async |conn| {  // READ ONLY
        Ok::<_, DbError>(Invoice::scoped(conn).filter(invoices::status.eq("sent")).count().get_result(conn).await?)
    }).await?;
    job.tx(tenant_id, "void sent invoices", async |conn| {                            // read-write
        diesel::update(Invoice::scoped(conn).filter(invoices::status.eq("sent")))
            .set(invoices::status.to("void")).execute(conn).await?;
        Ok::<_, DbError>(())
    }).await?;
    let total: i64 = runner.bypass(no_tenant_scope!(&job, "monthly revenue report"), async |conn| {
        Ok::<_, DbError>(conn.get_result(invoices::table.count()).await?)
    }).await?;
    Ok::<_, DbError>(())
});
let state = AppState { tenantry: Tenantry { db, auth, csrf } };   // no `jobs` in the state
    Ok(())
}

/// Raw SQL under a bypass token, inside a tenant transaction.
async fn raw_sql(jobs: &tenantry::Jobs, tenant_id: Uuid) -> Result<(), DbError> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let job = jobs.job("ad-hoc");
    job.tx(tenant_id, "an ad-hoc count", async |conn| {
let rows: Vec<Count> = conn
    .raw_load(no_tenant_scope!(&job, "ad-hoc count"), diesel::sql_query("SELECT count(*) AS n FROM invoices"))
    .await?;   // counts only the active tenant's rows
        Ok::<_, DbError>(())
    })
    .await
}

/// "Identity and roles": the three kinds of handler.
mod roles {
    use axum::extract::State;
    use axum::Json;
    use uuid::Uuid;

    use crate::app::AppState;
    use crate::error::ApiError;
    use crate::extract::ApiJson;
    use crate::models::{Invoice, NewProject, Project};
    use tenantry::DbError;

    #[derive(serde::Deserialize)]
    struct NewName {
        name: String,
    }

use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role};
use tenantry::identity::OwnerProof;

#[requires_role(ClientViewer)]                      // ctx: TenantCtx<ReadOnly>: writes do not compile
async fn count(ctx: TenantCtx, State(app): State<AppState>) -> Result<Json<i64>, ApiError> {
    Ok(Json(app.tenantry.db.query(&ctx, |conn| Invoice::scoped(conn).count().get_result(conn)).await?))
}

#[requires_role(Partner)]                           // ctx: TenantCtx<ReadWrite>
async fn create(ctx: TenantCtx, State(app): State<AppState>, ApiJson(b): ApiJson<NewName>) -> Result<Json<Uuid>, ApiError> {
    let p: Project = app.tenantry.db.query(&ctx, |conn| Project::insert(conn, NewProject { name: b.name }).get_result(conn)).await?;
    Ok(Json(p.id))
}

#[requires_role(Owner)]                             // no tenant; an Owner proof opens a bypass
async fn tenant_count(owner: OwnerProof, State(app): State<AppState>) -> Result<Json<i64>, ApiError> {
    let n = app.tenantry.db.bypass(no_tenant_scope!(&owner, "cross-tenant summary"), async |conn| {
        Ok::<_, DbError>(conn.get_result(tenantry::schema::tenants::table.count()).await?)
    }).await?;
    Ok(Json(n))
}
}

/// "Migrations".
async fn migrations(database_url: String) -> Result<(), Box<dyn std::error::Error>> {
    use tenantry::bounds::Declared;
// Cargo.toml: diesel_migrations = "2.3"
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations");

let conn = tenantry::tls::establish(&database_url).await?;          // the migration role, TLS as the URL asks
let mut conn = tenantry::migrate_with(conn, MIGRATIONS).await?.conn;   // tenantry's, then yours
tenantry::declare_tables(&mut conn, &[<invoices::table as Declared>::DECL]).await?; // optional: re-declares from code
    Ok(())
}

/// "Declare tables once": the models, on tables of their own.
mod declare {
    use chrono::{DateTime, Utc};
    use diesel::{Queryable, Selectable};
    use uuid::Uuid;

    diesel::table! {
        invoices (id) {
            id -> Uuid,
            tenant_id -> Uuid,
            project_id -> Uuid,
            number -> Text,
            amount_cents -> Int8,
            currency -> Bpchar,
            status -> Text,
            created_at -> Timestamptz,
        }
    }

    diesel::table! {
        currencies (code) {
            code -> Bpchar,
            name -> Text,
        }
    }

use tenantry::{global_table, tenant_table};

#[tenant_table(generated(id, created_at))]         // table from #[diesel(table_name = ..)]
#[derive(Queryable, Selectable)]
#[diesel(table_name = invoices)]
pub struct Invoice {
    pub id: Uuid,
    pub tenant_id: Uuid,                            // `-> Uuid` in table! (uuid NOT NULL)
    pub project_id: Uuid,
    pub number: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}
// generates: Invoice::scoped(conn), NewInvoice (no tenant column, no generated columns),
// Invoice::insert(conn, new), Invoice::insert_many(conn, rows), and the table's declaration.

#[global_table]                                     // shared reference data, read without a scope
#[derive(Queryable, Selectable)]
#[diesel(table_name = currencies)]
pub struct Currency { pub code: String, pub name: String }
}

/// "A job queue": a handler asks, the runner runs.
mod queue {
    use axum::extract::State;
    use axum::Json;
    use tenantry::prelude::*;
    use tenantry::{requires_role, DbError, Jobs};
    use uuid::Uuid;

    use crate::app::AppState;
    use crate::error::ApiError;

    async fn send_invoice(conn: &mut TenantConn<'_>, payload: &serde_json::Value) -> Result<(), DbError> {
        Ok(())
    }

#[requires_role(Partner)]                           // a viewer's `conn.enqueue` does not compile
async fn send(ctx: TenantCtx, State(app): State<AppState>, Json(invoice): Json<Uuid>) -> Result<Json<Uuid>, ApiError> {
    let job = app.tenantry.db.tx(&ctx, async |conn| {
        conn.enqueue("send-invoice", &serde_json::json!({ "invoice": invoice })).await   // this tenant's
    }).await?;
    Ok(Json(job))
}

async fn run_jobs(jobs: Jobs) -> Result<(), DbError> {   // the task that owns `Jobs`
    let queue = jobs.queue(["send-invoice"]);
    loop {
        match queue.next().await? {
            Some(job) => { job.run(async |conn, payload| send_invoice(conn, payload).await).await?; }
            None => queue.wait().await,
        }
    }
}
}

/// docs/adopting.md, "4. Declare it": an existing table, declared once it has its tenant key.
mod adopting {
    use tenantry::prelude::*;
    use tenantry::{tenant_table, Db, DbError};
    use uuid::Uuid;

diesel::table! {
    orders (id) {
        id -> Int8,
        user_id -> Int4,
        total_cents -> Int8,
        tenant_id -> Uuid,
    }
}

#[tenant_table(generated(id))]
#[derive(diesel::Queryable, diesel::Selectable, Debug)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: i64,
    pub user_id: i32,
    pub total_cents: i64,
    pub tenant_id: Uuid,
}

    async fn read(db: &Db, ctx: TenantCtx<'_>) -> Result<(), DbError> {
let mine: Vec<Order> = db
    .tx(&ctx, async |conn| Ok::<_, DbError>(Order::scoped(conn).load(conn).await?))
    .await?;
        Ok(())
    }
}
