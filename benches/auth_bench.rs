//! Cost of authentication, measured in one run against baselines of the same run.
//!
//! `cargo bench --bench auth_bench` (needs the PostgreSQL of the integration tests; set
//! `TENANTRY_TEST_DATABASE_URL` to a superuser URL if it is not `postgres://postgres@127.0.0.1:5432`;
//! `TENANTRY_BENCH_SCALE=0.3` shortens every timed phase).
//!
//! - (d) token verification with cached keys: `CloudflareVerifier::verify` on a valid RS256 user
//!   token, on a forged one (full RSA work, then refused) and on tokens refused by the pre-checks
//!   (bad `alg`, no `kid`), against plain `jsonwebtoken::decode` with the same key and the RSA
//!   signature check alone;
//! - (e) the authentication step per request, over real HTTP on 127.0.0.1: one handler that
//!   returns a constant, served without authentication, behind `CloudflareVerifier::authenticate`
//!   only, and behind `#[requires_role(ClientViewer)]` in `trusted_header` and in `cloudflare`
//!   mode (a real local certs server), with 1 and 8 clients;
//! - (f) the database protocol traffic of each of those requests, counted by a PostgreSQL
//!   protocol-aware TCP proxy in front of the server (the same app on a second listener, its
//!   pool connected through the proxy); and, for the lookups of (g), the server's own count of
//!   transactions (`pg_stat_database.xact_commit`, on one connection with every other backend
//!   of the scratch database gone);
//! - (g) the principal lookup alone: `load_principal` vs. the same SQL through `sql_query` on a
//!   plain pool vs. the same query written with the DSL, whose prepared statement diesel caches.
//!
//! The bench's HTTP server runs on its own tokio runtime (2 workers, threads `auth-srv`), so that
//! the CPU time of this process splits into server (the app) and client (the load generator).
//! Prints tables; asserts nothing about time. It does assert every response is 200, that
//! accepted and refused tokens are accepted and refused for the expected reason, that the key
//! set was fetched exactly once, and that the protocol counts are consistent.
#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use axum::Router;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tenantry::auth::cloudflare::CloudflareVerifier;
use tenantry::auth::{AuthError, Identity};
use tenantry::identity::{load_principal, Authenticator, Tenantry};
use tenantry::requires_role;
use tenantry::settings::Settings;
use tenantry::testing::{CertsServer, TestKey, TokenMinter};
use tenantry::{Db, DbConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::TestDb;
use measure::{loadavg, schedstat, secs, server_cpu, us};

type PgPool = Pool<AsyncPgConnection>;

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

// ---- handlers ------------------------------------------------------------------------------

/// The baseline: no authentication.
async fn open() -> &'static str {
    BODY
}

/// The same handler behind the role check: authentication, principal lookup, tenant selection.
#[requires_role(ClientViewer)]
async fn viewer(_ctx: tenantry::TenantCtx) -> &'static str {
    BODY
}

/// The same handler behind the token verification alone (no database).
async fn jwt_only(
    State(verifier): State<CloudflareVerifier>,
    headers: HeaderMap,
) -> Result<&'static str, AuthError> {
    verifier.authenticate(&headers).await?;
    Ok(BODY)
}

/// The bench's app: one route per variant, all on one listener.
fn router(db: &Db, cloudflare: &Arc<Authenticator>, trusted: &Arc<Authenticator>) -> Router {
    let Authenticator::Cloudflare(verifier) = &**cloudflare else {
        unreachable!("built in cloudflare mode")
    };
    let state = |auth: &Arc<Authenticator>| Tenantry {
        db: db.clone(),
        auth: Arc::clone(auth),
    };
    Router::new()
        .route(Route::Open.path(), get(open))
        .merge(
            Router::new()
                .route(Route::Jwt.path(), get(jwt_only))
                .with_state(verifier.clone()),
        )
        .merge(
            Router::new()
                .route(Route::Trusted.path(), get(viewer))
                .with_state(state(trusted)),
        )
        .merge(
            Router::new()
                .route(Route::Cloudflare.path(), get(viewer))
                .with_state(state(cloudflare)),
        )
}

/// Binds 127.0.0.1 and serves `router` on the current runtime (with the peer address, which
/// `trusted_header` mode checks).
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    addr
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Open,
    Jwt,
    Trusted,
    Cloudflare,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Open => "/open",
            Route::Jwt => "/jwt",
            Route::Trusted => "/trusted",
            Route::Cloudflare => "/cf",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Open => "no authentication",
            Route::Jwt => "JWT only: CloudflareVerifier::authenticate",
            Route::Trusted => "#[requires_role(ClientViewer)], trusted_header",
            Route::Cloudflare => "#[requires_role(ClientViewer)], cloudflare",
        }
    }
}

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

// ---- statistics -----------------------------------------------------------------------------

/// Operations, the wall time they took, each one's latency and the CPU time spent.
#[derive(Default)]
struct Stats {
    ops: usize,
    elapsed: Duration,
    lat_ns: Vec<u64>,
    /// CPU of the server runtime's threads (the app).
    app_cpu: Duration,
    /// CPU of every other thread of this process (the HTTP clients).
    client_cpu: Duration,
    /// CPU of the PostgreSQL backends of the scratch database.
    pg_cpu: Duration,
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

/// CPU time of this process's threads: `(server runtime, everything else)`.
fn process_cpu() -> (Duration, Duration) {
    let mut split = (Duration::ZERO, Duration::ZERO);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return split;
    };
    for task in tasks.flatten() {
        let cpu = schedstat(&task.path().join("schedstat"));
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(SERVER_THREADS) {
            split.0 += cpu;
        } else {
            split.1 += cpu;
        }
    }
    split
}

/// A superuser connection to the `postgres` database: it watches the scratch database without
/// running a transaction in it.
struct Watcher {
    conn: tokio::sync::Mutex<AsyncPgConnection>,
    db: String,
}

impl Watcher {
    /// The backends connected to the scratch database.
    async fn backend_pids(&self) -> Vec<i32> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let mut conn = self.conn.lock().await;
        diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(&self.db)
            .load::<Pid>(&mut *conn)
            .await
            .expect("pg_stat_activity")
            .into_iter()
            .map(|p| p.pid)
            .collect()
    }

    /// `pg_stat_database.xact_commit` of the scratch database (as flushed so far).
    async fn xact_commit(&self) -> i64 {
        let mut conn = self.conn.lock().await;
        common::count(
            &mut conn,
            &format!(
                "SELECT xact_commit AS n FROM pg_stat_database WHERE datname = '{}'",
                self.db
            ),
        )
        .await
    }
}

// ---- (d) token verification -------------------------------------------------------------------

/// One micro-benchmark: what one call does, and its per-batch results.
struct Micro<'a> {
    label: &'static str,
    call: Box<dyn FnMut() + 'a>,
    /// Wall nanoseconds per call of each batch.
    batch_ns: Vec<f64>,
    calls: u64,
    cpu: Duration,
}

impl<'a> Micro<'a> {
    fn new(label: &'static str, call: impl FnMut() + 'a) -> Self {
        Micro {
            label,
            call: Box::new(call),
            batch_ns: Vec::new(),
            calls: 0,
            cpu: Duration::ZERO,
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    schedstat(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// Runs the micro-benchmarks in `ROUNDS * 2` rotated rounds of `batch` each (on this thread).
fn run_micro(micros: &mut [Micro<'_>], batch: Duration) {
    for m in micros.iter_mut() {
        for _ in 0..200 {
            (m.call)();
        }
    }
    let rounds = ROUNDS * 2;
    for r in 0..rounds {
        for i in 0..micros.len() {
            let m = &mut micros[(i + r) % micros.len()];
            let (c0, t0) = (thread_cpu(), Instant::now());
            let mut n = 0u64;
            loop {
                for _ in 0..16 {
                    (m.call)();
                }
                n += 16;
                if t0.elapsed() >= batch {
                    break;
                }
            }
            let wall = t0.elapsed();
            m.cpu += thread_cpu().saturating_sub(c0);
            m.calls += n;
            m.batch_ns.push(wall.as_nanos() as f64 / n as f64);
        }
    }
}

fn print_micro(micros: &mut [Micro<'_>], base: usize) {
    for m in micros.iter_mut() {
        m.batch_ns.sort_by(f64::total_cmp);
    }
    let median = |m: &Micro<'_>| m.batch_ns[m.batch_ns.len() / 2];
    let base_median = median(&micros[base]);
    println!(
        "| {:<62} | {:>10} | {:>9} | {:>10} | {:>10} | {:>8} |",
        "call", "µs/call", "ratio", "fastest", "CPU µs", "calls"
    );
    println!(
        "|{:-<64}|{:->12}|{:->11}|{:->12}|{:->12}|{:->10}|",
        "", "", "", "", "", ""
    );
    for m in micros.iter() {
        println!(
            "| {:<62} | {:>10.2} | {:>9.3} | {:>10.2} | {:>10.2} | {:>8} |",
            m.label,
            median(m) / 1e3,
            median(m) / base_median,
            m.batch_ns[0] / 1e3,
            m.cpu.as_secs_f64() * 1e6 / m.calls as f64,
            m.calls,
        );
    }
}

/// The reason of a 401, or a panic.
fn refused_reason(result: Option<Result<Identity, AuthError>>) -> String {
    match result.expect("with cached keys `verify` never waits") {
        Err(AuthError::Unauthenticated(reason)) => reason,
        other => panic!("expected a 401, got {other:?}"),
    }
}

fn token_verification(verifier: &CloudflareVerifier, minter: &TokenMinter) {
    let valid = minter.user(VIEWER).sign();
    let forged = minter.user(VIEWER).signed_by(&TestKey::C).sign();
    let bad_alg = minter.user(VIEWER).header("alg", "RS384").sign();
    let no_kid = minter.user(VIEWER).without_header("kid").sign();

    // The same key the verifier caches (it builds it from the JWK's `n` and `e`).
    let jwk = TestKey::A.jwk();
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("RSA key");
    // Minimal: the RS256 signature and `exp`.
    let mut minimal = Validation::new(Algorithm::RS256);
    minimal.validate_aud = false;
    // What the verifier configures (runtime/src/auth/cloudflare/token.rs).
    let mut full = Validation::new(Algorithm::RS256);
    full.leeway = 30;
    full.validate_nbf = true;
    full.set_issuer(&[format!("https://{TEAM}")]);
    full.set_audience(&[AUD]);
    full.set_required_spec_claims(&["exp", "iss", "aud"]);
    let (message, signature) = valid.rsplit_once('.').expect("three segments");
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .expect("base64url")
    };
    let signature_bytes = b64(signature);
    let ring_key = ring::signature::RsaPublicKeyComponents {
        n: b64(jwk["n"].as_str().expect("n")),
        e: b64(jwk["e"].as_str().expect("e")),
    };

    // Each call's outcome is checked once here, and cheaply again inside the loops.
    let verify = |token: &str| verifier.verify(token).now_or_never();
    assert_eq!(
        verify(&valid)
            .expect("no wait")
            .expect("valid token")
            .email(),
        VIEWER
    );
    assert!(refused_reason(verify(&forged)).contains("signature"));
    assert!(refused_reason(verify(&bad_alg)).contains("algorithm"));
    assert!(refused_reason(verify(&no_kid)).contains("key id"));
    let decode = |v: &Validation| jsonwebtoken::decode::<Map<String, Value>>(&valid, &key, v);
    assert!(decode(&minimal).is_ok() && decode(&full).is_ok());
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256)
            .expect("verify")
    );

    let mut micros = vec![
        Micro::new(
            "jsonwebtoken::decode, minimal Validation (RS256, exp)",
            || {
                let d = decode(&minimal).expect("decodes");
                std::hint::black_box(d);
            },
        ),
        Micro::new(
            "jsonwebtoken::decode, the verifier's Validation (iss, aud, nbf)",
            || {
                let d = decode(&full).expect("decodes");
                std::hint::black_box(d);
            },
        ),
        Micro::new(
            "jsonwebtoken::crypto::verify: the RS256 signature alone",
            || {
                let ok = jsonwebtoken::crypto::verify(
                    std::hint::black_box(signature),
                    message.as_bytes(),
                    &key,
                    Algorithm::RS256,
                );
                assert!(matches!(ok, Ok(true)));
            },
        ),
        Micro::new(
            "reference: ring's RSA verify, same key and signature",
            || {
                let ok = ring_key.verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    std::hint::black_box(message.as_bytes()),
                    &signature_bytes,
                );
                assert!(ok.is_ok());
            },
        ),
        Micro::new("CloudflareVerifier::verify, valid user token -> Ok", || {
            let r = verify(&valid);
            assert!(matches!(r, Some(Ok(_))));
            std::hint::black_box(r);
        }),
        Micro::new(
            "verify, forged signature (kid A, signed by C) -> 401",
            || {
                let r = verify(&forged);
                assert!(matches!(r, Some(Err(_))));
                std::hint::black_box(r);
            },
        ),
        Micro::new("verify, `alg: RS384` -> 401 in the pre-checks", || {
            let r = verify(&bad_alg);
            assert!(matches!(r, Some(Err(_))));
            std::hint::black_box(r);
        }),
        Micro::new("verify, no `kid` -> 401 in the pre-checks", || {
            let r = verify(&no_kid);
            assert!(matches!(r, Some(Err(_))));
            std::hint::black_box(r);
        }),
    ];
    run_micro(&mut micros, secs(0.025));
    println!(
        "\n(d) token verification, keys cached, one thread; {} rotated rounds of {:.0} ms per call; \
         µs/call = median over rounds, ratio vs the first row, fastest = fastest round, CPU = thread CPU / calls",
        ROUNDS * 2,
        secs(0.025).as_secs_f64() * 1e3
    );
    println!(
        "    token: {} bytes, RS256, 2048-bit key (e = 65537)",
        valid.len()
    );
    print_micro(&mut micros, 0);
}

// ---- (e) the authentication step over HTTP -------------------------------------------------

struct Http {
    client: reqwest::Client,
    base: String,
    headers: HeaderMap,
    watcher: Watcher,
}

impl Http {
    async fn get(&self, route: Route) {
        let response = self
            .client
            .get(format!("{}{}", self.base, route.path()))
            .headers(self.headers.clone())
            .send()
            .await
            .expect("the app answers");
        let status = response.status();
        let body = response.bytes().await.expect("body");
        assert!(
            status.is_success() && body == BODY.as_bytes(),
            "{route:?}: {status} {body:?}"
        );
    }
}

/// Runs `route` on `clients` tasks for `dur`, adding to `stats`.
async fn run(http: &Arc<Http>, route: Route, clients: usize, dur: Duration, stats: &mut Stats) {
    let backends = http.watcher.backend_pids().await;
    let (app0, client0) = process_cpu();
    let pg0 = server_cpu(&backends);
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let http = Arc::clone(http);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(8_192);
            loop {
                let t0 = Instant::now();
                http.get(route).await;
                let t1 = Instant::now();
                lat.push((t1 - t0).as_nanos() as u64);
                if t1 >= deadline {
                    break;
                }
            }
            lat
        }));
    }
    for h in handles {
        let lat = h.await.expect("client task");
        stats.ops += lat.len();
        stats.lat_ns.extend(lat);
    }
    stats.elapsed += start.elapsed();
    let (app1, client1) = process_cpu();
    stats.app_cpu += app1.saturating_sub(app0);
    stats.client_cpu += client1.saturating_sub(client0);
    stats.pg_cpu += server_cpu(&backends).saturating_sub(pg0);
}

/// Interleaved rounds of `routes`; returns their stats in order.
async fn compare(
    http: &Arc<Http>,
    routes: &[Route],
    clients: usize,
    round: Duration,
) -> Vec<Stats> {
    for &r in routes {
        run(http, r, CLIENTS, secs(0.2), &mut Stats::default()).await;
    }
    let mut stats: Vec<Stats> = routes.iter().map(|_| Stats::default()).collect();
    for r in 0..ROUNDS {
        for i in 0..routes.len() {
            let j = (i + r) % routes.len();
            run(http, routes[j], clients, round, &mut stats[j]).await;
        }
    }
    stats
}

fn print_http(title: &str, routes: &[Route], stats: &mut [Stats]) {
    let base_ops = stats[0].ops_per_sec();
    let base_p50 = stats[0].pct(0.5);
    println!("\n{title}");
    println!(
        "| {:<47} | {:>7} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} |",
        "variant",
        "req/s",
        "ratio",
        "p50 µs",
        "+p50 µs",
        "p99 µs",
        "app CPU",
        "cli CPU",
        "pg CPU",
        "reqs"
    );
    println!(
        "|{:-<49}|{:->9}|{:->8}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->9}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for (route, s) in routes.iter().zip(stats.iter_mut()) {
        let (p50, p99) = (s.pct(0.5), s.pct(0.99));
        let per = |d: Duration| us(d / s.ops.max(1) as u32);
        println!(
            "| {:<47} | {:>7.0} | {:>6.3} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} |",
            route.label(),
            s.ops_per_sec(),
            s.ops_per_sec() / base_ops,
            us(p50),
            us(p50.saturating_sub(base_p50)),
            us(p99),
            per(s.app_cpu),
            per(s.client_cpu),
            per(s.pg_cpu),
            s.ops,
        );
    }
}

// ---- (f) protocol-counting proxy -------------------------------------------------------------

type Counts = [AtomicU64; 256];

/// PostgreSQL protocol messages that crossed the proxy, by type byte, in each direction.
struct Wire {
    to_server: Counts,
    to_client: Counts,
}

impl Wire {
    fn new() -> Self {
        Wire {
            to_server: std::array::from_fn(|_| AtomicU64::new(0)),
            to_client: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The counts once the wire has been quiet for a while: a statement's `Close` + `Sync` is
    /// sent when the statement is dropped and nobody waits for its answer, so its
    /// `ReadyForQuery` can arrive after the request that caused it has finished.
    async fn quiet_snapshot(&self) -> ([u64; 256], [u64; 256]) {
        let mut last = self.snapshot();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.snapshot();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    fn snapshot(&self) -> ([u64; 256], [u64; 256]) {
        let read = |c: &Counts| std::array::from_fn(|i| c[i].load(Ordering::SeqCst));
        (read(&self.to_server), read(&self.to_client))
    }
}

/// Splits one direction of a PostgreSQL connection into messages: `type byte, int32 length,
/// body`, after the client's untyped startup message (the pools connect without TLS, so no
/// `SSLRequest` precedes it).
struct Framer {
    untyped_first: bool,
    head: Vec<u8>,
    skip: usize,
}

impl Framer {
    fn new(untyped_first: bool) -> Self {
        Framer {
            untyped_first,
            head: Vec::with_capacity(5),
            skip: 0,
        }
    }

    fn feed(&mut self, mut data: &[u8], counts: &Counts) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let need = if self.untyped_first { 4 } else { 5 };
            let take = (need - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() < need {
                return;
            }
            let len_at = need - 4;
            let len = u32::from_be_bytes(self.head[len_at..need].try_into().expect("4 bytes"));
            assert!(len >= 4, "protocol framing lost");
            if self.untyped_first {
                self.untyped_first = false;
            } else {
                counts[usize::from(self.head[0])].fetch_add(1, Ordering::SeqCst);
            }
            self.skip = len as usize - 4;
            self.head.clear();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut framer: Framer,
    wire: Arc<Wire>,
    to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let counts = if to_server {
            &wire.to_server
        } else {
            &wire.to_client
        };
        framer.feed(&buf[..n], counts);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that counts the messages it forwards.
async fn start_proxy(upstream: String, wire: Arc<Wire>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream)
                .await
                .expect("upstream");
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, Framer::new(true), Arc::clone(&wire), true));
            tokio::spawn(pump(sr, cw, Framer::new(false), Arc::clone(&wire), false));
        }
    });
    addr
}

/// Per-operation protocol traffic: what the client sent and what the server answered.
struct Traffic {
    label: &'static str,
    ops: u64,
    diff: ([u64; 256], [u64; 256]),
    xact_commit: Option<i64>,
}

impl Traffic {
    fn to_server(&self, t: u8) -> f64 {
        self.diff.0[usize::from(t)] as f64 / self.ops as f64
    }
    fn to_client(&self, t: u8) -> f64 {
        self.diff.1[usize::from(t)] as f64 / self.ops as f64
    }
}

fn diff(
    after: &([u64; 256], [u64; 256]),
    before: &([u64; 256], [u64; 256]),
) -> ([u64; 256], [u64; 256]) {
    (
        std::array::from_fn(|i| after.0[i] - before.0[i]),
        std::array::from_fn(|i| after.1[i] - before.1[i]),
    )
}

fn print_traffic(title: &str, rows: &[Traffic]) {
    println!("\n{title}");
    println!(
        "| {:<47} | {:>5} | {:>5} | {:>5} | {:>5} | {:>5} | {:>5} | {:>9} | {:>8} | {:>6} |",
        "per operation", "Q", "Parse", "Bind", "Exec", "Close", "Sync", "RFQ (Z)", "xact", "ops"
    );
    println!(
        "|{:-<49}|{:->7}|{:->7}|{:->7}|{:->7}|{:->7}|{:->7}|{:->11}|{:->10}|{:->8}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for t in rows {
        // Every simple query (`Q`) and every `Sync` is answered by exactly one ReadyForQuery.
        let (syncs, rfq) = (
            t.diff.0[usize::from(b'Q')] + t.diff.0[usize::from(b'S')],
            t.diff.1[usize::from(b'Z')],
        );
        assert_eq!(
            syncs, rfq,
            "{}: sync points and ReadyForQuery differ",
            t.label
        );
        println!(
            "| {:<47} | {:>5.2} | {:>5.2} | {:>5.2} | {:>5.2} | {:>5.2} | {:>5.2} | {:>9.2} | {:>8} | {:>6} |",
            t.label,
            t.to_server(b'Q'),
            t.to_server(b'P'),
            t.to_server(b'B'),
            t.to_server(b'E'),
            t.to_server(b'C'),
            t.to_server(b'S'),
            t.to_client(b'Z'),
            t.xact_commit
                .map(|x| format!("{:.2}", x as f64 / t.ops as f64))
                .unwrap_or_else(|| "-".into()),
            t.ops,
        );
    }
}

// ---- (g) the principal lookup alone ------------------------------------------------------------

/// The framework's directory tables, as far as the lookup reads them.
mod directory {
    diesel::table! {
        users (id) {
            id -> Uuid,
            email -> Text,
            is_owner -> Bool,
            cf_sub -> Nullable<Text>,
        }
    }
    diesel::table! {
        memberships (user_id, tenant_id) {
            user_id -> Uuid,
            tenant_id -> Uuid,
            role -> Text,
        }
    }
    diesel::table! {
        tenants (id) {
            id -> Uuid,
            slug -> Text,
            name -> Text,
        }
    }
    diesel::allow_tables_to_appear_in_same_query!(users, memberships, tenants);

    diesel::define_sql_function! {
        #[sql_name = "lower"]
        fn lower_text(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
    }
}

type LookupRow = (
    uuid::Uuid,
    String,
    bool,
    Option<String>,
    Option<uuid::Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `principal.rs`'s lookup written with the query DSL: diesel caches its prepared statement per
/// connection, so after the first call it is one Bind/Execute/Sync exchange.
async fn lookup_dsl(conn: &mut AsyncPgConnection, email: &str) -> Vec<LookupRow> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use directory::{lower_text, memberships, tenants, users};
    users::table
        .left_join(memberships::table.on(memberships::user_id.eq(users::id)))
        .left_join(tenants::table.on(tenants::id.eq(memberships::tenant_id)))
        .filter(lower_text(users::email).eq(lower_text(email)))
        .order(tenants::slug.nullable())
        .select((
            users::id,
            users::email,
            users::is_owner,
            users::cf_sub,
            memberships::tenant_id.nullable(),
            memberships::role.nullable(),
            tenants::slug.nullable(),
            tenants::name.nullable(),
        ))
        .load::<LookupRow>(conn)
        .await
        .expect("lookup")
}

/// `principal.rs`'s `LOOKUP`, verbatim, through `diesel::sql_query` (never cached).
async fn lookup_sql(conn: &mut AsyncPgConnection, email: &str) -> usize {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        #[allow(dead_code)]
        id: uuid::Uuid,
    }
    diesel::sql_query(
        "SELECT u.id, u.email, u.is_owner, u.cf_sub, m.tenant_id, m.role, t.slug, t.name \
         FROM users u \
         LEFT JOIN memberships m ON m.user_id = u.id \
         LEFT JOIN tenants t ON t.id = m.tenant_id \
         WHERE lower(u.email) = lower($1) \
         ORDER BY t.slug",
    )
    .bind::<diesel::sql_types::Text, _>(email)
    .load::<Id>(conn)
    .await
    .expect("lookup")
    .len()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lookup {
    /// `tenantry::identity::load_principal` on the app's `Db`.
    Tenantry,
    /// The same SQL through `sql_query` on a plain pool.
    SqlQuery,
    /// The same query with the DSL (cached prepared statement) on a plain pool.
    Dsl,
}

impl Lookup {
    fn label(self) -> &'static str {
        match self {
            Lookup::Tenantry => "load_principal (query builder: cached statement)",
            Lookup::SqlQuery => "same SQL, sql_query on a plain pool",
            Lookup::Dsl => "same query, DSL: cached statement (Bind/Execute)",
        }
    }
}

async fn one_lookup(db: &Db, pool: &PgPool, identity: &Identity, l: Lookup) {
    let memberships = match l {
        Lookup::Tenantry => load_principal(db, identity)
            .await
            .expect("principal")
            .memberships()
            .len(),
        Lookup::SqlQuery => lookup_sql(&mut pool.get().await.expect("pool"), VIEWER).await,
        Lookup::Dsl => lookup_dsl(&mut pool.get().await.expect("pool"), VIEWER)
            .await
            .len(),
    };
    assert_eq!(memberships, 2);
}

/// The plain lookups on one connection.
async fn run_lookup(conn: &mut AsyncPgConnection, l: Lookup) {
    let memberships = match l {
        Lookup::SqlQuery => lookup_sql(conn, VIEWER).await,
        Lookup::Dsl => lookup_dsl(conn, VIEWER).await.len(),
        Lookup::Tenantry => unreachable!("needs a Db"),
    };
    assert_eq!(memberships, 2);
}

fn plain_pool(url: &str, size: usize) -> PgPool {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager).max_size(size).build().expect("pool")
}

// ---- setup ------------------------------------------------------------------------------------

/// 1,000 other users (all `client_viewer` in acme, every other one also `partner` in globex) and
/// the bench's viewer (`client_viewer` in acme, `partner` in globex).
async fn seed(t: &TestDb) {
    let mut admin = t.admin().await;
    admin
        .batch_execute(&format!(
            "INSERT INTO users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 1000) g;
             INSERT INTO users (email) VALUES ('{VIEWER}');
             INSERT INTO memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'client_viewer' FROM users u, tenants t WHERE t.slug = 'acme';
             INSERT INTO memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'partner' FROM users u, tenants t
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
    verifier
        .prefetch()
        .await
        .expect("keys from the certs server");
    let minter = TokenMinter::new(TEAM, AUD, &TestKey::A);

    // ---- (d) ----------------------------------------------------------------------------------
    token_verification(&verifier, &minter);

    // ---- (e) ----------------------------------------------------------------------------------
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
        let (app_url, counted_url) = (app_url.clone(), counted_url.clone());
        server_rt
            .spawn(async move {
                let mut config = DbConfig::new(app_url, None);
                config.max_connections = CLIENTS;
                let db = Db::connect(config).await.expect("app pools");
                let addr = serve(router(&db, &cloudflare, &trusted)).await;
                // The same app with a one-connection pool through the counting proxy, for (f).
                let mut config = DbConfig::new(counted_url, None);
                config.max_connections = 1;
                let counted = Db::connect(config).await.expect("counted pool");
                let counted_addr = serve(router(&counted, &cloudflare, &trusted)).await;
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
        tenantry::identity::TRUSTED_EMAIL_HEADER,
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
        tenantry::identity::TRUSTED_EMAIL_HEADER,
    );
    println!(
        "    columns: ratio = req/s vs no authentication; +p50 = p50 minus the baseline's p50; \
         app / cli / pg CPU = µs of CPU per request of the server runtime's threads / of this \
         process's other threads / of the PostgreSQL backends"
    );
    let routes = [Route::Open, Route::Jwt, Route::Trusted, Route::Cloudflare];
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
    let one = |url: &str| {
        let mut config = DbConfig::new(url, None);
        config.max_connections = 1;
        Db::connect(config)
    };
    let (db, counted_db) = (
        one(&app_url).await.expect("db"),
        one(&counted_url).await.expect("counted db"),
    );
    let (plain, counted_plain) = (plain_pool(&app_url, 1), plain_pool(&counted_url, 1));
    let lookups = [Lookup::Tenantry, Lookup::SqlQuery, Lookup::Dsl];
    for &l in &lookups {
        for _ in 0..20 {
            one_lookup(&counted_db, &counted_plain, &identity, l).await;
        }
        let before = proxy_wire.quiet_snapshot().await;
        for _ in 0..COUNTED {
            one_lookup(&counted_db, &counted_plain, &identity, l).await;
        }
        traffic.push(Traffic {
            label: l.label(),
            ops: COUNTED,
            diff: diff(&proxy_wire.quiet_snapshot().await, &before),
            xact_commit: None,
        });
    }
    let mut stats: Vec<Stats> = lookups.iter().map(|_| Stats::default()).collect();
    for &l in &lookups {
        for _ in 0..200 {
            one_lookup(&db, &plain, &identity, l).await;
        }
    }
    let round = secs(0.3);
    for r in 0..ROUNDS {
        for i in 0..lookups.len() {
            let j = (i + r) % lookups.len();
            let backends = http.watcher.backend_pids().await;
            let (a0, c0) = process_cpu();
            let pg0 = server_cpu(&backends);
            let start = Instant::now();
            let s = &mut stats[j];
            loop {
                let q0 = Instant::now();
                one_lookup(&db, &plain, &identity, lookups[j]).await;
                let q1 = Instant::now();
                s.lat_ns.push((q1 - q0).as_nanos() as u64);
                s.ops += 1;
                if q1 - start >= round {
                    break;
                }
            }
            s.elapsed += start.elapsed();
            let (a1, c1) = process_cpu();
            s.app_cpu += a1.saturating_sub(a0);
            s.client_cpu += c1.saturating_sub(c0);
            s.pg_cpu += server_cpu(&backends).saturating_sub(pg0);
        }
    }
    println!(
        "\n(g) the principal lookup alone, 1 client, pools of 1, {ROUNDS} rotated rounds of {:.1} s; ratio = ops/s vs load_principal",
        round.as_secs_f64()
    );
    println!(
        "| {:<50} | {:>7} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} |",
        "variant", "ops/s", "ratio", "p50 µs", "p50 ratio", "p99 µs", "cli CPU", "pg CPU", "ops"
    );
    println!(
        "|{:-<52}|{:->9}|{:->8}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->9}|",
        "", "", "", "", "", "", "", "", ""
    );
    let base = stats[0].ops_per_sec();
    let base_p50 = stats[0].pct(0.5);
    for (l, s) in lookups.iter().zip(stats.iter_mut()) {
        let (p50, p99) = (s.pct(0.5), s.pct(0.99));
        let per = |d: Duration| us(d / s.ops.max(1) as u32);
        println!(
            "| {:<50} | {:>7.0} | {:>6.3} | {:>8} | {:>8.3} | {:>8} | {:>8} | {:>8} | {:>7} |",
            l.label(),
            s.ops_per_sec(),
            s.ops_per_sec() / base,
            us(p50),
            base_p50.as_secs_f64() / p50.as_secs_f64(),
            us(p99),
            per(s.app_cpu + s.client_cpu),
            per(s.pg_cpu),
            s.ops,
        );
    }

    // Server-side check of (f): `pg_stat_database.xact_commit` per lookup. PostgreSQL 15 flushes
    // an idle backend's statistics up to 10 s late, so: end the app (its pools' backends exit and
    // flush), terminate every other backend of the scratch database, then bracket N lookups on
    // one connection with `pg_stat_force_next_flush()` (one transaction each; the flush happens
    // before its ReadyForQuery).
    server_rt.shutdown_background();
    drop((plain, counted_plain, db, counted_db));
    let mut conn = t.app_conn().await;
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
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
             the last three rows are (g)'s lookups alone"
        ),
        &traffic,
    );
    assert_eq!(
        verifier.fetch_count(),
        1,
        "the key set is fetched once, at prefetch"
    );
    println!(
        "    key set fetches during the whole run: {} (certs server requests: {})",
        verifier.fetch_count(),
        certs.request_count()
    );

    println!("load average at the end: {}", loadavg());
    println!("\ntotal bench time {:.1} s", t0.elapsed().as_secs_f64());
    drop(t);
}
