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

/// The default `DATABASE_URL` of the example app.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tenantry_example";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads settings from `vars` (the environment in tests).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let raw = Raw::load(vars)?;
        let database_url = raw
            .get("DATABASE_URL")
            .unwrap_or(DEFAULT_DATABASE_URL)
            .to_owned();
        let parsed_db = parse_pg_url("DATABASE_URL", &database_url)?;
        let roles = role_names(&raw)?;
        let app_database_url = match raw.get("TENANTRY_APP_DATABASE_URL") {
            Some(u) => {
                parse_pg_url("TENANTRY_APP_DATABASE_URL", u)?;
                u.to_owned()
            }
            None => parsed_db.with_role(&roles.app),
        };
        let bypass_database_url = match raw.get("TENANTRY_BYPASS_DATABASE_URL") {
            Some(u) => {
                parse_pg_url("TENANTRY_BYPASS_DATABASE_URL", u)?;
                u.to_owned()
            }
            None => parsed_db.with_role(&roles.bypass),
        };
        let directory_database_url = match raw.get("TENANTRY_DIRECTORY_DATABASE_URL") {
            Some(u) => {
                parse_pg_url("TENANTRY_DIRECTORY_DATABASE_URL", u)?;
                u.to_owned()
            }
            None => parsed_db.with_role(&roles.directory),
        };
        let listen_database_url = match raw.get("TENANTRY_LISTEN_DATABASE_URL") {
            Some(u) => {
                parse_pg_url("TENANTRY_LISTEN_DATABASE_URL", u)?;
                Some(u.to_owned())
            }
            None => None,
        };

        let bind = raw
            .get("TENANTRY_BIND")
            .unwrap_or("127.0.0.1:3000")
            .to_owned();
        let bind_addr = resolve_bind(&bind)?;

        let environment = match raw.get("TENANTRY_ENV").unwrap_or("development") {
            "development" => Environment::Development,
            "production" => Environment::Production,
            other => {
                return Err(err(
                    "TENANTRY_ENV",
                    format!("expected `development` or `production` (got {other:?})"),
                ))
            }
        };

        let auth = match raw.get("TENANTRY_AUTH_MODE").unwrap_or("cloudflare") {
            "cloudflare" => {
                let team_domain = raw.required("TENANTRY_CF_TEAM_DOMAIN", "cloudflare")?;
                let audience = raw.required("TENANTRY_CF_AUDIENCE", "cloudflare")?;
                let mut config =
                    CloudflareConfig::new(team_domain, audience).map_err(cloudflare_error)?;
                if let Some(url) = raw.get("TENANTRY_CF_CERTS_URL") {
                    config = config.with_certs_url(url).map_err(cloudflare_error)?;
                }
                AuthMode::Cloudflare(config)
            }
            "dev" => {
                let user_email = raw.required("TENANTRY_DEV_USER_EMAIL", "dev")?;
                if !looks_like_email(user_email) {
                    return Err(err(
                        "TENANTRY_DEV_USER_EMAIL",
                        format!("not an email address: {user_email:?}"),
                    ));
                }
                if environment == Environment::Production {
                    return Err(err(
                        "TENANTRY_AUTH_MODE",
                        "`dev` mode refuses to start when TENANTRY_ENV=production",
                    ));
                }
                if !bind_addr.ip().is_loopback() {
                    return Err(err(
                        "TENANTRY_BIND",
                        format!("`dev` mode only binds to a loopback address (got {bind})"),
                    ));
                }
                AuthMode::Dev {
                    user_email: user_email.to_owned(),
                }
            }
            "trusted_header" => {
                let list = raw.required("TENANTRY_TRUSTED_PROXIES", "trusted_header")?;
                AuthMode::TrustedHeader {
                    proxies: parse_proxies(list)?,
                }
            }
            other => {
                return Err(err(
                    "TENANTRY_AUTH_MODE",
                    format!("expected one of cloudflare, dev, trusted_header (got {other:?})"),
                ))
            }
        };

        let allowed_origins = raw
            .get("TENANTRY_ALLOWED_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|o| {
                        let u = url::Url::parse(o).map_err(|_| {
                            err(
                                "TENANTRY_ALLOWED_ORIGINS",
                                format!("not an origin URL: {o:?}"),
                            )
                        })?;
                        Ok(u.origin().ascii_serialization())
                    })
                    .collect::<Result<Vec<_>, SettingsError>>()
            })
            .transpose()?
            .unwrap_or_default();

        let defaults = DbConfig::new("", None);
        let db = DbSettings {
            pool_size: raw.count("TENANTRY_DB_POOL_SIZE", defaults.max_connections)?,
            bypass_pool_size: raw.count(
                "TENANTRY_DB_BYPASS_POOL_SIZE",
                defaults.max_bypass_connections,
            )?,
            connect_timeout: raw
                .duration("TENANTRY_DB_CONNECT_TIMEOUT", defaults.connect_timeout)?,
            pool_timeout: raw.duration("TENANTRY_DB_POOL_TIMEOUT", defaults.pool_timeout)?,
            statement_timeout: raw
                .duration("TENANTRY_DB_STATEMENT_TIMEOUT", defaults.statement_timeout)?,
            lock_timeout: raw.duration("TENANTRY_DB_LOCK_TIMEOUT", defaults.lock_timeout)?,
            idle_in_transaction_timeout: raw.duration(
                "TENANTRY_DB_IDLE_IN_TRANSACTION_TIMEOUT",
                defaults.idle_in_transaction_timeout,
            )?,
            health_timeout: raw.duration("TENANTRY_HEALTH_TIMEOUT", defaults.ping_timeout)?,
            pooler: match raw.get("TENANTRY_DB_POOLER") {
                None => defaults.pooler,
                Some(value) => Pooler::parse(value).ok_or_else(|| {
                    err(
                        "TENANTRY_DB_POOLER",
                        format!("expected `direct` or `transaction` (got {value:?})"),
                    )
                })?,
            },
            principal_cache_size: raw.size(
                "TENANTRY_PRINCIPAL_CACHE_SIZE",
                defaults.principal_cache_capacity,
            )?,
            principal_cache_ttl: raw
                .duration("TENANTRY_PRINCIPAL_CACHE_TTL", defaults.principal_cache_ttl)?,
            principal_cache_max_age: raw.duration(
                "TENANTRY_PRINCIPAL_CACHE_MAX_AGE",
                defaults.principal_cache_max_age,
            )?,
            tenant_share_percent: match raw.get("TENANTRY_TENANT_SHARE") {
                None => Some(50),
                Some(value) => parse_share(value)?,
            },
            tenant_queue: match raw.get("TENANTRY_TENANT_QUEUE") {
                None => None,
                Some(_) => Some(raw.count("TENANTRY_TENANT_QUEUE", 1)?),
            },
            metrics_tenants: raw.size("TENANTRY_METRICS_TENANTS", defaults.metrics_tenants)?,
        };
        let tenant_weights = match raw.get("TENANTRY_TENANT_WEIGHTS") {
            None => Vec::new(),
            Some(list) => parse_weights(list)?,
        };
        let metrics_bind = match raw.get("TENANTRY_METRICS_BIND") {
            None => None,
            Some(bind) => {
                Some(resolve_bind(bind).map_err(|e| err("TENANTRY_METRICS_BIND", e.problem))?)
            }
        };
        let serve = ServeConfig::default();
        let http = ServeConfig {
            header_timeout: raw.duration("TENANTRY_HTTP_HEADER_TIMEOUT", serve.header_timeout)?,
            body_timeout: raw.duration("TENANTRY_HTTP_BODY_TIMEOUT", serve.body_timeout)?,
            request_timeout: raw
                .duration("TENANTRY_HTTP_REQUEST_TIMEOUT", serve.request_timeout)?,
            idle_timeout: raw.duration("TENANTRY_HTTP_IDLE_TIMEOUT", serve.idle_timeout)?,
            max_connections: raw.count("TENANTRY_HTTP_MAX_CONNECTIONS", serve.max_connections)?,
            body_limit: raw.count("TENANTRY_HTTP_BODY_LIMIT", serve.body_limit)?,
            drain_timeout: raw.duration("TENANTRY_DRAIN_TIMEOUT", serve.drain_timeout)?,
            max_requests_per_tenant: raw.count(
                "TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT",
                serve.max_requests_per_tenant,
            )?,
        };
        // Under a transaction pooler the app URL is the pooler's: the listener's session must
        // be named, or there is none (cached principals then live at most the TTL).
        let listen_database_url = match (listen_database_url, db.pooler) {
            (Some(url), _) => Some(url),
            (None, Pooler::Direct) => Some(app_database_url.clone()),
            (None, Pooler::Transaction) => None,
        };
        if environment == Environment::Production {
            // The URLs derived from DATABASE_URL share its host and parameters.
            let given = [
                ("DATABASE_URL", Some(database_url.as_str())),
                (
                    "TENANTRY_APP_DATABASE_URL",
                    raw.get("TENANTRY_APP_DATABASE_URL"),
                ),
                (
                    "TENANTRY_BYPASS_DATABASE_URL",
                    raw.get("TENANTRY_BYPASS_DATABASE_URL"),
                ),
                (
                    "TENANTRY_DIRECTORY_DATABASE_URL",
                    raw.get("TENANTRY_DIRECTORY_DATABASE_URL"),
                ),
                (
                    "TENANTRY_LISTEN_DATABASE_URL",
                    raw.get("TENANTRY_LISTEN_DATABASE_URL"),
                ),
            ];
            for (variable, url) in given {
                if let Some(url) = url {
                    crate::pool::tls::require_tls_in_production(url)
                        .map_err(|e| err(variable, e))?;
                }
            }
        }
        if http.idle_timeout <= http.request_timeout {
            return Err(err(
                "TENANTRY_HTTP_IDLE_TIMEOUT",
                format!(
                    "must be longer than TENANTRY_HTTP_REQUEST_TIMEOUT ({} ms), or connections would be closed under slow requests",
                    http.request_timeout.as_millis()
                ),
            ));
        }

        Ok(Settings {
            roles,
            database_url,
            app_database_url,
            bypass_database_url,
            directory_database_url,
            listen_database_url,
            bind,
            bind_addr,
            environment,
            auth,
            allowed_origins,
            db,
            http,
            tenant_weights,
            metrics_bind,
        })
    }
}

/// `TENANTRY_TENANT_SHARE`: `50%`, `0.5` or `off`; in percent, 1 to 100.
fn parse_share(value: &str) -> Result<Option<u32>, SettingsError> {
    const VAR: &str = "TENANTRY_TENANT_SHARE";
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let percent = match value.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok(),
        None => value.parse::<f64>().ok().map(|f| f * 100.0),
    };
    match percent {
        Some(p) if (1.0..=100.0).contains(&p) => Ok(Some(p.round() as u32)),
        _ => Err(err(
            VAR,
            format!(
                "expected a share of the pool like 50% or 0.5 (1% to 100%), or off (got {value:?})"
            ),
        )),
    }
}

/// `TENANTRY_TENANT_WEIGHTS`: `<tenant id>=<weight>,..`, weights from 0.01 to 100.
fn parse_weights(list: &str) -> Result<Vec<(uuid::Uuid, u32)>, SettingsError> {
    const VAR: &str = "TENANTRY_TENANT_WEIGHTS";
    let mut weights = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = item.split_once('=').and_then(|(id, w)| {
            let id = uuid::Uuid::parse_str(id.trim()).ok()?;
            let w: f64 = w.trim().parse().ok()?;
            (0.01..=100.0)
                .contains(&w)
                .then(|| (id, (w * 1000.0).round() as u32))
        });
        match parsed {
            Some(pair) => weights.push(pair),
            None => {
                return Err(err(
                    VAR,
                    format!(
                    "expected <tenant id>=<weight from 0.01 to 100>, e.g. 2f0c..=2 (got {item:?})"
                ),
                ))
            }
        }
    }
    Ok(weights)
}

/// Parses `500ms`, `5s` or `2m`.
fn parse_duration(value: &str) -> Option<Duration> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// The raw variables, deserialized from the environment with `envy` (serde): every field is an
/// optional string, validated by [`Settings::from_map`].
#[derive(serde::Deserialize, Default)]
struct RawVars {
    database_url: Option<String>,
    tenantry_role_prefix: Option<String>,
    tenantry_app_role: Option<String>,
    tenantry_bypass_role: Option<String>,
    tenantry_directory_role: Option<String>,
    tenantry_app_database_url: Option<String>,
    tenantry_bypass_database_url: Option<String>,
    tenantry_listen_database_url: Option<String>,
    tenantry_directory_database_url: Option<String>,
    tenantry_bind: Option<String>,
    tenantry_env: Option<String>,
    tenantry_auth_mode: Option<String>,
    tenantry_cf_team_domain: Option<String>,
    tenantry_cf_audience: Option<String>,
    tenantry_cf_certs_url: Option<String>,
    tenantry_dev_user_email: Option<String>,
    tenantry_trusted_proxies: Option<String>,
    tenantry_allowed_origins: Option<String>,
    tenantry_db_pool_size: Option<String>,
    tenantry_db_bypass_pool_size: Option<String>,
    tenantry_db_connect_timeout: Option<String>,
    tenantry_db_pool_timeout: Option<String>,
    tenantry_db_statement_timeout: Option<String>,
    tenantry_db_lock_timeout: Option<String>,
    tenantry_db_idle_in_transaction_timeout: Option<String>,
    tenantry_health_timeout: Option<String>,
    tenantry_db_pooler: Option<String>,
    tenantry_principal_cache_size: Option<String>,
    tenantry_principal_cache_ttl: Option<String>,
    tenantry_principal_cache_max_age: Option<String>,
    tenantry_http_header_timeout: Option<String>,
    tenantry_http_body_timeout: Option<String>,
    tenantry_http_request_timeout: Option<String>,
    tenantry_http_idle_timeout: Option<String>,
    tenantry_http_max_connections: Option<String>,
    tenantry_http_body_limit: Option<String>,
    tenantry_drain_timeout: Option<String>,
    tenantry_http_max_requests_per_tenant: Option<String>,
    tenantry_tenant_share: Option<String>,
    tenantry_tenant_queue: Option<String>,
    tenantry_tenant_weights: Option<String>,
    tenantry_metrics_bind: Option<String>,
    tenantry_metrics_tenants: Option<String>,
}

struct Raw(HashMap<&'static str, String>);

impl Raw {
    fn load(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let v: RawVars = envy::from_iter(vars.iter().map(|(k, v)| (k.clone(), v.clone())))
            .map_err(|e| err("environment", e.to_string()))?;
        let pairs = [
            ("DATABASE_URL", v.database_url),
            ("TENANTRY_ROLE_PREFIX", v.tenantry_role_prefix),
            ("TENANTRY_APP_ROLE", v.tenantry_app_role),
            ("TENANTRY_BYPASS_ROLE", v.tenantry_bypass_role),
            ("TENANTRY_DIRECTORY_ROLE", v.tenantry_directory_role),
            ("TENANTRY_APP_DATABASE_URL", v.tenantry_app_database_url),
            (
                "TENANTRY_BYPASS_DATABASE_URL",
                v.tenantry_bypass_database_url,
            ),
            (
                "TENANTRY_LISTEN_DATABASE_URL",
                v.tenantry_listen_database_url,
            ),
            (
                "TENANTRY_DIRECTORY_DATABASE_URL",
                v.tenantry_directory_database_url,
            ),
            ("TENANTRY_BIND", v.tenantry_bind),
            ("TENANTRY_ENV", v.tenantry_env),
            ("TENANTRY_AUTH_MODE", v.tenantry_auth_mode),
            ("TENANTRY_CF_TEAM_DOMAIN", v.tenantry_cf_team_domain),
            ("TENANTRY_CF_AUDIENCE", v.tenantry_cf_audience),
            ("TENANTRY_CF_CERTS_URL", v.tenantry_cf_certs_url),
            ("TENANTRY_DEV_USER_EMAIL", v.tenantry_dev_user_email),
            ("TENANTRY_TRUSTED_PROXIES", v.tenantry_trusted_proxies),
            ("TENANTRY_ALLOWED_ORIGINS", v.tenantry_allowed_origins),
            ("TENANTRY_DB_POOL_SIZE", v.tenantry_db_pool_size),
            (
                "TENANTRY_DB_BYPASS_POOL_SIZE",
                v.tenantry_db_bypass_pool_size,
            ),
            ("TENANTRY_DB_CONNECT_TIMEOUT", v.tenantry_db_connect_timeout),
            ("TENANTRY_DB_POOL_TIMEOUT", v.tenantry_db_pool_timeout),
            (
                "TENANTRY_DB_STATEMENT_TIMEOUT",
                v.tenantry_db_statement_timeout,
            ),
            ("TENANTRY_DB_LOCK_TIMEOUT", v.tenantry_db_lock_timeout),
            (
                "TENANTRY_DB_IDLE_IN_TRANSACTION_TIMEOUT",
                v.tenantry_db_idle_in_transaction_timeout,
            ),
            ("TENANTRY_HEALTH_TIMEOUT", v.tenantry_health_timeout),
            ("TENANTRY_DB_POOLER", v.tenantry_db_pooler),
            (
                "TENANTRY_PRINCIPAL_CACHE_SIZE",
                v.tenantry_principal_cache_size,
            ),
            (
                "TENANTRY_PRINCIPAL_CACHE_TTL",
                v.tenantry_principal_cache_ttl,
            ),
            (
                "TENANTRY_PRINCIPAL_CACHE_MAX_AGE",
                v.tenantry_principal_cache_max_age,
            ),
            (
                "TENANTRY_HTTP_HEADER_TIMEOUT",
                v.tenantry_http_header_timeout,
            ),
            ("TENANTRY_HTTP_BODY_TIMEOUT", v.tenantry_http_body_timeout),
            (
                "TENANTRY_HTTP_REQUEST_TIMEOUT",
                v.tenantry_http_request_timeout,
            ),
            ("TENANTRY_HTTP_IDLE_TIMEOUT", v.tenantry_http_idle_timeout),
            (
                "TENANTRY_HTTP_MAX_CONNECTIONS",
                v.tenantry_http_max_connections,
            ),
            ("TENANTRY_HTTP_BODY_LIMIT", v.tenantry_http_body_limit),
            ("TENANTRY_DRAIN_TIMEOUT", v.tenantry_drain_timeout),
            (
                "TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT",
                v.tenantry_http_max_requests_per_tenant,
            ),
            ("TENANTRY_TENANT_SHARE", v.tenantry_tenant_share),
            ("TENANTRY_TENANT_QUEUE", v.tenantry_tenant_queue),
            ("TENANTRY_TENANT_WEIGHTS", v.tenantry_tenant_weights),
            ("TENANTRY_METRICS_BIND", v.tenantry_metrics_bind),
            ("TENANTRY_METRICS_TENANTS", v.tenantry_metrics_tenants),
        ];
        Ok(Raw(pairs
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v?.trim().to_owned();
                (!v.is_empty()).then_some((k, v))
            })
            .collect()))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A duration (`500ms`, `5s`, `2m`) greater than zero, or `default`.
    fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, SettingsError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        match parse_duration(value) {
            Some(d) if !d.is_zero() => Ok(d),
            Some(_) => Err(err(name, "must be greater than zero")),
            None => Err(err(
                name,
                format!("expected a duration like 500ms, 5s or 2m (got {value:?})"),
            )),
        }
    }

    /// A whole number (zero allowed), or `default`.
    fn size(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        value
            .parse::<usize>()
            .map_err(|_| err(name, format!("expected a whole number (got {value:?})")))
    }

    /// A whole number greater than zero, or `default`.
    fn count(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        match value.parse::<usize>() {
            Ok(0) => Err(err(name, "must be greater than zero")),
            Ok(n) => Ok(n),
            Err(_) => Err(err(
                name,
                format!("expected a whole number (got {value:?})"),
            )),
        }
    }

    fn required(&self, name: &'static str, mode: &str) -> Result<&str, SettingsError> {
        self.get(name)
            .ok_or_else(|| err(name, format!("required when TENANTRY_AUTH_MODE={mode}")))
    }
}

/// `TENANTRY_ROLE_PREFIX` and the three `TENANTRY_*_ROLE` variables.
fn role_names(raw: &Raw) -> Result<crate::schema::RoleNames, SettingsError> {
    let prefix = raw.get("TENANTRY_ROLE_PREFIX").unwrap_or("tenantry_");
    let from_prefix = crate::schema::RoleNames::with_prefix(prefix)
        .map_err(|e| err("TENANTRY_ROLE_PREFIX", e.0))?;
    let mut roles = from_prefix;
    for (variable, slot) in [
        ("TENANTRY_APP_ROLE", &mut roles.app),
        ("TENANTRY_BYPASS_ROLE", &mut roles.bypass),
        ("TENANTRY_DIRECTORY_ROLE", &mut roles.directory),
    ] {
        if let Some(name) = raw.get(variable) {
            *slot = name.to_owned();
            crate::schema::RoleNames {
                app: name.to_owned(),
                bypass: format!("{name}_b"),
                directory: format!("{name}_d"),
            }
            .checked()
            .map_err(|e| err(variable, e.0))?;
        }
    }
    roles.checked().map_err(|e| err("TENANTRY_APP_ROLE", e.0))
}

fn parse_pg_url(variable: &'static str, value: &str) -> Result<PgUrl, SettingsError> {
    let url = PgUrl::parse(value).map_err(|e| err(variable, e.to_string()))?;
    // `sslmode` and `sslrootcert` are checked at start, not at the first connection.
    crate::pool::tls::request(value).map_err(|e| err(variable, e))?;
    Ok(url)
}

fn resolve_bind(bind: &str) -> Result<SocketAddr, SettingsError> {
    if let Ok(addr) = bind.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = bind.rsplit_once(':').ok_or_else(|| {
        err(
            "TENANTRY_BIND",
            format!("expected host:port (got {bind:?})"),
        )
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| err("TENANTRY_BIND", format!("bad port in {bind:?}")))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| err("TENANTRY_BIND", format!("cannot resolve {bind:?}")))
}

/// A [`CloudflareConfigError`] as the setting it comes from.
fn cloudflare_error(e: CloudflareConfigError) -> SettingsError {
    let variable = match e {
        CloudflareConfigError::InvalidAudience => "TENANTRY_CF_AUDIENCE",
        CloudflareConfigError::InvalidCertsUrl { .. } => "TENANTRY_CF_CERTS_URL",
        _ => "TENANTRY_CF_TEAM_DOMAIN",
    };
    err(variable, e.to_string())
}

/// The dev user is a person (dev mode makes an `Identity::User`, never a service token), so its
/// setting must be an email; a service identity's `<client id>.access` is refused here.
fn looks_like_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((user, host)) if !user.is_empty() && host.contains('.') && !s.contains(char::is_whitespace))
}

fn parse_proxies(list: &str) -> Result<Vec<IpNet>, SettingsError> {
    const VAR: &str = "TENANTRY_TRUSTED_PROXIES";
    let mut nets = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let net: IpNet = item
            .parse()
            .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| err(VAR, format!("not a CIDR or address: {item:?}")))?;
        if net.prefix_len() == 0 {
            return Err(err(
                VAR,
                format!("{item} trusts every address; list your proxies' own ranges"),
            ));
        }
        nets.push(net);
    }
    if nets.is_empty() {
        return Err(err(
            VAR,
            "is empty; list the proxies allowed to assert identities",
        ));
    }
    // Together (overlaps counted once), the list may not cover more addresses of a family than
    // that family's private ranges together, RFC 1918 (10/8, 172.16/12, 192.168/16) for IPv4,
    // fc00::/7 and fe80::/10 for IPv6, plus a public /16 (IPv4) or /64 (IPv6) of proxies.
    // `0.0.0.0/1,128.0.0.0/1` trusts everyone as surely as `0.0.0.0/0`.
    const V4_PRIVATE: u128 = (1 << 24) + (1 << 20) + (1 << 16) + (1 << 16);
    const V6_PRIVATE: u128 = (1 << 121) + (1 << 118) + (1 << 64);
    let (mut v4, mut v6) = (0u128, 0u128);
    for net in IpNet::aggregate(&nets) {
        let size = 1u128
            .checked_shl(u32::from(net.max_prefix_len() - net.prefix_len()))
            .unwrap_or(u128::MAX);
        match net {
            IpNet::V4(_) => v4 = v4.saturating_add(size),
            IpNet::V6(_) => v6 = v6.saturating_add(size),
        }
    }
    if v4 > V4_PRIVATE || v6 > V6_PRIVATE {
        return Err(err(
            VAR,
            format!(
                "{list} covers more addresses than the private networks (10.0.0.0/8, \
                 172.16.0.0/12 and 192.168.0.0/16; fc00::/7 and fe80::/10): anyone could assert \
                 an identity; list your proxies' own ranges"
            ),
        ));
    }
    Ok(nets)
}

#[cfg(test)]
mod tests;
