//! Cost of authentication, measured in one run against baselines of the same run.
//!
//! `cargo bench --bench auth_bench` (needs the PostgreSQL of the integration tests; set
//! `TENANTRY_TEST_DATABASE_URL` to a superuser URL if it is not `postgres://postgres@127.0.0.1:5432`;
//! `TENANTRY_BENCH_SCALE=0.3` shortens every timed phase).
//!
//! - (d) token verification with cached keys (`auth/tokens.rs`): `CloudflareVerifier::verify` on a
//!   valid RS256 user token with the verified-token cache off (cold), on a cache miss and on a
//!   hit, on forged tokens (full RSA work, then refused) and on tokens refused by the pre-checks
//!   (bad `alg`, no `kid`), against ring's raw RSA check and jsonwebtoken on tenantry's ring
//!   provider with the same key;
//! - (e) the authentication step per request, over real HTTP on 127.0.0.1 (`auth/http.rs`): one
//!   handler that returns a constant, served without authentication, behind
//!   `CloudflareVerifier::authenticate` only (with the app's verifier, and with one whose cache is
//!   off), and behind `#[requires_role(ClientViewer)]` in `trusted_header` and in `cloudflare`
//!   mode (a real local certs server), the latter also on a `Db` without the principal cache,
//!   with 1 and 8 clients;
//! - (f) the database protocol traffic of each of those requests, counted by a PostgreSQL
//!   protocol-aware TCP proxy in front of the server (`support/pg_proxy.rs`; the same app on a
//!   second listener, its pool connected through the proxy); and, for the lookups of (g), the
//!   server's own count of transactions (`pg_stat_database.xact_commit`, on one connection with
//!   every other backend of the scratch database gone);
//! - (g) the principal lookup alone (`auth/lookup.rs`): `load_principal` with and without the
//!   principal cache vs. the same SQL through `sql_query` on a plain pool vs. the same query
//!   written with the DSL, whose prepared statement diesel caches.
//!
//! The measuring helpers shared by the bench binaries are in `support/`: run length and `/proc`
//! CPU time (`measure.rs`), statistics and the database watcher (`stats.rs`), the micro-benchmark
//! runner (`micro.rs`) and the counting proxy (`pg_proxy.rs`).
//!
//! The bench's HTTP server runs on its own tokio runtime (2 workers, threads `auth-srv`), so that
//! the CPU time of this process splits into server (the app) and client (the load generator).
//! Prints tables; asserts nothing about time. It does assert every response is 200, that
//! accepted and refused tokens are accepted and refused for the expected reason with the expected
//! identity, that cached tokens are not verified again (the verifiers count their signature
//! checks), that the key set was fetched exactly once, and that the protocol counts are
//! consistent.
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "auth/http.rs"]
mod http;
#[path = "auth/lookup.rs"]
mod lookup;
#[path = "support/measure.rs"]
mod measure;
#[path = "support/micro.rs"]
mod micro;
#[path = "support/pg_proxy.rs"]
mod pg_proxy;
#[path = "support/stats.rs"]
mod stats;
#[path = "auth/tokens.rs"]
mod tokens;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use diesel_async::SimpleAsyncConnection;
use tenantry::auth::cloudflare::{CloudflareConfig, CloudflareVerifier};
use tenantry::auth::Authenticator;
use tenantry::auth::Identity;
use tenantry::settings::Settings;
use tenantry::testing::{CertsServer, TestKey, TokenMinter};
use tenantry::{Db, DbConfig};

use common::TestDb;
use http::{compare, print_http, router, serve, Http, Route};
use lookup::{one_lookup, plain_pool, run_lookup, time_lookups, Dbs, Lookup};
use measure::{loadavg, secs};
use pg_proxy::{diff, print_traffic, start_proxy, Traffic, Wire};
use stats::Watcher;
use tokens::{token_verification, Verifiers};

/// Clients of the concurrent runs (and the app's pool size).
const CLIENTS: usize = 8;
/// Rotated rounds per variant: short rounds, so that noise of the machine falls on all alike.
const ROUNDS: usize = 10;
/// Requests per variant in the protocol count (f).
const COUNTED: u64 = 200;
const TEAM: &str = "bench.cloudflareaccess.com";
const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878d1a8ec4e3cbbdb6d7b1a3e1b8c0d9f2a";
const VIEWER: &str = "viewer@example.com";
const TENANT: &str = "acme";
/// What every handler returns.
const BODY: &str = "ok";
/// Name of the server runtime's threads (the CPU accounting splits on it).
const SERVER_THREADS: &str = "auth-srv";

// ---- settings, as an application reads them --------------------------------------------------

fn authenticator(vars: &[(&str, &str)]) -> Authenticator {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert("DATABASE_URL".into(), common::admin_url());
    map.insert("TENANTRY_BIND".into(), "127.0.0.1:0".into());
    for (k, v) in vars {
        map.insert((*k).into(), (*v).into());
    }
    let settings = Settings::from_map(&map).expect("settings");
    Authenticator::from_settings(&settings).expect("authenticator")
}

// ---- setup ------------------------------------------------------------------------------------

/// 1,000 other users (all `client_viewer` in acme, every other one also `partner` in globex) and
/// the bench's viewer (`client_viewer` in acme, `partner` in globex).
async fn seed(t: &TestDb) {
    let mut admin = t.admin().await;
    admin
        .batch_execute(&format!(
            "INSERT INTO tenantry.users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 1000) g;
             INSERT INTO tenantry.users (email) VALUES ('{VIEWER}');
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'client_viewer' FROM tenantry.users u, tenantry.tenants t WHERE t.slug = 'acme';
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'partner' FROM tenantry.users u, tenantry.tenants t
               WHERE t.slug = 'globex' AND (u.email = '{VIEWER}' OR right(split_part(u.email, '@', 1), 1) IN ('0', '2', '4', '6', '8'));"
        ))
        .await
        .expect("seed");
    for table in ["users", "memberships", "tenants"] {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum analyze");
    }
}

#[tokio::main]
async fn main() {
    let t0 = Instant::now();
    let t = TestDb::with_pool_size(1).await;
    t.tenant("acme").await;
    t.tenant("globex").await;
    seed(&t).await;
    let upstream = common::admin_url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the database URL")
        .to_owned();

    println!(
        "tenantry auth bench: PostgreSQL at {upstream}, {} cores; client runtime {} workers, server runtime 2 workers",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    println!("load average at the start: {}", loadavg());

    // The app's configuration, read from settings as an application reads them.
    let certs = CertsServer::start(&[&TestKey::A])
        .await
        .expect("certs server");
    let certs_url = certs.url();
    let cloudflare = Arc::new(authenticator(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        ("TENANTRY_CF_CERTS_URL", &certs_url),
    ]));
    let trusted = Arc::new(authenticator(&[
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ]));
    let Authenticator::Cloudflare(verifier) = &*cloudflare else {
        unreachable!("cloudflare mode")
    };
    let verifier = verifier.clone();
    // Two more verifiers of the same team and keys: the verified-token cache off, and on (the
    // default) but emptied before each call of (d)'s miss row.
    let with_capacity = |token_cache_capacity| {
        let config = CloudflareConfig {
            token_cache_capacity,
            ..CloudflareConfig::new(TEAM, AUD).expect("config")
        };
        CloudflareVerifier::new(config.with_certs_url(&certs_url).expect("certs url"))
            .expect("verifier")
    };
    let verifiers = Verifiers {
        app: verifier.clone(),
        cold: with_capacity(0),
        miss: with_capacity(verifier.config().token_cache_capacity),
    };
    for v in [&verifiers.app, &verifiers.cold, &verifiers.miss] {
        v.prefetch().await.expect("keys from the certs server");
    }
    let minter = TokenMinter::new(TEAM, AUD, &TestKey::A);

    // ---- (d) ----------------------------------------------------------------------------------
    token_verification(&verifiers, &minter);

    // ---- (e) ----------------------------------------------------------------------------------
    let checks_before_http = verifier.verification_count();
    // The app: its own runtime, its own pool (connections are made, and driven, on that runtime).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()
        .expect("server runtime");
    let app_url = TestDb::app_url_of(&t.name);
    let proxy_wire = Arc::new(Wire::new());
    let proxy = start_proxy(upstream.clone(), Arc::clone(&proxy_wire)).await;
    let counted_url = app_url.replace(&upstream, &proxy.to_string());
    let (addr, counted_addr) = {
        let (cloudflare, trusted) = (Arc::clone(&cloudflare), Arc::clone(&trusted));
        let cold = verifiers.cold.clone();
        let (app_url, counted_url) = (app_url.clone(), counted_url.clone());
        server_rt
            .spawn(async move {
                let pools = |url: &str, size: usize| {
                    let mut config = DbConfig::new(url, None);
                    config.max_connections = size;
                    // The directory listener connects directly, not through the counting proxy.
                    config.listen_url = Some(app_url.clone());
                    let cached = Db::connect(config.clone());
                    config.principal_cache_capacity = 0;
                    let uncached = Db::connect(config);
                    async move {
                        let (cached, uncached) = (cached.await, uncached.await);
                        (cached.expect("pool"), uncached.expect("pool"))
                    }
                };
                let (db, uncached) = pools(&app_url, CLIENTS).await;
                let addr = serve(router(&db, &uncached, &cloudflare, &trusted, &cold)).await;
                // The same app with one-connection pools through the counting proxy, for (f).
                let (counted, counted_uncached) = pools(&counted_url, 1).await;
                let counted_addr = serve(router(
                    &counted,
                    &counted_uncached,
                    &cloudflare,
                    &trusted,
                    &cold,
                ))
                .await;
                (addr, counted_addr)
            })
            .await
            .expect("server start")
    };
    let mut headers = HeaderMap::new();
    let token = minter.user(VIEWER).sign();
    headers.insert(
        "cf-access-jwt-assertion",
        HeaderValue::from_str(&token).expect("header"),
    );
    headers.insert(
        tenantry::auth::TRUSTED_EMAIL_HEADER,
        HeaderValue::from_static(VIEWER),
    );
    headers.insert(
        tenantry::identity::TENANT_HEADER,
        HeaderValue::from_static(TENANT),
    );
    let watcher = Watcher {
        conn: tokio::sync::Mutex::new(common::admin_conn("postgres").await),
        db: t.name.clone(),
    };
    let http = Arc::new(Http {
        client: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(2 * CLIENTS)
            .build()
            .expect("client"),
        base: format!("http://{addr}"),
        headers,
        watcher,
    });
    println!(
        "\n(e) every request: GET with `Cf-Access-Jwt-Assertion` ({} bytes), `{}` and `X-Tenant: {TENANT}` \
         (all variants send all three); handlers return \"{BODY}\"; HTTP/1.1 keep-alive (reqwest); app pool of {CLIENTS}",
        token.len(),
        tenantry::auth::TRUSTED_EMAIL_HEADER,
    );
    println!(
        "    columns: ratio = req/s vs no authentication; +p50 = p50 minus the baseline's p50; \
         app / cli / pg CPU = µs of CPU per request of the server runtime's threads / of this \
         process's other threads / of the PostgreSQL backends"
    );
    // One request first, alone: the app's verifier checks the token's signature once and caches
    // it (concurrent first requests would each check it).
    http.get(Route::Jwt).await;
    let routes = [
        Route::Open,
        Route::Jwt,
        Route::JwtCold,
        Route::Trusted,
        Route::Cloudflare,
        Route::CloudflareUncached,
    ];
    for (clients, round) in [(1, secs(0.3)), (CLIENTS, secs(0.3))] {
        let mut stats = compare(&http, &routes, clients, round).await;
        print_http(
            &format!(
                "(e) {clients} client(s), {ROUNDS} rotated rounds of {:.1} s per variant",
                round.as_secs_f64()
            ),
            &routes,
            &mut stats,
        );
    }

    // ---- (f) ----------------------------------------------------------------------------------
    let counted = Http {
        client: http.client.clone(),
        base: format!("http://{counted_addr}"),
        headers: http.headers.clone(),
        watcher: Watcher {
            conn: tokio::sync::Mutex::new(common::admin_conn("postgres").await),
            db: t.name.clone(),
        },
    };
    let watcher = &counted.watcher;
    for &r in &routes {
        for _ in 0..20 {
            counted.get(r).await;
        }
    }
    let mut traffic = Vec::new();
    for &r in &routes {
        let before = proxy_wire.quiet_snapshot().await;
        for _ in 0..COUNTED {
            counted.get(r).await;
        }
        traffic.push(Traffic {
            label: r.label(),
            ops: COUNTED,
            diff: diff(&proxy_wire.quiet_snapshot().await, &before),
            xact_commit: None,
        });
    }

    // ---- (g) ----------------------------------------------------------------------------------
    // Pools of one connection each, made on this runtime: `Db` (as the app's) and a plain pool,
    // directly and through the counting proxy.
    let identity = Identity::User {
        email: VIEWER.to_owned(),
        sub: None,
    };
    let one = |url: &str, principal_cache_capacity: usize| {
        let mut config = DbConfig::new(url, None);
        config.max_connections = 1;
        config.principal_cache_capacity = principal_cache_capacity;
        config.listen_url = Some(app_url.clone());
        Db::connect(config)
    };
    let cache = DbConfig::new("", None).principal_cache_capacity;
    let dbs = Dbs {
        cached: one(&app_url, cache).await.expect("db"),
        uncached: one(&app_url, 0).await.expect("db"),
    };
    let counted_dbs = Dbs {
        cached: one(&counted_url, cache).await.expect("counted db"),
        uncached: one(&counted_url, 0).await.expect("counted db"),
    };
    // The hand-written baselines read the directory tables directly, which the app role may no
    // longer do (row-level security shows it only the active tenant's members): they run as the
    // bypass role, which reads the same rows the directory function does.
    let bypass_url = TestDb::bypass_url_of(&t.name);
    let counted_bypass_url = bypass_url.replace(&upstream, &proxy.to_string());
    let (plain, counted_plain) = (
        plain_pool(&bypass_url, 1),
        plain_pool(&counted_bypass_url, 1),
    );
    let lookups = [
        Lookup::Tenantry,
        Lookup::Cached,
        Lookup::SqlQuery,
        Lookup::Dsl,
    ];
    // The first lookup starts the listener, which empties the cache once it listens: wait for
    // that before counting.
    for dbs in [&dbs, &counted_dbs] {
        one_lookup(dbs, &counted_plain, &identity, Lookup::Cached).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dbs.cached.principal_cache_status().listening {
            assert!(Instant::now() < deadline, "the directory listener starts");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for &l in &lookups {
        for _ in 0..20 {
            one_lookup(&counted_dbs, &counted_plain, &identity, l).await;
        }
        let before = proxy_wire.quiet_snapshot().await;
        for _ in 0..COUNTED {
            one_lookup(&counted_dbs, &counted_plain, &identity, l).await;
        }
        traffic.push(Traffic {
            label: l.label(),
            ops: COUNTED,
            diff: diff(&proxy_wire.quiet_snapshot().await, &before),
            xact_commit: None,
        });
    }
    time_lookups(&dbs, &plain, &identity, &http.watcher).await;

    // Server-side check of (f): `pg_stat_database.xact_commit` per lookup. PostgreSQL 15 flushes
    // an idle backend's statistics up to 10 s late, so: end the app (its pools' backends exit and
    // flush), terminate every other backend of the scratch database, then bracket N lookups on
    // one connection with `pg_stat_force_next_flush()` (one transaction each; the flush happens
    // before its ReadyForQuery).
    server_rt.shutdown_background();
    drop((plain, counted_plain, dbs, counted_dbs));
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&bypass_url)
            .await
            .expect("bypass role connects");
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "the benchmark's setup on the bypass role, raw SQL on purpose"
        )]
        let me = diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(&mut conn)
            .await
            .expect("pid")
            .pid;
        loop {
            let others: Vec<i32> = watcher
                .backend_pids()
                .await
                .into_iter()
                .filter(|pid| *pid != me)
                .collect();
            if others.is_empty() {
                break;
            }
            let mut admin = watcher.conn.lock().await;
            for pid in others {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "the benchmark's setup as the superuser, raw SQL on purpose"
                )]
                diesel::sql_query("SELECT pg_terminate_backend($1) AS done")
                    .bind::<diesel::sql_types::Integer, _>(pid)
                    .execute(&mut *admin)
                    .await
                    .expect("terminate");
            }
            drop(admin);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (row, lookup) in [
        (traffic.len() - 2, Lookup::SqlQuery),
        (traffic.len() - 1, Lookup::Dsl),
    ] {
        for _ in 0..20 {
            run_lookup(&mut conn, lookup).await;
        }
        conn.batch_execute("SELECT pg_stat_force_next_flush()")
            .await
            .expect("flush");
        let x0 = watcher.xact_commit().await;
        for _ in 0..COUNTED {
            run_lookup(&mut conn, lookup).await;
        }
        conn.batch_execute("SELECT pg_stat_force_next_flush()")
            .await
            .expect("flush");
        // Minus the second flush's own transaction.
        traffic[row].xact_commit = Some(watcher.xact_commit().await - x0 - 1);
    }
    drop(conn);

    print_traffic(
        &format!(
            "(f) PostgreSQL protocol messages per request, counted by a proxy over {COUNTED} sequential requests \
             (client -> server: Q simple query, Parse, Bind, Execute, Close, Sync; server -> client: ReadyForQuery), \
             xact = pg_stat_database.xact_commit per lookup (server side; plain-pool lookups only); \
             the last four rows are (g)'s lookups alone"
        ),
        &traffic,
    );
    assert_eq!(
        verifier.fetch_count(),
        1,
        "the key set is fetched once, at prefetch"
    );
    assert_eq!(
        verifiers.cold.fetch_count() + verifiers.miss.fetch_count(),
        2,
        "the other two verifiers fetched once each, at prefetch"
    );
    let checks = verifier.verification_count() - checks_before_http;
    assert!(
        checks <= 1,
        "(e) and (f) reuse one token: at most its first request reaches the signature check"
    );
    println!(
        "    key set fetches of the app's verifier during the whole run: {} (certs server requests: {}, \
         one per verifier); its signature checks during (e) and (f): {checks}",
        verifier.fetch_count(),
        certs.request_count(),
    );

    println!("load average at the end: {}", loadavg());
    println!("\ntotal bench time {:.1} s", t0.elapsed().as_secs_f64());
    drop(t);
}
