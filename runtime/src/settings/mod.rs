//! Typed settings from the environment (the variables of `shared/spec/example-app.md`).
//!
//! Variables are read with `envy` (serde) and validated with `url` and `ipnet`. Every problem
//! names its variable: `TENANTRY_AUTH_MODE: expected one of cloudflare, dev,
//! trusted_header (got "ldap")`. Cross-field rules (a mode's required variables, dev mode's guard
//! rails) are checked here, at start, not on the first request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

mod auth;
mod pg_url;

pub use pg_url::{redact, PgUrl, PgUrlError};

use crate::db::DbConfig;
use crate::identity::auth::cloudflare::{CloudflareConfig, CloudflareConfigError};
use crate::pool::Pooler;
use crate::serve::ServeConfig;
mod raw;
mod read;
use raw::{
    cloudflare_error, looks_like_email, parse_pg_url, parse_proxies, parse_share, parse_weights,
    resolve_bind, role_names, Raw,
};

/// A missing or malformed setting.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{variable}: {problem}")]
pub struct SettingsError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn err(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        problem: problem.into(),
    }
}

/// `TENANTRY_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `development` (the default).
    Development,
    /// `production`: dev mode refuses to start.
    Production,
}

/// `TENANTRY_AUTH_MODE` and what each mode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Cloudflare Access application tokens (the default): `TENANTRY_CF_TEAM_DOMAIN`,
    /// `TENANTRY_CF_AUDIENCE` and `TENANTRY_CF_CERTS_URL`, validated by [`CloudflareConfig`]
    /// (the one place that knows the team-domain and certs-URL rules).
    Cloudflare(CloudflareConfig),
    /// Every request is `TENANTRY_DEV_USER_EMAIL` (loopback, non-production only).
    Dev {
        /// `TENANTRY_DEV_USER_EMAIL`.
        user_email: String,
    },
    /// `Cf-Access-Authenticated-User-Email`, believed only from `TENANTRY_TRUSTED_PROXIES`.
    TrustedHeader {
        /// `TENANTRY_TRUSTED_PROXIES`.
        proxies: Vec<IpNet>,
    },
}

impl AuthMode {
    /// The mode's name as in `TENANTRY_AUTH_MODE`.
    pub fn name(&self) -> &'static str {
        match self {
            AuthMode::Cloudflare(_) => "cloudflare",
            AuthMode::Dev { .. } => "dev",
            AuthMode::TrustedHeader { .. } => "trusted_header",
        }
    }
}

/// All settings of a tenantry application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DATABASE_URL`: migrations (a role that may create tables and roles).
    pub database_url: String,
    /// `TENANTRY_APP_DATABASE_URL`: the request path (subject to row-level security).
    pub app_database_url: String,
    /// `TENANTRY_BYPASS_DATABASE_URL`: audited cross-tenant work (`BYPASSRLS`).
    pub bypass_database_url: String,
    /// `TENANTRY_DIRECTORY_DATABASE_URL`: tenantry's own lookups (principals, the tenant keys),
    /// as the role `tenantry_directory`, the only one that may call the directory functions.
    /// Default: `DATABASE_URL` with that role.
    pub directory_database_url: String,
    /// The names of tenantry's roles in this deployment: `TENANTRY_APP_ROLE`,
    /// `TENANTRY_BYPASS_ROLE` and `TENANTRY_DIRECTORY_ROLE`, each defaulting to
    /// `TENANTRY_ROLE_PREFIX` followed by `app`, `bypass` or `directory` (the prefix defaults to
    /// `tenantry_`). The default URLs use them; migrations create and grant them.
    pub roles: crate::schema::RoleNames,
    /// `TENANTRY_LISTEN_DATABASE_URL`: the directory listener's session, which keeps the
    /// principal cache true. It must not go through a transaction-mode pooler (see
    /// [`DbConfig::listen_url`]). Default: the app URL when `TENANTRY_DB_POOLER=direct`; none
    /// under `transaction` (the app URL is the pooler's), so cached principals then live at
    /// most `TENANTRY_PRINCIPAL_CACHE_TTL`.
    pub listen_database_url: Option<String>,
    /// `TENANTRY_BIND` as written (e.g. `127.0.0.1:3000` or `localhost:3000`).
    pub bind: String,
    /// `TENANTRY_BIND` resolved.
    pub bind_addr: SocketAddr,
    /// `TENANTRY_ENV`.
    pub environment: Environment,
    /// `TENANTRY_AUTH_MODE` with its variables.
    pub auth: AuthMode,
    /// `TENANTRY_ALLOWED_ORIGINS`: extra origins allowed to send state-changing requests
    /// (comma-separated, e.g. `https://app.example.com`); the request's own host is always allowed.
    pub allowed_origins: Vec<String>,
    /// The database pools' sizes and timeouts (`TENANTRY_DB_*`, `TENANTRY_HEALTH_TIMEOUT`).
    pub db: DbSettings,
    /// The HTTP server's bounds (durations written `500ms`, `5s` or `2m`):
    ///
    /// | variable | default | what a user sees when it is reached |
    /// |---|---|---|
    /// | `TENANTRY_HTTP_HEADER_TIMEOUT` | 10s | a request head not complete in time (or an idle keep-alive connection): the connection is closed |
    /// | `TENANTRY_HTTP_BODY_TIMEOUT` | 10s | 408 `timeout` |
    /// | `TENANTRY_HTTP_REQUEST_TIMEOUT` | 30s | 503 `unavailable` with `Retry-After` |
    /// | `TENANTRY_HTTP_IDLE_TIMEOUT` | 60s | no byte moves either way (a client not reading its answer): the connection is closed; must exceed the request timeout |
    /// | `TENANTRY_HTTP_MAX_CONNECTIONS` | 512 | a connection beyond it is answered 503 `unavailable` and closed |
    /// | `TENANTRY_HTTP_BODY_LIMIT` | 1048576 (bytes) | 413 `too_large` |
    /// | `TENANTRY_DRAIN_TIMEOUT` | 15s | after SIGTERM or Ctrl-C, requests still running then are cut off |
    /// | `TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT` | 256 | a tenant's request beyond it: 429 `too_many_requests` |
    pub http: ServeConfig,
    /// `TENANTRY_TENANT_WEIGHTS`: `<tenant id>=<weight>,..` (e.g. a paying plan `2`, a free one
    /// `0.5`); unlisted tenants weigh 1. Weights in thousandths.
    pub tenant_weights: Vec<(uuid::Uuid, u32)>,
    /// `TENANTRY_METRICS_BIND`: where `GET /metrics` is served (per-tenant metrics); `None`
    /// (the default): nowhere. Bind it where only the monitoring system reaches it.
    pub metrics_bind: Option<SocketAddr>,
}

/// The database pools' sizes and timeouts. Durations are written `500ms`, `5s` or `2m`.
///
/// | variable | default | what a user sees when it is reached |
/// |---|---|---|
/// | `TENANTRY_DB_POOL_SIZE` | 16 | requests beyond it wait for a connection |
/// | `TENANTRY_DB_BYPASS_POOL_SIZE` | 2 | the same, for audited cross-tenant work |
/// | `TENANTRY_DB_CONNECT_TIMEOUT` | 5s | opening a connection gives up: 503 |
/// | `TENANTRY_DB_POOL_TIMEOUT` | 1s | no connection became free: 503 with `Retry-After` |
/// | `TENANTRY_DB_STATEMENT_TIMEOUT` | 5s | the statement is cancelled: 503 (a silent server is given up 1 s later) |
/// | `TENANTRY_DB_LOCK_TIMEOUT` | 2s | a statement waiting for a lock fails: 503 |
/// | `TENANTRY_DB_IDLE_IN_TRANSACTION_TIMEOUT` | 10s | the server ends a session idle inside a transaction |
/// | `TENANTRY_HEALTH_TIMEOUT` | 2s | `GET /healthz` answers 503 |
/// | `TENANTRY_DB_POOLER` | `direct` | `transaction` behind PgBouncer in transaction mode: no per-connection statement cache, the session timeouts set in each transaction (see [`Pooler`]) |
/// | `TENANTRY_PRINCIPAL_CACHE_SIZE` | 10000 | identities whose principal is cached (0: none) |
/// | `TENANTRY_PRINCIPAL_CACHE_TTL` | 1s | while the directory listener is down, a directory change takes effect within it |
/// | `TENANTRY_TENANT_SHARE` | 50% | the most of the tenant pool one tenant holds; its excess waits in its own queue (`off`: arrival order, no 429) |
/// | `TENANTRY_TENANT_QUEUE` | 256 | a tenant's transactions waiting beyond its share; past it 429 `too_many_requests` |
/// | `TENANTRY_METRICS_TENANTS` | 20 | tenants named in `/metrics` (the busiest); the rest are `_other` |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSettings {
    /// `TENANTRY_DB_POOL_SIZE`.
    pub pool_size: usize,
    /// `TENANTRY_DB_BYPASS_POOL_SIZE`.
    pub bypass_pool_size: usize,
    /// `TENANTRY_DB_CONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
    /// `TENANTRY_DB_POOL_TIMEOUT`.
    pub pool_timeout: Duration,
    /// `TENANTRY_DB_STATEMENT_TIMEOUT`.
    pub statement_timeout: Duration,
    /// `TENANTRY_DB_LOCK_TIMEOUT`.
    pub lock_timeout: Duration,
    /// `TENANTRY_DB_IDLE_IN_TRANSACTION_TIMEOUT`.
    pub idle_in_transaction_timeout: Duration,
    /// `TENANTRY_HEALTH_TIMEOUT`.
    pub health_timeout: Duration,
    /// `TENANTRY_DB_POOLER`.
    pub pooler: Pooler,
    /// `TENANTRY_PRINCIPAL_CACHE_SIZE` (0 turns the cache off).
    pub principal_cache_size: usize,
    /// `TENANTRY_PRINCIPAL_CACHE_TTL`.
    pub principal_cache_ttl: Duration,
    /// `TENANTRY_PRINCIPAL_CACHE_MAX_AGE`.
    pub principal_cache_max_age: Duration,
    /// `TENANTRY_TENANT_SHARE` in percent of the pool (`None`: `off`).
    pub tenant_share_percent: Option<u32>,
    /// `TENANTRY_TENANT_QUEUE` (`None`: [`crate::fairness::DEFAULT_QUEUE`]).
    pub tenant_queue: Option<usize>,
    /// `TENANTRY_METRICS_TENANTS`.
    pub metrics_tenants: usize,
}

impl Settings {
    /// The [`DbConfig`] of the request path: the app and bypass URLs with [`Settings::db`].
    pub fn db_config(&self) -> DbConfig {
        let mut config = DbConfig::new(
            self.app_database_url.clone(),
            Some(self.bypass_database_url.clone()),
        );
        let db = &self.db;
        config.max_connections = db.pool_size;
        config.max_bypass_connections = db.bypass_pool_size;
        config.connect_timeout = db.connect_timeout;
        config.pool_timeout = db.pool_timeout;
        config.statement_timeout = db.statement_timeout;
        config.lock_timeout = db.lock_timeout;
        config.idle_in_transaction_timeout = db.idle_in_transaction_timeout;
        config.ping_timeout = db.health_timeout;
        config.pooler = db.pooler;
        config.listen_url = self.listen_database_url.clone();
        config.directory_url = Some(self.directory_database_url.clone());
        config.principal_cache_capacity = db.principal_cache_size;
        config.principal_cache_ttl = db.principal_cache_ttl;
        config.principal_cache_max_age = db.principal_cache_max_age;
        config.roles = self.roles.clone();
        config.fair_share = crate::fairness::FairShare {
            share: db.tenant_share_percent.map(|p| f64::from(p) / 100.0),
            queue: db.tenant_queue,
            weights: crate::fairness::TenantWeights::table(
                self.tenant_weights
                    .iter()
                    .map(|(t, w)| (*t, f64::from(*w) / 1000.0))
                    .collect(),
            ),
        };
        config.metrics_tenants = db.metrics_tenants;
        config
    }
}

#[cfg(test)]
mod tests;
