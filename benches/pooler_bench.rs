//! What running behind a transaction pooler costs, measured in one run against a baseline of the
//! same run.
//!
//! `cargo bench --bench pooler_bench` (needs the integration tests' PostgreSQL and the
//! `pgbouncer` binary: `bash .ci/pgbouncer start` installs it). The bench starts a PgBouncer
//! of its own (transaction mode, 8 server connections) in front of a scratch database.
//!
//! Three ways to reach the database, each running the same tenant transactions through `Db::tx`:
//!
//! - **direct, cached** (`TENANTRY_DB_POOLER=direct`, the default): straight to PostgreSQL, each
//!   connection caching its prepared statements: the baseline;
//! - **direct, no cache** (`TENANTRY_DB_POOLER=transaction` straight to PostgreSQL): what the
//!   setting itself costs (each statement prepared, run and closed in its transaction, the
//!   session timeouts set per transaction);
//! - **PgBouncer, no cache** (`TENANTRY_DB_POOLER=transaction` through PgBouncer): the scale-out
//!   deployment, adding the pooler's hop.
//!
//! Two transactions: one point select by primary key, and a "read request" of three statements
//! (a point select, a count and a page of 20 rows). Each with 1 client and with 8 clients (tenant
//! pools of 8). Besides throughput and latency, the CPU time per operation of this process, of
//! the PostgreSQL backends and of PgBouncer (`/proc/<pid>/schedstat`). Results: BENCHMARKS.md.
//! Prints tables; asserts nothing about time.
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::schema::{invoices, Invoice};
use common::{Route, TestDb};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::pooler::Pooler;
use tenantry::prelude::*;
use tenantry::testing::PgBouncer;
use tenantry::{Db, DbConfig, DbError};
use uuid::Uuid;

use measure::{closed_loop, loadavg, per_op, schedstat, secs, server_cpu, us};

const INVOICES: usize = 2_000;
const CLIENTS: usize = 8;
const ROUNDS: usize = 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Work {
    /// One point select by primary key.
    Point,
    /// A point select, a count and a page of 20 rows.
    Request,
}

struct Way {
    label: &'static str,
    db: Db,
}

async fn one_op(db: &Db, ctx: &TenantCtx<'_>, work: Work, id: Uuid) {
    let found = db
        .tx(ctx, async |conn| {
            let row: Invoice = Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first(conn)
                .await?;
            if work == Work::Request {
                let n: i64 = Invoice::scoped(conn)
                    .filter(invoices::status.eq("sent"))
                    .count()
                    .get_result(conn)
                    .await?;
                let page: Vec<Invoice> = Invoice::scoped(conn)
                    .filter(invoices::amount_cents.gt(row.amount_cents))
                    .order(invoices::amount_cents.asc())
                    .limit(20)
                    .load(conn)
                    .await?;
                std::hint::black_box((n, page));
            }
            Ok::<_, DbError>(row)
        })
        .await
        .expect("tenant transaction");
    assert_eq!(found.id, id);
}

#[derive(Default)]
struct Stats {
    ops: usize,
    elapsed: Duration,
    lat_ns: Vec<u64>,
    client_cpu: Duration,
    server_cpu: Duration,
    bouncer_cpu: Duration,
}

impl Stats {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
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

struct Bench {
    ctx: TenantCtx<'static>,
    ids: Vec<Uuid>,
    bouncer_pid: Option<u32>,
    admin: tokio::sync::Mutex<AsyncPgConnection>,
}

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

fn bouncer_cpu(pid: Option<u32>) -> Duration {
    pid.map(|p| schedstat(std::path::Path::new(&format!("/proc/{p}/schedstat"))))
        .unwrap_or_default()
}

#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark's setup and reference queries, raw SQL on purpose"
)]
async fn backend_pids(admin: &tokio::sync::Mutex<AsyncPgConnection>) -> Vec<i32> {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let mut admin = admin.lock().await;
    let query = diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    diesel_async::RunQueryDsl::load::<Pid>(query, &mut *admin)
        .await
        .expect("pg_stat_activity")
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// Runs `work` on `db` with `clients` tasks for `dur`, adding to `stats`.
async fn run(
    b: &Arc<Bench>,
    db: &Db,
    work: Work,
    clients: usize,
    dur: Duration,
    stats: &mut Stats,
) {
    let backends = backend_pids(&b.admin).await;
    let (c0, s0, p0) = (
        client_cpu(),
        server_cpu(&backends),
        bouncer_cpu(b.bouncer_pid),
    );
    let start = Instant::now();
    let deadline = start + dur;
    let state = (Arc::clone(b), db.clone());
    let lat = closed_loop(clients, deadline, state, move |(b, db), c, k| async move {
        let id = b.ids[(c * 7919 + k) % b.ids.len()];
        one_op(&db, &b.ctx, work, id).await;
    })
    .await;
    stats.ops += lat.len();
    stats.lat_ns.extend(lat);
    stats.elapsed += start.elapsed();
    stats.client_cpu += client_cpu().saturating_sub(c0);
    stats.server_cpu += server_cpu(&backends).saturating_sub(s0);
    stats.bouncer_cpu += bouncer_cpu(b.bouncer_pid).saturating_sub(p0);
}

/// Rotated rounds of every way; returns their stats in order.
async fn compare(b: &Arc<Bench>, ways: &[Way], work: Work, clients: usize) -> Vec<Stats> {
    for w in ways {
        run(b, &w.db, work, CLIENTS, secs(0.3), &mut Stats::default()).await;
    }
    let round = secs(0.35);
    let mut stats: Vec<Stats> = ways.iter().map(|_| Stats::default()).collect();
    for r in 0..ROUNDS {
        for i in 0..ways.len() {
            let j = (i + r) % ways.len();
            run(b, &ways[j].db, work, clients, round, &mut stats[j]).await;
        }
    }
    stats
}

fn print_table(title: &str, ways: &[Way], stats: &mut [Stats]) {
    let base_ops = stats[0].ops_per_sec();
    let base_p50 = stats[0].pct(0.50);
    println!("\n{title}");
    println!(
        "| {:<40} | {:>7} | {:>6} | {:>9} | {:>7} | {:>8} | {:>7} | {:>7} | {:>7} |",
        "way", "ops/s", "ratio", "p50 ratio", "p50 µs", "p99 µs", "cli CPU", "srv CPU", "pgb CPU"
    );
    println!(
        "|{:-<42}|{:->9}|{:->8}|{:->11}|{:->9}|{:->10}|{:->9}|{:->9}|{:->9}|",
        "", "", "", "", "", "", "", "", ""
    );
    for (w, s) in ways.iter().zip(stats.iter_mut()) {
        let ops = s.ops_per_sec();
        let (p50, p99) = (s.pct(0.50), s.pct(0.99));
        println!(
            "| {:<40} | {:>7.0} | {:>6.3} | {:>9.3} | {:>7} | {:>8} | {:>7} | {:>7} | {:>7} |",
            w.label,
            ops,
            ops / base_ops,
            base_p50.as_secs_f64() / p50.as_secs_f64(),
            us(p50),
            us(p99),
            per_op(s.client_cpu, s.ops),
            per_op(s.server_cpu, s.ops),
            per_op(s.bouncer_cpu, s.ops),
        );
    }
}

async fn connect(url: String, pooler: Pooler) -> Db {
    let mut config = DbConfig::new(url, None);
    config.pooler = pooler;
    config.max_connections = CLIENTS;
    Db::connect(config).await.expect("pools")
}

#[tokio::main]
async fn main() {
    let t0 = Instant::now();
    let t = TestDb::through(Route::Direct, CLIENTS).await;
    let acme = t.tenant("acme").await;
    let mut admin = t.admin().await;
    admin
        .batch_execute(&format!(
            "WITH p AS (INSERT INTO projects (tenant_id, name) VALUES ('{acme}', 'bench') RETURNING id)
             INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
             SELECT '{acme}', p.id, 'INV-' || g, (g * 7919) % 100000, 'EUR',
                    CASE WHEN g % 3 = 0 THEN 'sent' ELSE 'draft' END
             FROM p, generate_series(1, {INVOICES}) g"
        ))
        .await
        .expect("seed");
    admin
        .batch_execute("VACUUM ANALYZE invoices")
        .await
        .expect("vacuum analyze");
    let bouncer = PgBouncer::start_own(&t.name, CLIENTS).await;
    let ways = [
        Way {
            label: "direct, statement cache (pooler=direct)",
            db: connect(t.app_url(), Pooler::Direct).await,
        },
        Way {
            label: "direct, no cache (pooler=transaction)",
            db: connect(t.app_url(), Pooler::Transaction).await,
        },
        Way {
            label: "PgBouncer, no cache (pooler=transaction)",
            db: connect(
                bouncer.url(PgBouncer::OWN_DATABASE, "tenantry_app"),
                Pooler::Transaction,
            )
            .await,
        },
    ];
    let ctx = common::ctx(acme);
    let mut ids: Vec<Uuid> =
        t.db.tx(&ctx, async |conn| {
            Ok::<_, DbError>(
                Invoice::scoped(conn)
                    .select(invoices::id)
                    .load::<Uuid>(conn)
                    .await?,
            )
        })
        .await
        .expect("ids");
    ids.sort_by_key(|id| id.as_u128().wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = Arc::new(Bench {
        ctx,
        ids,
        bouncer_pid: bouncer.pid(),
        admin: tokio::sync::Mutex::new(admin),
    });

    println!(
        "pooler bench: {} cores, tokio {} workers, PgBouncer pool of {CLIENTS} server connections",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    println!("load average at the start: {}", loadavg());
    println!(
        "columns: ratio = ops/s / first row's; p50 ratio = first row's p50 / p50; cli / srv / pgb \
         CPU = µs of CPU per transaction of this process / the PostgreSQL backends / PgBouncer"
    );
    for (work, what) in [
        (Work::Point, "one point select"),
        (Work::Request, "point select + count + page of 20"),
    ] {
        for clients in [1, CLIENTS] {
            let mut stats = compare(&b, &ways, work, clients).await;
            print_table(
                &format!(
                    "tenant transaction of {what}, {clients} client(s), pools of {CLIENTS}, {ROUNDS} rotated rounds"
                ),
                &ways,
                &mut stats,
            );
        }
    }
    println!("load average at the end: {}", loadavg());
    println!("\ntotal bench time {:.1} s", t0.elapsed().as_secs_f64());
}
