//! The tenantry example: a small invoicing SaaS whose contract is `shared/spec/example-app.md`.
//!
//! Read the handlers in `routes/` as the model of how to use tenantry: each is short, behind
//! `#[requires_role(..)]`, and none writes a tenant filter by hand.

#![allow(missing_docs, unreachable_pub)]

pub mod admin_page;
pub mod app;
pub mod error;
pub mod extract;
pub mod models;
// The README's snippets as written there (not reformatted: the README shows them so).
#[rustfmt::skip]
mod readme_snippets;
pub mod routes;
pub mod schema;
pub mod setup;

use std::future::Future;
use std::net::SocketAddr;

use tenantry::auth::Authenticator;
use tenantry::identity::{CsrfPolicy, Tenantry};
use tenantry::serve::{serve, shutdown_signal, ServeConfig};
use tenantry::settings::{AuthMode, Settings};
use tenantry::Db;

/// The example's database when `DATABASE_URL` is not set (the README's first command).
pub const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tenantry_example";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] tenantry::settings::SettingsError),
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("database: {0}")]
    Db(#[from] tenantry::DbError),
    #[error("TENANTRY_METRICS_BIND: cannot listen on {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A server ready to serve: its address, the router, the pools and the HTTP bounds.
pub struct Server {
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    db: Db,
    http: ServeConfig,
    /// `GET /metrics` on `TENANTRY_METRICS_BIND`, when set.
    metrics: Option<tokio::net::TcpListener>,
}

impl Server {
    /// Applies all migrations, seeds the dev data (dev mode, empty database), connects the pools
    /// and binds the listener.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        setup::prepare(settings).await?;
        // The example's only system job is the dev seed, so only dev mode makes the `Jobs`
        // capability (once per process and database), and drops it before the router is built:
        // request handlers have no way to reach it, and none may make one.
        let db = match &settings.auth {
            AuthMode::Dev { user_email } => {
                let (db, jobs) = Db::connect_with_jobs(settings.db_config()).await?;
                setup::seed_dev(settings, &jobs, user_email).await?;
                db
            }
            _ => Db::connect(settings.db_config()).await?,
        };
        let auth = Authenticator::from_settings(settings)?;
        let state = app::AppState {
            tenantry: Tenantry {
                db: db.clone(),
                auth: std::sync::Arc::new(auth),
                csrf: CsrfPolicy::new(settings.allowed_origins.clone()),
            },
        };
        let router = app::router(state, settings);
        let listener = tokio::net::TcpListener::bind(settings.bind_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.bind_addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.bind_addr,
            source,
        })?;
        let metrics = match settings.metrics_bind {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::MetricsBind { addr, source })?,
            ),
            None => None,
        };
        Ok(Server {
            addr,
            listener,
            router,
            db,
            http: settings.http,
            metrics,
        })
    }

    /// Where `GET /metrics` is served (`TENANTRY_METRICS_BIND`), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The server's database handle (its pools and principal cache), e.g. for a test to read
    /// [`Db::principal_cache_status`].
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves until SIGTERM or Ctrl-C, then drains (see [`Server::serve_until`]).
    pub async fn serve(self) -> std::io::Result<()> {
        self.serve_until(shutdown_signal()).await
    }

    /// Serves within the `TENANTRY_HTTP_*` bounds until `shutdown` completes; then stops
    /// accepting, lets in-flight requests finish within `TENANTRY_DRAIN_TIMEOUT`, and closes
    /// the pools.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        // The metrics endpoint: its own listener, never the public one (it names tenants).
        let metrics = self.metrics.map(|listener| {
            let router = tenantry::fairness::metrics_router(self.db.clone());
            tokio::spawn(serve(
                listener,
                router,
                ServeConfig::default(),
                std::future::pending(),
            ))
        });
        let result = serve(self.listener, self.router, self.http, shutdown).await;
        if let Some(task) = metrics {
            task.abort();
        }
        self.db.close();
        result
    }
}
