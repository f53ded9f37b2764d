//! Overhead of tenantry against plain Diesel, measured in one run against baselines of the same run.
//!
//! `cargo bench --bench tenantry_bench` (needs the PostgreSQL of the integration tests; set
//! `TENANTRY_TEST_DATABASE_URL` to a superuser URL if it is not `postgres://postgres@127.0.0.1:5432`).
//!
//! - (a) the compile-time layer: a scoped query vs. the same hand-written Diesel query, both on one
//!   connection inside an open tenant transaction, alternating query by query;
//! - (b) a whole one-query tenant transaction (`Db::query`, one round trip, and `Db::tx`, two) vs.
//!   an autocommit point select on a pool, and vs. the naive `BEGIN; set_config; SELECT; COMMIT`,
//!   sequentially and with 8 clients;
//! - (c) the row-level-security predicate: the autocommit point select as `tenantry_app` vs. as
//!   `tenantry_bypass` (which bypasses RLS);
//! - (s) the tenant seal: `Db::query` (the entry, the statement and the assertion in one implicit
//!   transaction) vs. the protocol tenantry used before the seal, by hand (`BEGIN; SET LOCAL
//!   app.tenant_id`, the select and `COMMIT`, pipelined), on a copy of the table whose policy
//!   reads that setting; and a scoped scan of 10,000 rows under each policy and under none;
//! - (x) with `TENANTRY_BENCH_EXPERIMENTS=1`: `Db::tx` vs. the pre-seal protocols by hand with
//!   either tenant prelude (`SELECT set_config` or `SET LOCAL`).
//!
//! The protocols by hand (naive, pipelined, one round trip, autocommit) run against the schema
//! `baseline`: a copy of `invoices` whose policy is the one tenantry had before the seal
//! (`tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid`), which a setting can
//! satisfy. tenantry's own variants run against the sealed table.
//!
//! Besides throughput and latency, each table gives the CPU time per operation of this process
//! and of the PostgreSQL backends (`/proc/<pid>/schedstat`). Results: BENCHMARKS.md.
//! Prints tables; asserts nothing about time.
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::pg::Pg;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use tenantry::{Db, TenantCtx};
use uuid::Uuid;

use common::schema::{invoices, Invoice};
use common::TestDb;
use measure::{closed_loop, loadavg, per_op, schedstat, secs, server_cpu, us};

type PgPool = Pool<AsyncPgConnection>;

/// Invoices per tenant.
const INVOICES: usize = 2_000;
/// Invoices of the tenant scanned in (s).
const BIG: usize = 10_000;
/// Queries per side in (a).
const LAYER_QUERIES: usize = 5_000;
/// Rotated rounds per variant in (b) and (c): short rounds, so that noise of the machine
/// falls on all variants alike.
const ROUNDS: usize = 10;
/// Clients of the concurrent runs (and pool size).
const CLIENTS: usize = 8;

/// Scoped side: only tenantry's run methods are in scope here.
mod scoped_side {
    use super::*;
    use tenantry::prelude::*;
    use tenantry::DbError;

    pub async fn page(conn: &mut TenantConn<'_>) -> QueryResult<Vec<Invoice>> {
        Invoice::scoped(conn)
            .filter(invoices::amount_cents.gt(100))
            .order(invoices::id.desc())
            .limit(50)
            .load::<Invoice>(conn)
            .await
    }

    /// The query `page` runs, for `debug_query`.
    pub fn page_sql(conn: &TenantConn<'_>) -> String {
        let q = Invoice::scoped(conn)
            .filter(invoices::amount_cents.gt(100))
            .order(invoices::id.desc())
            .limit(50)
            .subquery();
        diesel::debug_query::<Pg, _>(&q).to_string()
    }

    /// One tenant transaction with one point select.
    pub async fn point_tx(db: &Db, ctx: &TenantCtx<'_>, id: Uuid) -> Result<Invoice, DbError> {
        db.tx(ctx, async |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first::<Invoice>(conn)
                .await
                .map_err(DbError::from)
        })
        .await
    }

    /// One point select with `Db::query`: `BEGIN; SET LOCAL`, the select and `COMMIT` in one
    /// round trip.
    pub async fn point_query(db: &Db, ctx: &TenantCtx<'_>, id: Uuid) -> Result<Invoice, DbError> {
        db.query(ctx, |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first::<Invoice>(conn)
        })
        .await
    }

    /// (s): the tenant's rows counted in one statement.
    pub async fn count_query(db: &Db, ctx: &TenantCtx<'_>) -> Result<i64, DbError> {
        db.query(ctx, |conn| {
            Invoice::scoped(conn).count().get_result::<i64>(conn)
        })
        .await
    }

    /// (a): inside one tenant transaction, the scoped query and the hand-written one on `plain`
    /// (a connection in its own tenant transaction), alternating query by query (ABBA ABBA ..)
    /// so that any noise of the machine falls on both sides alike.
    pub async fn layer(
        db: &Db,
        ctx: &TenantCtx<'_>,
        plain: &mut AsyncPgConnection,
    ) -> Result<[Stats; 2], DbError> {
        let tenant = ctx.tenant_id();
        db.tx(ctx, async |conn| {
            // Warm-up: prepared statements, caches, and a check that both return the same rows.
            for _ in 0..200 {
                page(conn).await?;
                super::plain_side::page(plain, tenant).await?;
            }
            let a = page(conn).await?;
            let b = super::plain_side::page(plain, tenant).await?;
            assert_eq!(a.len(), 50);
            assert_eq!(a, b, "scoped and hand-written queries return the same rows");

            let mut stats = [Stats::default(), Stats::default()];
            for i in 0..2 * LAYER_QUERIES {
                let side = (i + i / 2) % 2; // 0 1 1 0 0 1 1 0 ..
                let t0 = Instant::now();
                let rows = if side == 0 {
                    page(conn).await?
                } else {
                    super::plain_side::page(plain, tenant).await?
                };
                let dt = t0.elapsed();
                std::hint::black_box(rows);
                stats[side].record(dt);
            }
            Ok::<_, DbError>(stats)
        })
        .await
    }
}

/// Plain Diesel side: `diesel_async::RunQueryDsl`, no tenantry.
mod plain_side {
    use super::*;
    use diesel::prelude::*;
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;

    pub async fn page(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<Vec<Invoice>> {
        invoices::table
            .filter(invoices::tenant_id.eq(tenant))
            .filter(invoices::amount_cents.gt(100))
            .order(invoices::id.desc())
            .limit(50)
            .load::<Invoice>(conn)
            .await
    }

    pub fn page_sql(tenant: Uuid) -> String {
        let q = invoices::table
            .filter(invoices::tenant_id.eq(tenant))
            .filter(invoices::amount_cents.gt(100))
            .order(invoices::id.desc())
            .limit(50);
        diesel::debug_query::<Pg, _>(&q).to_string()
    }

    /// Opens a tenant transaction by hand, as a plain Diesel user would.
    #[allow(
        clippy::disallowed_methods,
        reason = "the reference protocol without tenantry: the tenant setting sent through sql_query"
    )]
    pub async fn begin_tenant(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<()> {
        conn.batch_execute("BEGIN").await?;
        diesel::sql_query("SELECT set_config('app.tenant_id', $1, true)")
            .bind::<Text, _>(tenant.to_string())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Autocommit point select by primary key.
    pub async fn point(pool: &PgPool, id: Uuid) -> QueryResult<Invoice> {
        let mut conn = pool.get().await.expect("pool");
        invoices::table.find(id).first::<Invoice>(&mut *conn).await
    }

    /// `Db::tx`'s protocol by hand: `prelude` pipelined with the select, then `COMMIT`.
    pub async fn pipelined_tx(
        pool: &PgPool,
        set_local: bool,
        tenant: Uuid,
        id: Uuid,
    ) -> QueryResult<Invoice> {
        let conn = pool.get().await.expect("pool");
        let c: &AsyncPgConnection = &conn;
        let prelude = if set_local {
            format!("BEGIN; SET LOCAL app.tenant_id = '{tenant}'")
        } else {
            format!("BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)")
        };
        let (mut p, mut q, mut e) = (c, c, c);
        let (begun, row) = futures_util::future::join(
            p.batch_execute(&prelude),
            invoices::table.find(id).first::<Invoice>(&mut q),
        )
        .await;
        begun?;
        let row = row?;
        e.batch_execute("COMMIT").await?;
        Ok(row)
    }

    /// Experiment: what a single-query tenant transaction could cost if the query were known up
    /// front: `BEGIN; SET LOCAL`, the select and `COMMIT`, all three pipelined (one round trip).
    /// Only correct when the select's prepared statement is cached (else its `Parse` would go
    /// out first and `COMMIT` would overtake it): the warm-up of `pipelined_tx` sees to that.
    pub async fn one_rtt_tx(pool: &PgPool, tenant: Uuid, id: Uuid) -> QueryResult<Invoice> {
        let conn = pool.get().await.expect("pool");
        let c: &AsyncPgConnection = &conn;
        let prelude = format!("BEGIN; SET LOCAL app.tenant_id = '{tenant}'");
        let (mut p, mut q, mut e) = (c, c, c);
        let (begun, row, committed) = futures_util::future::join3(
            p.batch_execute(&prelude),
            invoices::table.find(id).first::<Invoice>(&mut q),
            e.batch_execute("COMMIT"),
        )
        .await;
        begun?;
        committed?;
        row
    }

    /// (s): the pre-seal protocol by hand around `count(*)`: the prelude pipelined with the
    /// count, then `COMMIT` (the scan's cost is what is compared, not round trips).
    pub async fn count_tx(pool: &PgPool, tenant: Uuid) -> QueryResult<i64> {
        let conn = pool.get().await.expect("pool");
        let c: &AsyncPgConnection = &conn;
        let prelude = format!("BEGIN READ ONLY; SET LOCAL app.tenant_id = '{tenant}'");
        let (mut p, mut q, mut e) = (c, c, c);
        let (begun, n) = futures_util::future::join(
            p.batch_execute(&prelude),
            invoices::table
                .filter(invoices::tenant_id.eq(tenant))
                .count()
                .get_result::<i64>(&mut q),
        )
        .await;
        begun?;
        e.batch_execute("COMMIT").await?;
        n
    }

    /// (s): `count(*)` as the bypass role (no row-level security), the tenant filtered by hand.
    pub async fn count_bypass(pool: &PgPool, tenant: Uuid) -> QueryResult<i64> {
        let mut conn = pool.get().await.expect("pool");
        invoices::table
            .filter(invoices::tenant_id.eq(tenant))
            .count()
            .get_result::<i64>(&mut *conn)
            .await
    }

    /// The naive tenant transaction: four awaited round trips.
    pub async fn naive_tx(pool: &PgPool, tenant: Uuid, id: Uuid) -> QueryResult<Invoice> {
        let mut conn = pool.get().await.expect("pool");
        begin_tenant(&mut conn, tenant).await?;
        match invoices::table.find(id).first::<Invoice>(&mut *conn).await {
            Ok(row) => {
                conn.batch_execute("COMMIT").await?;
                Ok(row)
            }
            Err(e) => {
                conn.batch_execute("ROLLBACK").await?;
                Err(e)
            }
        }
    }
}

/// A pool like tenantry's (deadpool, `RecyclingMethod::Fast`), optionally with a session-level
/// `app.tenant_id` on each connection (so that autocommit selects see the tenant's rows).
/// `url` with the search path of the pre-seal baseline: `baseline.invoices` (the setting's
/// policy) before `public`.
fn baseline(url: &str) -> String {
    format!("{url}?options=-c%20search_path%3Dbaseline%2Cpublic")
}

fn plain_pool(url: &str, size: usize, session_tenant: Option<Uuid>) -> PgPool {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    if let Some(tenant) = session_tenant {
        config.custom_setup = Box::new(move |url| {
            let url = url.to_owned();
            async move {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                conn.batch_execute(&format!("SET app.tenant_id = '{tenant}'"))
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
    }
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager).max_size(size).build().expect("pool")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// `Db::query` with one scoped point select.
    Query,
    /// `Db::tx` with one scoped point select.
    Tenantry,
    /// Autocommit point select as `tenantry_app` (RLS applies, tenant set per session).
    Autocommit,
    /// `BEGIN; set_config; SELECT; COMMIT`, each awaited.
    Naive,
    /// Autocommit point select as `tenantry_bypass` (RLS does not apply).
    Bypass,
    /// Experiment: `Db::tx`'s protocol by hand with `SELECT set_config(..)`.
    PipeSetConfig,
    /// Experiment: `Db::tx`'s protocol by hand with `SET LOCAL`.
    PipeSetLocal,
    /// Experiment: `BEGIN; SET LOCAL`, select and `COMMIT` pipelined in one round trip.
    PipeOneRtt,
    /// Experiment: the autocommit select on sessions with tenantry's session timeouts
    /// (`statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`).
    AutocommitTimeouts,
    /// (s) `count(*)` of a 10,000-row tenant with `Db::query`: the seal's policy.
    ScanSeal,
    /// (s) the same count by hand in a pre-seal transaction: the setting's policy.
    ScanSetting,
    /// (s) the same count as the bypass role, filtered by hand: no policy.
    ScanBypass,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Query => "tenantry Db::query (1 RTT)",
            Variant::Tenantry => "tenantry Db::tx (pipelined, 2 RTT)",
            Variant::Autocommit => "autocommit select, app role (1 RTT)",
            Variant::Naive => "naive BEGIN;set_config;SELECT;COMMIT (4 RTT)",
            Variant::Bypass => "autocommit select, bypass role, no RLS",
            Variant::PipeSetConfig => "by hand: BEGIN;SELECT set_config | SELECT",
            Variant::PipeSetLocal => "by hand: BEGIN;SET LOCAL | SELECT",
            Variant::PipeOneRtt => "1-RTT: BEGIN;SET LOCAL | SELECT | COMMIT",
            Variant::AutocommitTimeouts => "autocommit select, with tenantry's timeouts",
            Variant::ScanSeal => "count of 10,000 rows, Db::query (seal policy)",
            Variant::ScanSetting => "count of 10,000 rows, by hand (setting policy, pre-seal)",
            Variant::ScanBypass => "count of 10,000 rows, bypass role (no policy)",
        }
    }
}

struct State {
    db: Db,
    ctx: TenantCtx<'static>,
    tenant: Uuid,
    /// The 10,000-row tenant of (s) and its context.
    big: Uuid,
    big_ctx: TenantCtx<'static>,
    autocommit: PgPool,
    autocommit_timeouts: PgPool,
    naive: PgPool,
    bypass: PgPool,
    ids: Vec<Uuid>,
    /// Superuser connection of the CPU accounting (lists the server processes).
    admin: tokio::sync::Mutex<AsyncPgConnection>,
}

async fn one_op(s: &State, v: Variant, id: Uuid) {
    let scanned = match v {
        Variant::ScanSeal => Some(
            scoped_side::count_query(&s.db, &s.big_ctx)
                .await
                .expect("scan"),
        ),
        Variant::ScanSetting => Some(plain_side::count_tx(&s.naive, s.big).await.expect("scan")),
        Variant::ScanBypass => Some(
            plain_side::count_bypass(&s.bypass, s.big)
                .await
                .expect("scan"),
        ),
        _ => None,
    };
    if let Some(n) = scanned {
        assert_eq!(n, BIG as i64);
        return;
    }
    let row = match v {
        Variant::Query => scoped_side::point_query(&s.db, &s.ctx, id)
            .await
            .expect("one-statement tx"),
        Variant::Tenantry => scoped_side::point_tx(&s.db, &s.ctx, id)
            .await
            .expect("tenant tx"),
        Variant::Autocommit => plain_side::point(&s.autocommit, id)
            .await
            .expect("autocommit"),
        Variant::Naive => plain_side::naive_tx(&s.naive, s.tenant, id)
            .await
            .expect("naive tx"),
        Variant::Bypass => plain_side::point(&s.bypass, id).await.expect("bypass"),
        Variant::PipeSetConfig => plain_side::pipelined_tx(&s.naive, false, s.tenant, id)
            .await
            .expect("pipelined"),
        Variant::PipeSetLocal => plain_side::pipelined_tx(&s.naive, true, s.tenant, id)
            .await
            .expect("pipelined"),
        Variant::PipeOneRtt => plain_side::one_rtt_tx(&s.naive, s.tenant, id)
            .await
            .expect("one round trip"),
        Variant::AutocommitTimeouts => plain_side::point(&s.autocommit_timeouts, id)
            .await
            .expect("autocommit"),
        Variant::ScanSeal | Variant::ScanSetting | Variant::ScanBypass => unreachable!(),
    };
    assert_eq!(row.id, id);
    std::hint::black_box(row);
}

/// Operations, the wall time they took, and each one's latency.
#[derive(Default)]
pub struct Stats {
    ops: usize,
    elapsed: Duration,
    lat_ns: Vec<u64>,
    /// CPU time of this process (all threads) during the runs.
    client_cpu: Duration,
    /// CPU time of the PostgreSQL backends of the scratch database during the runs.
    server_cpu: Duration,
}

impl Stats {
    /// One sequential operation (its latency is also its share of the wall time).
    fn record(&mut self, d: Duration) {
        self.ops += 1;
        self.elapsed += d;
        self.lat_ns.push(d.as_nanos() as u64);
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Mean latency of the fastest `keep` share of the operations.
    fn trimmed_mean(&mut self, keep: f64) -> Duration {
        self.lat_ns.sort_unstable();
        let n = ((self.lat_ns.len() as f64 * keep) as usize).max(1);
        let sum: u64 = self.lat_ns[..n].iter().sum();
        Duration::from_nanos(sum / n as u64)
    }

    fn pct(&mut self, p: f64) -> Duration {
        if self.lat_ns.is_empty() {
            return Duration::ZERO;
        }
        self.lat_ns.sort_unstable();
        let i = ((self.lat_ns.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_nanos(self.lat_ns[i])
    }
}

/// Runs `v` on `clients` tasks for `dur`, adding to `stats`.
async fn run(state: &Arc<State>, v: Variant, clients: usize, dur: Duration, stats: &mut Stats) {
    let backends = backend_pids(&state.admin).await;
    let (client0, server0) = (client_cpu(), server_cpu(&backends));
    let start = Instant::now();
    let deadline = start + dur;
    let lat = closed_loop(
        clients,
        deadline,
        Arc::clone(state),
        move |state, c, k| async move {
            let id = state.ids[(c * 7919 + k) % state.ids.len()];
            one_op(&state, v, id).await;
        },
    )
    .await;
    stats.ops += lat.len();
    stats.lat_ns.extend(lat);
    stats.elapsed += start.elapsed();
    stats.client_cpu += client_cpu().saturating_sub(client0);
    stats.server_cpu += server_cpu(&backends).saturating_sub(server0);
}

/// CPU time of all threads of this process.
fn client_cpu() -> Duration {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .map(|t| schedstat(&t.path().join("schedstat")))
                .sum()
        })
        .unwrap_or_default()
}

/// The backends connected to the scratch database (other than the accounting one).
#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark's setup and reference queries, raw SQL on purpose"
)]
async fn backend_pids(admin: &tokio::sync::Mutex<AsyncPgConnection>) -> Vec<i32> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let mut admin = admin.lock().await;
    diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .load::<Pid>(&mut *admin)
    .await
    .expect("pg_stat_activity")
    .into_iter()
    .map(|p| p.pid)
    .collect()
}

/// Interleaved rounds of `variants`; returns their stats in order.
async fn compare(
    state: &Arc<State>,
    variants: &[Variant],
    clients: usize,
    round: Duration,
) -> Vec<Stats> {
    // Warm-up: every pool connection prepares its statements.
    for &v in variants {
        run(
            state,
            v,
            clients.max(CLIENTS),
            secs(0.25),
            &mut Stats::default(),
        )
        .await;
    }
    let mut stats: Vec<Stats> = variants.iter().map(|_| Stats::default()).collect();
    for r in 0..ROUNDS {
        // Rotate the order each round to spread drift over all variants.
        for i in 0..variants.len() {
            let j = (i + r) % variants.len();
            run(state, variants[j], clients, round, &mut stats[j]).await;
        }
    }
    stats
}

fn labelled(variants: &[Variant], stats: Vec<Stats>) -> Vec<(&'static str, Stats)> {
    variants.iter().map(|v| v.label()).zip(stats).collect()
}

/// Prints one table; `ratio` is ops/s against row `base`, `p50 ratio` is base p50 / row p50;
/// the CPU columns are CPU time per operation of this process and of the PostgreSQL backends.
fn print_table(title: &str, rows: &mut [(&str, Stats)], base: usize) {
    let base_ops = rows[base].1.ops_per_sec();
    let base_p50 = rows[base].1.pct(0.50);
    println!("\n{title}");
    println!(
        "| {:<44} | {:>7} | {:>6} | {:>9} | {:>7} | {:>8} | {:>7} | {:>7} | {:>6} |",
        "variant", "ops/s", "ratio", "p50 ratio", "p50 µs", "p99 µs", "cli CPU", "srv CPU", "ops"
    );
    println!(
        "|{:-<46}|{:->9}|{:->8}|{:->11}|{:->9}|{:->10}|{:->9}|{:->9}|{:->8}|",
        "", "", "", "", "", "", "", "", ""
    );
    for (label, s) in rows.iter_mut() {
        let ops = s.ops_per_sec();
        let (p50, p99) = (s.pct(0.50), s.pct(0.99));
        println!(
            "| {:<44} | {:>7.0} | {:>6.3} | {:>9.3} | {:>7} | {:>8} | {:>7} | {:>7} | {:>6} |",
            label,
            ops,
            ops / base_ops,
            base_p50.as_secs_f64() / p50.as_secs_f64(),
            us(p50),
            us(p99),
            per_op(s.client_cpu, s.ops),
            per_op(s.server_cpu, s.ops),
            s.ops,
        );
    }
}

/// Normalises a `debug_query` string for comparison: the SQL, and the binds sorted.
fn normalise(debug: &str) -> (String, Vec<String>) {
    let (sql, binds) = debug.split_once(" -- binds: ").unwrap_or((debug, ""));
    let binds = binds.trim().trim_start_matches('[').trim_end_matches(']');
    let mut binds: Vec<String> = binds.split(", ").map(str::to_owned).collect();
    binds.sort();
    (sql.to_owned(), binds)
}

async fn seed(t: &TestDb, tenants: &[Uuid], big: &[Uuid]) {
    let mut admin = t.admin().await;
    let sizes = tenants
        .iter()
        .map(|t| (t, INVOICES))
        .chain(big.iter().map(|t| (t, BIG)));
    for (n, (tenant, invoices)) in sizes.enumerate() {
        let sql = format!(
            "WITH p AS (INSERT INTO projects (tenant_id, name) VALUES ('{tenant}', 'bench') RETURNING id)
             INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
             SELECT '{tenant}', p.id, 'INV-' || g, (g * 7919 + {n}) % 100000, 'EUR', 'sent'
             FROM p, generate_series(1, {invoices}) g"
        );
        admin.batch_execute(&sql).await.expect("seed");
    }
    // The pre-seal baseline: a copy of `invoices` whose policy reads the setting.
    admin
        .batch_execute(
            "CREATE SCHEMA baseline;
             CREATE TABLE baseline.invoices (LIKE public.invoices INCLUDING ALL);
             INSERT INTO baseline.invoices SELECT * FROM public.invoices;
             ALTER TABLE baseline.invoices ENABLE ROW LEVEL SECURITY;
             ALTER TABLE baseline.invoices FORCE ROW LEVEL SECURITY;
             CREATE POLICY setting ON baseline.invoices
                 USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
                 WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
             GRANT USAGE ON SCHEMA baseline TO tenantry_app, tenantry_bypass;
             GRANT SELECT ON baseline.invoices TO tenantry_app, tenantry_bypass;",
        )
        .await
        .expect("the baseline table");
    for table in ["invoices", "projects", "baseline.invoices"] {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum analyze");
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark's setup and reference queries, raw SQL on purpose"
)]
async fn server_version(t: &TestDb) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let mut admin = t.admin().await;
    diesel::sql_query("SELECT current_setting('server_version') AS v")
        .get_result::<V>(&mut admin)
        .await
        .map(|r| r.v)
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main]
async fn main() {
    let t0 = Instant::now();
    let t = TestDb::with_pool_size(CLIENTS).await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    let big = t.tenant("big").await;
    seed(&t, &[acme, globex], &[big]).await;
    let ctx = common::ctx(acme);

    println!(
        "tenantry bench: PostgreSQL {} at {}, {} cores, tokio {} workers",
        server_version(&t).await,
        common::admin_url().split('@').nth(1).unwrap_or("?"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    println!("load average at the start: {}", loadavg());
    println!("seed: 2 tenants x {INVOICES} invoices");
    println!(
        "columns: ratio = ops/s / baseline ops/s; p50 ratio = baseline p50 / p50; \
         cli CPU / srv CPU = µs of CPU per op of this process / of the PostgreSQL backends"
    );

    // ---- (a) compile-time layer -------------------------------------------------------------
    let scoped_sql =
        t.db.tx(&ctx, async |conn| {
            Ok::<_, tenantry::DbError>(scoped_side::page_sql(conn))
        })
        .await
        .expect("render the scoped query");
    let plain_sql = plain_side::page_sql(acme);
    println!("\n(a) compile-time layer: SQL of the scoped query");
    println!("    {scoped_sql}");
    println!("    SQL of the hand-written Diesel query");
    println!("    {plain_sql}");
    let same = normalise(&scoped_sql) == normalise(&plain_sql);
    println!("    same SQL and binds (modulo bind order): {same}");
    assert!(same, "the scoped query must render the hand-written SQL");

    // The hand-written query runs on the same sealed table, in a transaction entered the way
    // tenantry enters one: only the query layer differs.
    let mut plain = t.app_conn().await;
    t.begin_tenant(&mut plain, acme)
        .await
        .expect("manual tenant tx");
    let [mut scoped, mut hand] = scoped_side::layer(&t.db, &ctx, &mut plain)
        .await
        .expect("layer");
    plain.batch_execute("COMMIT").await.expect("commit");
    let (hand_trim, scoped_trim) = (hand.trimmed_mean(0.99), scoped.trimmed_mean(0.99));
    print_table(
        &format!(
            "(a) {LAYER_QUERIES} queries per side (50 rows each), one connection each, alternating query by query (ABBA); ratio vs plain Diesel"
        ),
        &mut [
            ("plain Diesel, hand-written tenant filter", hand),
            ("tenantry Scoped on TenantConn (in Db::tx)", scoped),
        ],
        0,
    );
    println!(
        "    mean of the fastest 99% of each side (drops preemption outliers): plain {} µs, \
         tenantry {} µs; throughput ratio {:.3}",
        us(hand_trim),
        us(scoped_trim),
        hand_trim.as_secs_f64() / scoped_trim.as_secs_f64()
    );

    // ---- (b) whole tenant transaction, (c) RLS predicate ------------------------------------
    let ids = {
        let c = ctx.clone();
        let mut ids: Vec<Uuid> =
            t.db.tx(&c, async |conn| {
                Invoice::scoped(conn)
                    .select(invoices::id)
                    .load::<Uuid>(conn)
                    .await
                    .map_err(tenantry::DbError::from)
            })
            .await
            .expect("ids");
        // A fixed pseudo-random order, so that consecutive selects touch different pages.
        ids.sort_by_key(|id| id.as_u128().wrapping_mul(0x9e37_79b9_7f4a_7c15));
        ids
    };
    assert_eq!(ids.len(), INVOICES);
    let state = Arc::new(State {
        db: t.db.clone(),
        ctx: ctx.clone(),
        tenant: acme,
        big,
        big_ctx: common::ctx(big),
        autocommit: plain_pool(&baseline(&t.app_url()), CLIENTS, Some(acme)),
        // `Db`'s defaults (`DbConfig::new`), sent the way `Db` sends them: in the startup packet.
        autocommit_timeouts: plain_pool(
            &format!(
                "{}%20-c%20statement_timeout%3D5000%20-c%20lock_timeout%3D2000%20\
                 -c%20idle_in_transaction_session_timeout%3D10000",
                baseline(&t.app_url())
            ),
            CLIENTS,
            Some(acme),
        ),
        naive: plain_pool(&baseline(&t.app_url()), CLIENTS, None),
        bypass: plain_pool(&TestDb::bypass_url_of(&t.name), CLIENTS, None),
        ids,
        admin: tokio::sync::Mutex::new(t.admin().await),
    });

    let b = [
        Variant::Autocommit,
        Variant::Query,
        Variant::Tenantry,
        Variant::Naive,
    ];
    for (clients, round) in [(1, secs(0.3)), (CLIENTS, secs(0.45))] {
        let stats = compare(&state, &b, clients, round).await;
        print_table(
            &format!(
                "(b) point select by primary key, {clients} client(s), pool of {CLIENTS}, {ROUNDS} rotated rounds of {:.1} s; ratio = ops/s vs autocommit",
                round.as_secs_f64()
            ),
            &mut labelled(&b, stats),
            0,
        );
    }

    let c = [Variant::Bypass, Variant::Autocommit];
    for (clients, round) in [(1, secs(0.3)), (CLIENTS, secs(0.3))] {
        let stats = compare(&state, &c, clients, round).await;
        print_table(
            &format!(
                "(c) RLS predicate: autocommit point select, {clients} client(s); ratio = ops/s vs bypass role"
            ),
            &mut labelled(&c, stats),
            0,
        );
    }

    let d = [Variant::PipeOneRtt, Variant::Query];
    for (clients, round) in [(1, secs(0.4)), (CLIENTS, secs(0.45))] {
        let stats = compare(&state, &d, clients, round).await;
        print_table(
            &format!(
                "(s) the tenant seal: Db::query vs the pre-seal protocol by hand (BEGIN; SET LOCAL | SELECT | COMMIT, one round trip), {clients} client(s); ratio vs pre-seal"
            ),
            &mut labelled(&d, stats),
            0,
        );
    }
    let scans = [Variant::ScanSetting, Variant::ScanSeal, Variant::ScanBypass];
    let stats = compare(&state, &scans, 1, secs(0.4)).await;
    print_table(
        "(s) a scoped scan of 10,000 rows (count): seal policy vs setting policy vs none, 1 client; ratio vs the setting policy",
        &mut labelled(&scans, stats),
        0,
    );

    if std::env::var_os("TENANTRY_BENCH_EXPERIMENTS").is_some() {
        let e = [
            Variant::Tenantry,
            Variant::PipeSetConfig,
            Variant::PipeSetLocal,
            Variant::Query,
            Variant::PipeOneRtt,
            Variant::Autocommit,
            Variant::AutocommitTimeouts,
        ];
        for (clients, round) in [(1, secs(0.3)), (CLIENTS, secs(0.45))] {
            let stats = compare(&state, &e, clients, round).await;
            print_table(
                &format!(
                    "(x) experiment: Db::tx vs its protocol by hand with each prelude, {clients} client(s)"
                ),
                &mut labelled(&e, stats),
                0,
            );
        }
    }

    println!("load average at the end: {}", loadavg());
    println!("\ntotal bench time {:.1} s", t0.elapsed().as_secs_f64());
}
