//! The cost of TLS per request: `Db::query` point selects over plain TCP (`sslmode=disable`)
//! and over TLS (`sslmode=require`, rustls on ring) to the same server and database, rounds
//! alternating, sequentially and with 8 clients; and the cost of opening a connection each way.
//!
//! `cargo bench --bench tls_bench` (needs the test PostgreSQL with `ssl = on`, as Debian's
//! default cluster is; `TENANTRY_TEST_DATABASE_URL` as for the tests). Results: BENCHMARKS.md.
//! Prints tables; asserts nothing about time.
#![allow(missing_docs, unreachable_pub, dead_code)]

#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::schema::{invoices, Invoice};
use common::TestDb;
use measure::{closed_loop, loadavg, secs, us};
use tenantry::prelude::*;
use tenantry::{Actor, DbConfig};
use uuid::Uuid;

const ROUNDS: usize = 6;
const CLIENTS: usize = 8;
const CONNECTS: usize = 200;

struct Side {
    name: &'static str,
    db: Db,
}

async fn point_select(db: &Db, tenant: Uuid, id: Uuid) {
    let ctx: TenantCtx<'_, ReadOnly> = TenantCtx::for_test(tenant, Actor::job("bench"));
    let found: Option<Invoice> = db
        .query(&ctx, |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first(conn)
                .optional()
        })
        .await
        .expect("point select");
    assert!(found.is_some());
}

fn pct(lat: &mut [u64], p: f64) -> Duration {
    lat.sort_unstable();
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(lat.get(i).copied().unwrap_or(0))
}

#[allow(
    clippy::disallowed_methods,
    reason = "a literal probe of the seeded ids as the superuser"
)]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let t = TestDb::new().await;
    let tenant = t.tenant("tls-bench").await;
    t.seed(tenant, "p", 200).await;
    let ids: Vec<Uuid> = {
        let mut admin = t.admin().await;
        diesel_async::RunQueryDsl::load::<common::IdRow>(
            diesel::sql_query("SELECT id FROM invoices"),
            &mut admin,
        )
        .await
        .expect("ids")
        .into_iter()
        .map(|r| r.id)
        .collect()
    };
    let url = |mode: &str| format!("{}?sslmode={mode}", t.app_url());
    let mut sides = Vec::new();
    for (name, mode) in [("plain TCP", "disable"), ("TLS", "require")] {
        let mut config = DbConfig::new(url(mode), None);
        config.max_connections = CLIENTS;
        let db = Db::connect(config).await.unwrap_or_else(|e| {
            panic!("{name}: {e} (the bench needs the test server with ssl = on)")
        });
        sides.push(Side { name, db });
    }
    println!("load before: {}", loadavg());

    for clients in [1, CLIENTS] {
        let mut lat: Vec<Vec<u64>> = vec![Vec::new(); sides.len()];
        let mut time = vec![Duration::ZERO; sides.len()];
        for round in 0..ROUNDS {
            for k in 0..sides.len() {
                // Rotate who goes first, so drift of the machine falls on both.
                let i = (k + round) % sides.len();
                let db = Arc::new(sides[i].db.clone());
                let ids = Arc::new(ids.clone());
                let start = Instant::now();
                let deadline = start + secs(1.0);
                let mut l = closed_loop(
                    clients,
                    deadline,
                    (db, ids),
                    move |(db, ids), c, n| async move {
                        let id = ids[(c * 7919 + n) % ids.len()];
                        point_select(&db, tenant, id).await
                    },
                )
                .await;
                time[i] += start.elapsed();
                lat[i].append(&mut l);
            }
        }
        println!("\n{clients} client(s), Db::query point select, {ROUNDS} rounds of 1 s each");
        println!("| path | req/s | mean µs | p99 µs | vs plain |");
        println!("|---|---|---|---|---|");
        let rates: Vec<f64> = (0..sides.len())
            .map(|i| lat[i].len() as f64 / time[i].as_secs_f64())
            .collect();
        let rate = |i: usize| rates[i];
        let base = rate(0);
        for i in 0..sides.len() {
            let n = lat[i].len() as u64;
            let mean = Duration::from_nanos(lat[i].iter().sum::<u64>() / n.max(1));
            let p99 = pct(&mut lat[i], 0.99);
            println!(
                "| {} | {:.0} | {} | {} | {:.2} |",
                sides[i].name,
                rate(i),
                us(mean),
                us(p99),
                rate(i) / base
            );
        }
    }

    println!("\nopening a connection (tenantry::tls::establish), {CONNECTS} each, alternating");
    let mut setup = [Duration::ZERO; 2];
    for n in 0..CONNECTS {
        for k in 0..2 {
            let i = (k + n) % 2;
            let mode = ["disable", "require"][i];
            let start = Instant::now();
            let conn = tenantry::tls::establish(&url(mode)).await.expect("connect");
            setup[i] += start.elapsed();
            drop(conn);
        }
    }
    println!("| path | mean ms per connection |");
    println!("|---|---|");
    for (i, name) in ["plain TCP", "TLS"].iter().enumerate() {
        println!(
            "| {name} | {:.2} |",
            setup[i].as_secs_f64() * 1e3 / CONNECTS as f64
        );
    }
    println!("load after: {}", loadavg());
}
