//! Tests of [`Settings::from_map`]: defaults, each variable's parsing and the cross-field rules.

use super::*;

/// The example's database, given to every test that names none.
const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tenantry_example";

fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let mut vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.entry("DATABASE_URL".to_owned())
        .or_insert_with(|| DATABASE_URL.to_owned());
    Settings::from_map(&vars)
}

#[test]
fn database_url_has_no_default() {
    let e = Settings::from_map(
        &CF.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .expect_err("DATABASE_URL is required");
    assert_eq!(e.variable, "DATABASE_URL");
    assert!(e.to_string().starts_with("DATABASE_URL: not set"), "{e}");
}

fn fails(pairs: &[(&str, &str)], variable: &str, needle: &str) {
    let e = load(pairs).expect_err("must fail");
    assert_eq!(e.variable, variable, "{e}");
    assert!(e.to_string().contains(needle), "{e}");
    assert!(
        e.to_string().starts_with(variable),
        "one line naming the variable: {e}"
    );
}

const CF: [(&str, &str); 2] = [
    ("TENANTRY_CF_TEAM_DOMAIN", "acme.cloudflareaccess.com"),
    ("TENANTRY_CF_AUDIENCE", "aud-tag"),
];

#[test]
fn defaults_are_the_contracts() {
    let s = load(&CF).unwrap();
    assert_eq!(s.database_url, DATABASE_URL);
    assert_eq!(
        s.app_database_url,
        "postgres://tenantry_app@127.0.0.1:5432/tenantry_example"
    );
    assert_eq!(
        s.bypass_database_url,
        "postgres://tenantry_bypass@127.0.0.1:5432/tenantry_example"
    );
    assert_eq!(s.bind_addr, "127.0.0.1:3000".parse().unwrap());
    assert_eq!(s.environment, Environment::Development);
    let AuthMode::Cloudflare(cf) = &s.auth else {
        panic!("{:?}", s.auth)
    };
    assert_eq!(cf.team_domain, "acme.cloudflareaccess.com");
    assert_eq!(cf.audience, "aud-tag");
    assert_eq!(
        cf.certs_url(),
        "https://acme.cloudflareaccess.com/cdn-cgi/access/certs"
    );
}

#[test]
fn the_pooler_is_direct_unless_told_otherwise() {
    assert_eq!(load(&CF).unwrap().db_config().pooler, Pooler::Direct);
    let s = load(&[CF[0], CF[1], ("TENANTRY_DB_POOLER", "transaction")]).unwrap();
    assert_eq!(s.db.pooler, Pooler::Transaction);
    assert_eq!(s.db_config().pooler, Pooler::Transaction);
    fails(
        &[CF[0], CF[1], ("TENANTRY_DB_POOLER", "pgbouncer")],
        "TENANTRY_DB_POOLER",
        "expected `direct` or `transaction`",
    );
}

#[test]
fn behind_a_transaction_pooler_the_listener_is_never_the_app_url() {
    let pooled = [CF[0], CF[1], ("TENANTRY_DB_POOLER", "transaction")];
    let s = load(&pooled).unwrap();
    assert_eq!(s.listen_database_url, None, "no session through the pooler");
    assert_eq!(s.db_config().listen_url, None);
    let direct = "postgres://tenantry_app@db.internal:5432/app";
    let s = load(&[
        pooled[0],
        pooled[1],
        pooled[2],
        ("TENANTRY_LISTEN_DATABASE_URL", direct),
    ])
    .unwrap();
    assert_eq!(s.db_config().listen_url.as_deref(), Some(direct));
}

#[test]
fn the_principal_cache_listens_on_the_app_url_unless_told() {
    let s = load(&CF).unwrap();
    assert_eq!(
        s.listen_database_url.as_deref(),
        Some(s.app_database_url.as_str())
    );
    let config = s.db_config();
    assert_eq!(
        config.listen_url.as_deref(),
        Some(s.app_database_url.as_str())
    );
    assert_eq!(config.principal_cache_capacity, 10_000);
    assert_eq!(config.principal_cache_ttl, Duration::from_secs(1));
    let direct = "postgres://tenantry_app@db.internal:5432/app";
    let s = load(&[
        CF[0],
        CF[1],
        ("TENANTRY_LISTEN_DATABASE_URL", direct),
        ("TENANTRY_PRINCIPAL_CACHE_SIZE", "0"),
        ("TENANTRY_PRINCIPAL_CACHE_TTL", "250ms"),
    ])
    .unwrap();
    let config = s.db_config();
    assert_eq!(config.listen_url.as_deref(), Some(direct));
    assert_eq!(config.principal_cache_capacity, 0);
    assert_eq!(config.principal_cache_ttl, Duration::from_millis(250));
    fails(
        &[CF[0], CF[1], ("TENANTRY_PRINCIPAL_CACHE_TTL", "0s")],
        "TENANTRY_PRINCIPAL_CACHE_TTL",
        "greater than zero",
    );
    fails(
        &[
            CF[0],
            CF[1],
            ("TENANTRY_LISTEN_DATABASE_URL", "mysql://x/y"),
        ],
        "TENANTRY_LISTEN_DATABASE_URL",
        "",
    );
}

#[test]
fn derived_urls_drop_the_password() {
    let s = load(&[
        CF[0],
        CF[1],
        (
            "DATABASE_URL",
            "postgres://admin:secret@db.internal:6432/app",
        ),
    ])
    .unwrap();
    assert_eq!(
        s.app_database_url,
        "postgres://tenantry_app@db.internal:6432/app"
    );
}

#[test]
fn each_problem_names_its_variable() {
    fails(
        &[],
        "TENANTRY_CF_TEAM_DOMAIN",
        "required when TENANTRY_AUTH_MODE=cloudflare",
    );
    fails(&[CF[0]], "TENANTRY_CF_AUDIENCE", "required");
    fails(
        &[
            (
                "TENANTRY_CF_TEAM_DOMAIN",
                "https://acme.cloudflareaccess.com/",
            ),
            CF[1],
        ],
        "TENANTRY_CF_TEAM_DOMAIN",
        "without a scheme",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_CF_CERTS_URL", "ftp://x/certs")],
        "TENANTRY_CF_CERTS_URL",
        "https",
    );
    fails(
        &[
            CF[0],
            CF[1],
            ("TENANTRY_CF_CERTS_URL", "http://keys.example.com/certs"),
        ],
        "TENANTRY_CF_CERTS_URL",
        "loopback",
    );
    fails(
        &[CF[0], ("TENANTRY_CF_AUDIENCE", "a tag")],
        "TENANTRY_CF_AUDIENCE",
        "no whitespace",
    );
    fails(
        &[("TENANTRY_AUTH_MODE", "ldap")],
        "TENANTRY_AUTH_MODE",
        "expected one of",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_ENV", "prod")],
        "TENANTRY_ENV",
        "development",
    );
    fails(
        &[CF[0], CF[1], ("DATABASE_URL", "mysql://x/y")],
        "DATABASE_URL",
        "postgres://",
    );
    fails(
        &[CF[0], CF[1], ("DATABASE_URL", "postgres://u@h:5432/")],
        "DATABASE_URL",
        "names no database",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_APP_DATABASE_URL", "nonsense")],
        "TENANTRY_APP_DATABASE_URL",
        "not a URL",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_BIND", "127.0.0.1")],
        "TENANTRY_BIND",
        "host:port",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_BIND", "127.0.0.1:http")],
        "TENANTRY_BIND",
        "bad port",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_ALLOWED_ORIGINS", "not an origin")],
        "TENANTRY_ALLOWED_ORIGINS",
        "origin",
    );
}

#[test]
fn timeouts_and_limits_default_and_parse() {
    let s = load(&CF).unwrap();
    assert_eq!(s.db.statement_timeout, Duration::from_secs(5));
    assert_eq!(s.db.lock_timeout, Duration::from_secs(2));
    assert_eq!(s.db.pool_timeout, Duration::from_secs(1));
    assert_eq!(s.db.health_timeout, Duration::from_secs(2));
    assert_eq!(s.http, ServeConfig::default());
    let s = load(&[
        CF[0],
        CF[1],
        ("TENANTRY_DB_STATEMENT_TIMEOUT", "750ms"),
        ("TENANTRY_DRAIN_TIMEOUT", "2m"),
        ("TENANTRY_HTTP_MAX_CONNECTIONS", "64"),
    ])
    .unwrap();
    assert_eq!(s.db.statement_timeout, Duration::from_millis(750));
    assert_eq!(s.db_config().statement_timeout, Duration::from_millis(750));
    assert_eq!(s.http.drain_timeout, Duration::from_secs(120));
    assert_eq!(s.http.max_connections, 64);
    fails(
        &[CF[0], CF[1], ("TENANTRY_DB_LOCK_TIMEOUT", "5")],
        "TENANTRY_DB_LOCK_TIMEOUT",
        "like 500ms",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_HTTP_HEADER_TIMEOUT", "0s")],
        "TENANTRY_HTTP_HEADER_TIMEOUT",
        "greater than zero",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_DB_POOL_SIZE", "many")],
        "TENANTRY_DB_POOL_SIZE",
        "whole number",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_HTTP_IDLE_TIMEOUT", "30s")],
        "TENANTRY_HTTP_IDLE_TIMEOUT",
        "longer than TENANTRY_HTTP_REQUEST_TIMEOUT",
    );
}

#[test]
fn dev_mode_guard_rails() {
    let dev = [
        ("TENANTRY_AUTH_MODE", "dev"),
        ("TENANTRY_DEV_USER_EMAIL", "dev@example.com"),
    ];
    assert!(matches!(load(&dev).unwrap().auth, AuthMode::Dev { .. }));
    assert!(
        load(&[dev[0], dev[1], ("TENANTRY_BIND", "localhost:3000")]).is_ok(),
        "localhost is loopback"
    );
    assert!(load(&[dev[0], dev[1], ("TENANTRY_BIND", "[::1]:3000")]).is_ok());
    fails(&[dev[0]], "TENANTRY_DEV_USER_EMAIL", "required");
    fails(
        &[dev[0], ("TENANTRY_DEV_USER_EMAIL", "nobody")],
        "TENANTRY_DEV_USER_EMAIL",
        "not an email",
    );
    fails(
        &[dev[0], dev[1], ("TENANTRY_ENV", "production")],
        "TENANTRY_AUTH_MODE",
        "production",
    );
    fails(
        &[dev[0], dev[1], ("TENANTRY_BIND", "0.0.0.0:3000")],
        "TENANTRY_BIND",
        "loopback",
    );
}

#[test]
fn trusted_header_needs_a_real_allow_list() {
    let mode = ("TENANTRY_AUTH_MODE", "trusted_header");
    let ok = load(&[
        mode,
        ("TENANTRY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7"),
    ])
    .unwrap();
    assert!(matches!(ok.auth, AuthMode::TrustedHeader { ref proxies } if proxies.len() == 2));
    fails(&[mode], "TENANTRY_TRUSTED_PROXIES", "required");
    fails(
        &[mode, ("TENANTRY_TRUSTED_PROXIES", " , ")],
        "TENANTRY_TRUSTED_PROXIES",
        "empty",
    );
    fails(
        &[mode, ("TENANTRY_TRUSTED_PROXIES", "0.0.0.0/0")],
        "TENANTRY_TRUSTED_PROXIES",
        "every address",
    );
    fails(
        &[mode, ("TENANTRY_TRUSTED_PROXIES", "::/0")],
        "TENANTRY_TRUSTED_PROXIES",
        "every address",
    );
    // Lists that together trust (nearly) everyone, however they are cut.
    for wide in [
        "0.0.0.0/1,128.0.0.0/1",
        "10.0.0.0/8,11.0.0.0/8",
        "0.0.0.0/2, 64.0.0.0/2, 128.0.0.0/2, 192.0.0.0/2",
        "::/1, 8000::/1",
        "2000::/3",
    ] {
        fails(
            &[mode, ("TENANTRY_TRUSTED_PROXIES", wide)],
            "TENANTRY_TRUSTED_PROXIES",
            "covers more addresses than the private networks",
        );
    }
    load(&[
        mode,
        (
            "TENANTRY_TRUSTED_PROXIES",
            "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 10.1.0.0/16, fc00::/7, 203.0.113.7",
        ),
    ])
    .expect("the private networks and a proxy's address");
    fails(
        &[mode, ("TENANTRY_TRUSTED_PROXIES", "10.0.0.0/33")],
        "TENANTRY_TRUSTED_PROXIES",
        "not a CIDR",
    );
}

#[test]
fn production_refuses_a_remote_database_without_tls() {
    let prod = |url_var: &'static str, url: &'static str| {
        vec![CF[0], CF[1], ("TENANTRY_ENV", "production"), (url_var, url)]
    };
    fails(
        &prod("DATABASE_URL", "postgres://migrator@db.internal:5432/app"),
        "DATABASE_URL",
        "sslmode=verify-full",
    );
    fails(
        &prod(
            "TENANTRY_APP_DATABASE_URL",
            "postgres://tenantry_app@db.internal:5432/app?sslmode=prefer",
        ),
        "TENANTRY_APP_DATABASE_URL",
        "must use TLS",
    );
    // TLS, an explicit `disable`, or a loopback host: the operator's choice, or no network.
    for ok in [
        "postgres://m@db.internal:5432/app?sslmode=require",
        "postgres://m@db.internal:5432/app?sslmode=verify-full&sslrootcert=system",
        "postgres://m@db.internal:5432/app?sslmode=disable",
        "postgres://m@127.0.0.1:5432/app",
    ] {
        load(&prod("DATABASE_URL", ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // Outside production, plain text to another host is allowed, but bad TLS settings are not.
    load(&[
        CF[0],
        CF[1],
        ("DATABASE_URL", "postgres://m@db.internal/app"),
    ])
    .unwrap();
    fails(
        &[
            CF[0],
            CF[1],
            (
                "TENANTRY_LISTEN_DATABASE_URL",
                "postgres://m@db/app?sslmode=verify-ca",
            ),
        ],
        "TENANTRY_LISTEN_DATABASE_URL",
        "needs sslrootcert",
    );
}

#[test]
fn role_names_per_deployment() {
    let s = load(&[CF[0], CF[1], ("TENANTRY_ROLE_PREFIX", "acme_")]).unwrap();
    assert_eq!(s.roles.all(), ["acme_app", "acme_bypass", "acme_directory"]);
    assert_eq!(
        s.app_database_url,
        "postgres://acme_app@127.0.0.1:5432/tenantry_example"
    );
    assert_eq!(
        s.bypass_database_url,
        "postgres://acme_bypass@127.0.0.1:5432/tenantry_example"
    );
    assert_eq!(s.db_config().roles, s.roles);
    let s = load(&[
        CF[0],
        CF[1],
        ("TENANTRY_ROLE_PREFIX", "acme_"),
        ("TENANTRY_BYPASS_ROLE", "acme_admin"),
    ])
    .unwrap();
    assert_eq!(s.roles.all(), ["acme_app", "acme_admin", "acme_directory"]);
    assert_eq!(
        load(&CF).unwrap().roles,
        crate::schema::RoleNames::default()
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_APP_ROLE", "Acme-App")],
        "TENANTRY_APP_ROLE",
        "not a usable role name",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_ROLE_PREFIX", "pg_")],
        "TENANTRY_ROLE_PREFIX",
        "not a usable role name",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_BYPASS_ROLE", "tenantry_app")],
        "TENANTRY_APP_ROLE",
        "must differ",
    );
}

#[test]
fn fair_shares_and_metrics_have_defaults_that_need_no_configuration() {
    let s = load(&CF).unwrap();
    assert_eq!(s.db.tenant_share_percent, Some(50));
    assert_eq!(s.db.tenant_queue, None);
    assert_eq!(s.db.metrics_tenants, 20);
    assert_eq!(s.http.max_requests_per_tenant, 256);
    assert_eq!(
        s.metrics_bind, None,
        "the metrics endpoint is off by default"
    );
    let config = s.db_config();
    assert_eq!(config.fair_share.share, Some(0.5));
    assert_eq!(config.metrics_tenants, 20);
}

#[test]
fn fair_shares_metrics_and_weights_are_read_and_checked() {
    let tenant = uuid::Uuid::new_v4();
    let weights = format!("{tenant}=2, {}=0.5", uuid::Uuid::nil());
    let s = load(&[
        CF[0],
        CF[1],
        ("TENANTRY_TENANT_SHARE", "25%"),
        ("TENANTRY_TENANT_QUEUE", "3"),
        ("TENANTRY_TENANT_WEIGHTS", &weights),
        ("TENANTRY_METRICS_BIND", "127.0.0.1:9100"),
        ("TENANTRY_METRICS_TENANTS", "5"),
        ("TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT", "40"),
    ])
    .unwrap();
    assert_eq!(s.db.tenant_share_percent, Some(25));
    assert_eq!(s.db.tenant_queue, Some(3));
    assert_eq!(
        s.tenant_weights,
        vec![(tenant, 2000), (uuid::Uuid::nil(), 500)]
    );
    assert_eq!(s.metrics_bind, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(s.http.max_requests_per_tenant, 40);
    let config = s.db_config();
    assert_eq!(config.fair_share.share, Some(0.25));
    assert_eq!(config.fair_share.weights.of(tenant), 2.0);
    assert_eq!(config.fair_share.weights.of(uuid::Uuid::new_v4()), 1.0);
    assert_eq!(
        load(&[CF[0], CF[1], ("TENANTRY_TENANT_SHARE", "0.5")])
            .unwrap()
            .db
            .tenant_share_percent,
        Some(50)
    );
    assert_eq!(
        load(&[CF[0], CF[1], ("TENANTRY_TENANT_SHARE", "off")])
            .unwrap()
            .db_config()
            .fair_share
            .share,
        None
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_TENANT_SHARE", "150%")],
        "TENANTRY_TENANT_SHARE",
        "50%",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_TENANT_SHARE", "half")],
        "TENANTRY_TENANT_SHARE",
        "off",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_TENANT_QUEUE", "0")],
        "TENANTRY_TENANT_QUEUE",
        "greater than zero",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_TENANT_WEIGHTS", "acme=2")],
        "TENANTRY_TENANT_WEIGHTS",
        "<tenant id>=<weight",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_METRICS_BIND", "nowhere")],
        "TENANTRY_METRICS_BIND",
        "host:port",
    );
    fails(
        &[CF[0], CF[1], ("TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT", "0")],
        "TENANTRY_HTTP_MAX_REQUESTS_PER_TENANT",
        "greater than zero",
    );
}
