//! [`Settings::from_env`]: the settings read from the environment, checked together (a mode
//! that production refuses, a URL that must be TLS).

use super::*;

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads settings from `vars` (the environment in tests).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let raw = Raw::load(vars)?;
        // No default: a new app is never pointed at another app's database.
        let database_url = raw
            .get("DATABASE_URL")
            .ok_or_else(|| {
                err(
                    "DATABASE_URL",
                    "not set: the PostgreSQL URL of the role that migrates, e.g. \
                     postgres://postgres@127.0.0.1:5432/myapp",
                )
            })?
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
