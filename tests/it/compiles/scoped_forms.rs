//! Every supported form compiles: reads, joins, subqueries, boxing, literal SQL fragments
//! (`tenantry::sql!`), writes with checked changes,
//! scoped upserts, global reads, bypass, raw SQL with a bypass, jobs (read-write and read-only),
//! read-only contexts reading, and tenantry's prelude leaving other types' methods alone.
#![allow(
    dead_code,
    reason = "compiled, never called: these cases prove the forms type-check"
)]

use crate::common::schema::*;
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, BypassConn, DbError, Jobs};

#[derive(QueryableByName)]
#[allow(dead_code)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// tenantry's `AsChangeset` (from the prelude): `Option` fields are skipped when `None`, the
/// primary key is left out.
#[derive(AsChangeset)]
#[diesel(table_name = invoices)]
#[allow(dead_code)]
struct PatchInvoice {
    id: uuid::Uuid,
    status: Option<String>,
    #[diesel(column_name = amount_cents)]
    amount: Option<i64>,
}

#[allow(dead_code)]
async fn reads(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid) -> Result<(), DbError> {
    db.tx(ctx, async |conn| {
        let _: Vec<Invoice> = Invoice::scoped(conn)
            .filter(
                invoices::amount_cents
                    .gt(100)
                    .or(invoices::status.eq("paid")),
            )
            .order(invoices::id.desc())
            .then_order_by(invoices::number.asc())
            .limit(50)
            .offset(10)
            .load(conn)
            .await?;
        let _ = Invoice::scoped(conn).load::<Invoice>(conn).await?;
        let _: i64 = Invoice::scoped(conn).count().get_result(conn).await?;
        let _: Vec<String> = Invoice::scoped(conn)
            .select(invoices::currency)
            .distinct()
            .load(conn)
            .await?;
        let _: Option<Invoice> = Invoice::scoped(conn)
            .filter(invoices::id.eq(id))
            .first(conn)
            .await
            .optional()?;
        let mut boxed = Invoice::scoped(conn).into_boxed();
        boxed = boxed.filter(invoices::status.eq("draft"));
        let _: Vec<Invoice> = boxed.load(conn).await?;
        let mine = Project::scoped(conn).select(projects::id).subquery();
        let _: Vec<Invoice> = Invoice::scoped(conn)
            .filter(invoices::project_id.eq_any(mine))
            .load(conn)
            .await?;
        let named = Project::scoped(conn)
            .filter(projects::name.eq("Website"))
            .exists();
        let _: Vec<Invoice> = Invoice::scoped(conn).filter(named).load(conn).await?;
        let first_name = Project::scoped(conn).select(projects::name).single_value();
        let _: Vec<Invoice> = Invoice::scoped(conn)
            .filter(invoices::number.nullable().eq(first_name))
            .load(conn)
            .await?;
        let _: Vec<(Invoice, Project)> = Invoice::scoped(conn)
            .inner_join(projects::table)
            .load(conn)
            .await?;
        let _: Vec<(Invoice, Option<Project>)> = Invoice::scoped(conn)
            .left_join(projects::table)
            .load(conn)
            .await?;
        let _: Vec<(Invoice, Currency)> = Invoice::scoped(conn)
            .inner_join(currencies::table)
            .load(conn)
            .await?;
        let _: Vec<(String, String)> = Invoice::scoped(conn)
            .inner_join(projects::table)
            .filter(
                projects::name
                    .eq("Website")
                    .and(invoices::amount_cents.gt(0)),
            )
            .select((invoices::number, projects::name))
            .load(conn)
            .await?;
        let _: Vec<(Invoice, Option<Project>)> = Invoice::scoped(conn)
            .left_join(projects::table)
            .filter(
                projects::name
                    .is_null()
                    .or(invoices::status.eq_any(["draft", "sent"])),
            )
            .load(conn)
            .await?;
        let _: Vec<Currency> = currencies::table.load(conn).await?;
        let _: Vec<Currency> = currencies::table
            .filter(currencies::code.eq("EUR"))
            .load(conn)
            .await?;
        let _: Vec<String> = currencies::table
            .select(currencies::name)
            .order(currencies::code)
            .limit(5)
            .load(conn)
            .await?;
        let _: i64 = currencies::table
            .filter(currencies::name.like("E%"))
            .count()
            .get_result(conn)
            .await?;
        // literal SQL fragments: a predicate, a typed value compared with a bound value, a
        // selection, an order, inside a boxed query
        use diesel::sql_types::{BigInt, Text};
        let _: Vec<String> = Invoice::scoped(conn)
            .filter(tenantry::sql!("amount_cents % 2 = 0"))
            .filter(tenantry::sql!(Text, "lower(status)").eq("paid"))
            .select(tenantry::sql!(Text, "upper(number)"))
            .order(tenantry::sql!(BigInt, "amount_cents % 7").desc())
            .load(conn)
            .await?;
        let _: Vec<Invoice> = Invoice::scoped(conn)
            .into_boxed()
            .filter(tenantry::sql!("number LIKE 'INV-%'"))
            .load(conn)
            .await?;
        Ok(())
    })
    .await
}

#[allow(dead_code)]
async fn writes(
    db: &Db,
    ctx: &TenantCtx<'_>,
    id: uuid::Uuid,
    project: uuid::Uuid,
) -> Result<(), DbError> {
    db.tx(ctx, async |conn| {
        let _: Project = Project::insert(conn, NewProject { name: "p".into() })
            .get_result(conn)
            .await?;
        let rows = vec![NewInvoice {
            project_id: project,
            number: "1".into(),
            amount_cents: 1,
            currency: "EUR".into(),
            status: "draft".into(),
        }];
        let _: usize = Invoice::insert_many(conn, rows).execute(conn).await?;
        let _: usize = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::status.to("void"))
            .execute(conn)
            .await?;
        let _: Invoice = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set((invoices::amount_cents.to(5), invoices::status.to("sent")))
            .get_result(conn)
            .await?;
        let _: Invoice = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::amount_cents.to(invoices::amount_cents + 1))
            .get_result(conn)
            .await?;
        // a literal SQL fragment as the value
        let _: usize = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::number.to(tenantry::sql!(diesel::sql_types::Text, "upper(number)")))
            .execute(conn)
            .await?;
        // a value from a scoped subquery of the same transaction
        let first_name = Project::scoped(conn)
            .select(projects::name)
            .order(projects::name)
            .single_value();
        let _: usize = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::status.to(first_name.assume_not_null()))
            .execute(conn)
            .await?;
        let patch = PatchInvoice {
            id,
            status: Some("paid".into()),
            amount: None,
        };
        let _: Invoice = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(&patch)
            .get_result(conn)
            .await?;
        let _: Invoice = diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(patch)
            .get_result(conn)
            .await?;
        let upsert = NewInvoice {
            project_id: project,
            number: "1".into(),
            amount_cents: 1,
            currency: "EUR".into(),
            status: "draft".into(),
        };
        let _: Invoice = Invoice::insert(conn, upsert.clone())
            .on_conflict((invoices::tenant_id, invoices::number))
            .do_update()
            .set((
                invoices::amount_cents.to(tenantry::excluded(invoices::amount_cents)),
                invoices::status.to("sent"),
            ))
            .get_result(conn)
            .await?;
        let _: usize = Invoice::insert(conn, upsert)
            .on_conflict((invoices::tenant_id, invoices::number))
            .do_nothing()
            .execute(conn)
            .await?;
        let _: usize = diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

#[allow(dead_code)]
async fn viewer(db: &Db, ctx: &TenantCtx<'_, ReadOnly>) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| {
        Ok(Invoice::scoped(conn).load(conn).await?)
    })
    .await
}

#[derive(Debug)]
#[allow(dead_code)]
enum JobError {
    Db(DbError),
    Scope(tenantry::ScopeError),
}
impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::Db(e)
    }
}
impl From<tenantry::ScopeError> for JobError {
    fn from(e: tenantry::ScopeError) -> Self {
        JobError::Scope(e)
    }
}
impl From<diesel::result::Error> for JobError {
    fn from(e: diesel::result::Error) -> Self {
        JobError::Db(e.into())
    }
}

/// The task that owns the `Jobs` capability: jobs inside a tenant (read-write or read-only), a
/// raw statement with a job's bypass, and a cross-tenant bypass.
#[allow(dead_code)]
#[allow(
    clippy::disallowed_methods,
    reason = "raw SQL under a job's audited bypass: one of the forms this case proves compiles"
)]
async fn job_runner(db: Db, jobs: Jobs, tenant: uuid::Uuid) -> Result<i64, JobError> {
    let job = jobs.job("reminders");
    let _: usize = job
        .tx(tenant, "send reminders", async |conn| {
            let v: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
            let _: Vec<Count> = conn
                .raw_load(
                    no_tenant_scope!(&job, "count under RLS"),
                    diesel::sql_query("SELECT count(*) AS n FROM invoices"),
                )
                .await?;
            Ok::<_, JobError>(v.len())
        })
        .await?;
    let _: usize = job
        .read_only_tx(tenant, "export", async |conn| {
            Ok::<_, JobError>(Invoice::scoped(conn).load::<Invoice>(conn).await?.len())
        })
        .await?;
    let n = db
        .bypass(
            no_tenant_scope!(&job, "monthly report across tenants").action("report"),
            async |conn: &mut BypassConn<'_>| {
                Ok::<_, JobError>(conn.get_result(invoices::table.count()).await?)
            },
        )
        .await?;
    Ok(n)
}

/// `main` makes the capability once and hands it to a spawned job runner (so it is `Send`).
#[allow(dead_code)]
async fn start(config: tenantry::DbConfig, tenant: uuid::Uuid) -> Result<Db, DbError> {
    let (db, jobs) = Db::connect_with_jobs(config).await?;
    tokio::spawn(job_runner(db.clone(), jobs, tenant));
    Ok(db)
}

/// The tenant transaction's future is `Send`, so it can run inside axum handlers and spawned tasks.
#[allow(dead_code)]
fn futures_are_send(
    db: &'static Db,
    ctx: &'static TenantCtx<'static>,
    id: uuid::Uuid,
    p: uuid::Uuid,
) {
    fn is_send<T: Send>(_: T) {}
    is_send(reads(db, ctx, id));
    is_send(writes(db, ctx, id, p));
}

/// The prelude's run methods apply to queries only: `Vec::first`, `Option` and your own types
/// keep their methods.
#[allow(dead_code)]
#[allow(clippy::useless_vec, reason = "the case is a `Vec`'s own `first`")]
fn other_types_keep_their_methods() {
    struct Cache;
    impl Cache {
        fn load(&self, _key: &str) -> Option<u8> {
            None
        }
    }
    let v = vec![1, 2, 3];
    let _: Option<&i32> = v.first();
    let _: Option<u8> = Cache.load("k");
    let words = ["a", "b"];
    let _: Option<&&str> = words.first();
}
