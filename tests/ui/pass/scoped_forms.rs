//! Every supported form compiles: reads, joins, subqueries, boxing, writes, global reads,
//! bypass, raw SQL with a bypass, jobs, read-only contexts reading.
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, BypassConn, DbError, SystemJob};

#[derive(QueryableByName)]
#[allow(dead_code)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[allow(dead_code)]
async fn reads(db: &Db, ctx: &TenantCtx, id: uuid::Uuid) -> Result<(), DbError> {
    db.tx(ctx, async |conn| {
        let _: Vec<Invoice> = Invoice::scoped(conn.ctx())
            .filter(invoices::amount_cents.gt(100).or(invoices::status.eq("paid")))
            .order(invoices::id.desc())
            .then_order_by(invoices::number.asc())
            .limit(50)
            .offset(10)
            .load(conn)
            .await?;
        let _: i64 = Invoice::scoped(conn.ctx()).count().get_result(conn).await?;
        let _: Vec<String> = Invoice::scoped(conn.ctx()).select(invoices::currency).distinct().load(conn).await?;
        let _: Option<Invoice> = Invoice::scoped(conn.ctx()).filter(invoices::id.eq(id)).first(conn).await.optional()?;
        let mut boxed = Invoice::scoped(conn.ctx()).into_boxed();
        boxed = boxed.filter(invoices::status.eq("draft"));
        let _: Vec<Invoice> = boxed.load(conn).await?;
        let mine = Project::scoped(conn.ctx()).select(projects::id).subquery();
        let _: Vec<Invoice> = Invoice::scoped(conn.ctx()).filter(invoices::project_id.eq_any(mine)).load(conn).await?;
        let named = Project::scoped(conn.ctx()).filter(projects::name.eq("Website")).exists();
        let _: Vec<Invoice> = Invoice::scoped(conn.ctx()).filter(named).load(conn).await?;
        let _: Vec<(Invoice, Project)> = Invoice::scoped(conn.ctx()).inner_join(projects::table).load(conn).await?;
        let _: Vec<(Invoice, Option<Project>)> = Invoice::scoped(conn.ctx()).left_join(projects::table).load(conn).await?;
        let _: Vec<(Invoice, Currency)> = Invoice::scoped(conn.ctx()).inner_join(currencies::table).load(conn).await?;
        let _: Vec<(String, String)> = Invoice::scoped(conn.ctx())
            .inner_join(projects::table)
            .select((invoices::number, projects::name))
            .load(conn)
            .await?;
        let _: Vec<Currency> = currencies::table.load(conn).await?;
        let _: Vec<Currency> = currencies::table.filter(currencies::code.eq("EUR")).load(conn).await?;
        Ok(())
    })
    .await
}

#[allow(dead_code)]
async fn writes(db: &Db, ctx: &TenantCtx, id: uuid::Uuid, project: uuid::Uuid) -> Result<(), DbError> {
    db.tx(ctx, async |conn| {
        let _: Project = Project::insert(conn.ctx(), NewProject { name: "p".into() }).get_result(conn).await?;
        let rows = vec![NewInvoice {
            project_id: project,
            number: "1".into(),
            amount_cents: 1,
            currency: "EUR".into(),
            status: "draft".into(),
        }];
        let _: usize = Invoice::insert_many(conn.ctx(), rows).execute(conn).await?;
        let _: usize = diesel::update(Invoice::scoped(conn.ctx()).filter(invoices::id.eq(id)))
            .set(invoices::status.eq("void"))
            .execute(conn)
            .await?;
        let _: Invoice = diesel::update(Invoice::scoped(conn.ctx()).filter(invoices::id.eq(id)))
            .set(invoices::amount_cents.eq(5))
            .get_result(conn)
            .await?;
        let _: usize = diesel::delete(Invoice::scoped(conn.ctx()).filter(invoices::id.eq(id))).execute(conn).await?;
        let job = SystemJob::named("maintenance");
        let _: Vec<Count> = conn
            .raw_load(no_tenant_scope!(&job, "count under RLS"), diesel::sql_query("SELECT count(*) AS n FROM invoices"))
            .await?;
        Ok(())
    })
    .await
}

#[allow(dead_code)]
async fn viewer(db: &Db, ctx: &TenantCtx<ReadOnly>) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| Ok(Invoice::scoped(conn.ctx()).load(conn).await?)).await
}

#[allow(dead_code)]
async fn cross_tenant(db: &Db) -> Result<i64, DbError> {
    let job = SystemJob::named("report");
    db.bypass(no_tenant_scope!(&job, "monthly report across tenants").action("report"), async |conn: &mut BypassConn<'_>| {
        Ok(conn.get_result(invoices::table.count()).await?)
    })
    .await
}

#[allow(dead_code)]
async fn job(db: &Db, tenant: uuid::Uuid) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    #[derive(Debug)]
    struct JobError(String);
    impl From<DbError> for JobError {
        fn from(e: DbError) -> Self { JobError(e.to_string()) }
    }
    impl From<tenantry::ScopeError> for JobError {
        fn from(e: tenantry::ScopeError) -> Self { JobError(e.to_string()) }
    }
    let job = SystemJob::named("reminders");
    let n = db
        .job_tx(&job, tenant, "send reminders", async |conn| {
            let v: Vec<Invoice> = Invoice::scoped(conn.ctx()).load(conn).await.map_err(DbError::from)?;
            Ok::<_, JobError>(v.len())
        })
        .await
        .map_err(|e| e.0)?;
    Ok(n)
}

/// The tenant transaction's future is `Send`, so it can run inside axum handlers and spawned tasks.
#[allow(dead_code)]
fn futures_are_send(db: &'static Db, ctx: &'static TenantCtx, id: uuid::Uuid, p: uuid::Uuid) {
    fn is_send<T: Send>(_: T) {}
    is_send(reads(db, ctx, id));
    is_send(writes(db, ctx, id, p));
    is_send(cross_tenant(db));
}

fn main() {}
