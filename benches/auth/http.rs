//! (e) The authentication step per request over real HTTP: the bench's handlers and router, and
//! the load generator that runs them in rotated rounds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use tenantry::auth::cloudflare::CloudflareVerifier;
use tenantry::auth::AuthError;
use tenantry::auth::Authenticator;
use tenantry::identity::Tenantry;
use tenantry::requires_role;
use tenantry::Db;

use crate::measure::{closed_loop, per_op, secs, server_cpu, us};
use crate::stats::{process_cpu, Stats, Watcher};
use crate::{BODY, CLIENTS, ROUNDS, SERVER_THREADS};

/// The baseline: no authentication.
async fn open() -> &'static str {
    BODY
}

/// The same handler behind the role check: authentication, principal lookup, tenant selection.
#[requires_role(ClientViewer)]
async fn viewer(_ctx: tenantry::TenantCtx) -> &'static str {
    BODY
}

/// The same handler behind the token verification alone (no database): the app's verifier, or
/// one whose verified-token cache is off.
async fn jwt_only(
    State(verifier): State<CloudflareVerifier>,
    headers: HeaderMap,
) -> Result<&'static str, AuthError> {
    verifier.authenticate(&headers).await?;
    Ok(BODY)
}

/// The bench's app: one route per variant, all on one listener; `cold` is a verifier without
/// a verified-token cache, `uncached` a `Db` without a principal cache.
pub fn router(
    db: &Db,
    uncached: &Db,
    cloudflare: &Arc<Authenticator>,
    trusted: &Arc<Authenticator>,
    cold: &CloudflareVerifier,
) -> Router {
    let Authenticator::Cloudflare(verifier) = &**cloudflare else {
        unreachable!("built in cloudflare mode")
    };
    let state = |auth: &Arc<Authenticator>| Tenantry {
        db: db.clone(),
        auth: Arc::clone(auth),
        csrf: Default::default(),
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
                .route(Route::JwtCold.path(), get(jwt_only))
                .with_state(cold.clone()),
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
        .merge(
            Router::new()
                .route(Route::CloudflareUncached.path(), get(viewer))
                .with_state(Tenantry {
                    db: uncached.clone(),
                    auth: Arc::clone(cloudflare),
                    csrf: Default::default(),
                }),
        )
}

/// Binds 127.0.0.1 and serves `router` on the current runtime (with the peer address, which
/// `trusted_header` mode checks).
pub async fn serve(router: Router) -> SocketAddr {
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
pub enum Route {
    Open,
    Jwt,
    JwtCold,
    Trusted,
    Cloudflare,
    CloudflareUncached,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::Open => "/open",
            Route::Jwt => "/jwt",
            Route::JwtCold => "/jwt-cold",
            Route::Trusted => "/trusted",
            Route::Cloudflare => "/cf",
            Route::CloudflareUncached => "/cf-uncached",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::Open => "no authentication",
            Route::Jwt => "JWT only: CloudflareVerifier::authenticate",
            Route::JwtCold => "JWT only, verified-token cache off",
            Route::Trusted => "#[requires_role(ClientViewer)], trusted_header",
            Route::Cloudflare => "#[requires_role(ClientViewer)], cloudflare",
            Route::CloudflareUncached => "the same, principal cache off",
        }
    }
}

pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
    pub headers: HeaderMap,
    pub watcher: Watcher,
}

impl Http {
    pub async fn get(&self, route: Route) {
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
pub async fn run(http: &Arc<Http>, route: Route, clients: usize, dur: Duration, stats: &mut Stats) {
    let backends = http.watcher.backend_pids().await;
    let (app0, client0) = process_cpu(SERVER_THREADS);
    let pg0 = server_cpu(&backends);
    let start = Instant::now();
    let deadline = start + dur;
    let lat = closed_loop(
        clients,
        deadline,
        Arc::clone(http),
        move |http, _, _| async move {
            http.get(route).await;
        },
    )
    .await;
    stats.ops += lat.len();
    stats.lat_ns.extend(lat);
    stats.elapsed += start.elapsed();
    let (app1, client1) = process_cpu(SERVER_THREADS);
    stats.app_cpu += app1.saturating_sub(app0);
    stats.client_cpu += client1.saturating_sub(client0);
    stats.pg_cpu += server_cpu(&backends).saturating_sub(pg0);
}

/// Interleaved rounds of `routes`; returns their stats in order.
pub async fn compare(
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

pub fn print_http(title: &str, routes: &[Route], stats: &mut [Stats]) {
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
        let per = |d: Duration| per_op(d, s.ops);
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
