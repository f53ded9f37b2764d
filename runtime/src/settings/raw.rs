//! The raw variables of the environment and their parsers: each value read once, each error
//! naming its variable.

use super::*;

/// `TENANTRY_TENANT_SHARE`: `50%`, `0.5` or `off`; in percent, 1 to 100.
pub(super) fn parse_share(value: &str) -> Result<Option<u32>, SettingsError> {
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
pub(super) fn parse_weights(list: &str) -> Result<Vec<(uuid::Uuid, u32)>, SettingsError> {
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
pub(super) fn parse_duration(value: &str) -> Option<Duration> {
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
pub(super) struct RawVars {
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

pub(super) struct Raw(HashMap<&'static str, String>);

impl Raw {
    pub(super) fn load(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
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

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A duration (`500ms`, `5s`, `2m`) greater than zero, or `default`.
    pub(super) fn duration(
        &self,
        name: &'static str,
        default: Duration,
    ) -> Result<Duration, SettingsError> {
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
    pub(super) fn size(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        value
            .parse::<usize>()
            .map_err(|_| err(name, format!("expected a whole number (got {value:?})")))
    }

    /// A whole number greater than zero, or `default`.
    pub(super) fn count(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
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

    pub(super) fn required(&self, name: &'static str, mode: &str) -> Result<&str, SettingsError> {
        self.get(name)
            .ok_or_else(|| err(name, format!("required when TENANTRY_AUTH_MODE={mode}")))
    }
}

/// `TENANTRY_ROLE_PREFIX` and the three `TENANTRY_*_ROLE` variables.
pub(super) fn role_names(raw: &Raw) -> Result<crate::schema::RoleNames, SettingsError> {
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

pub(super) fn parse_pg_url(variable: &'static str, value: &str) -> Result<PgUrl, SettingsError> {
    let url = PgUrl::parse(value).map_err(|e| err(variable, e.to_string()))?;
    // `sslmode` and `sslrootcert` are checked at start, not at the first connection.
    crate::pool::tls::request(value).map_err(|e| err(variable, e))?;
    Ok(url)
}

pub(super) fn resolve_bind(bind: &str) -> Result<SocketAddr, SettingsError> {
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
pub(super) fn cloudflare_error(e: CloudflareConfigError) -> SettingsError {
    let variable = match e {
        CloudflareConfigError::InvalidAudience => "TENANTRY_CF_AUDIENCE",
        CloudflareConfigError::InvalidCertsUrl { .. } => "TENANTRY_CF_CERTS_URL",
        _ => "TENANTRY_CF_TEAM_DOMAIN",
    };
    err(variable, e.to_string())
}

/// The dev user is a person (dev mode makes an `Identity::User`, never a service token), so its
/// setting must be an email; a service identity's `<client id>.access` is refused here.
pub(super) fn looks_like_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((user, host)) if !user.is_empty() && host.contains('.') && !s.contains(char::is_whitespace))
}

pub(super) fn parse_proxies(list: &str) -> Result<Vec<IpNet>, SettingsError> {
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
