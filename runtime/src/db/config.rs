//! [`DbConfig`]: what [`Db::connect`] reads, and the settings each transaction derives from it.

use super::*;

/// Settings of [`Db::connect`]. [`DbConfig::new`] fills in the defaults below; every duration
/// must be greater than zero.
///
/// The three session timeouts are sent in each connection's startup packet (`options`), so they
/// hold for every statement of both roles; a URL's own `options` parameter overrides them.
/// Behind a transaction pooler ([`Pooler::Transaction`]) they are set with `SET LOCAL` at the
/// start of each transaction instead.
///
/// [`Db::connect`] checks at start what the configuration needs and names the setting when it
/// does not hold: the app URL's role (exists, neither superuser nor `BYPASSRLS`), the bypass
/// URL's role (exists, bypasses row-level security), and, with [`Pooler::Direct`], that the app
/// URL does not lead to a transaction pooler.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// URL of the tenant pool: a role that is neither superuser nor `BYPASSRLS`.
    pub app_url: String,
    /// URL of the bypass pool (a `BYPASSRLS` role), or `None` to refuse all bypasses.
    pub bypass_url: Option<String>,
    /// URL of the directory pool: the role `tenantry_directory`, which alone may call the
    /// directory functions (principal lookups) and read the tenant keys, and runs no SQL of the
    /// application's. `None`: the app URL with the user `tenantry_directory` and no password
    /// (what a server that trusts local logins accepts; give it explicitly elsewhere).
    pub directory_url: Option<String>,
    /// Maximum connections of the tenant pool (default 16).
    pub max_connections: usize,
    /// Maximum connections of the bypass pool (default 2).
    pub max_bypass_connections: usize,
    /// Maximum connections of the directory pool (default 2): principal lookups that miss the
    /// principal cache, and the tenant keys.
    pub max_directory_connections: usize,
    /// Longest wait to open a connection: TCP connect, startup and authentication (default 5 s).
    pub connect_timeout: Duration,
    /// Longest wait for a free pooled connection when all are in use (default 1 s); past it the
    /// request fails with [`DbError::Pool`] (503 in the example app).
    pub pool_timeout: Duration,
    /// `statement_timeout` of every session (default 5 s). The client also gives up when the
    /// server owes a reply and stays silent for this long plus one second (a frozen network).
    pub statement_timeout: Duration,
    /// `lock_timeout` of every session (default 2 s): a statement waiting for a lock fails.
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout` of every session (default 10 s).
    pub idle_in_transaction_timeout: Duration,
    /// Longest [`Db::ping`], checkout included (default 2 s).
    pub ping_timeout: Duration,
    /// How the URLs reach PostgreSQL (default [`Pooler::Direct`]). [`Pooler::Transaction`]
    /// runs without a per-connection statement cache, for PgBouncer in transaction mode.
    pub pooler: Pooler,
    /// URL of the directory listener's session (`LISTEN tenantry_directory`). `None`: the app
    /// URL with [`Pooler::Direct`]; no listener with [`Pooler::Transaction`] (the app URL is the
    /// pooler's), so cached principals live at most the TTL below. It must reach PostgreSQL
    /// directly or through a session-mode pooler: behind a transaction-mode pooler
    /// (PgBouncer's `pool_mode = transaction`) a `LISTEN` stops hearing once the pooler hands
    /// the server connection to another client, so [`Db::connect`] refuses such a URL
    /// (naming `TENANTRY_LISTEN_DATABASE_URL`). When it cannot connect, or its connection
    /// fails, the principal cache falls back to the TTL below.
    pub listen_url: Option<String>,
    /// How many identities the principal cache holds (default 10,000; 0: no cache, every
    /// request looks its principal up, and no listener session is opened).
    pub principal_cache_capacity: usize,
    /// How long a cached principal lives while the listener is not confirmed up (default
    /// 1 s): a change to the directory takes effect within it even when notifications are
    /// lost. While the listener is up (and proven to hear the app's database), entries live
    /// until the directory changes, or at most [`DbConfig::principal_cache_max_age`].
    pub principal_cache_ttl: Duration,
    /// The hard maximum age of a cached principal (default 1 s), listener or not: a directory
    /// change that notifies nobody (made with `session_replication_role = replica`, as restores
    /// and logical replication do) is honoured within it.
    pub principal_cache_max_age: Duration,
    /// This deployment's role names ([`RoleNames`](crate::schema::RoleNames)): the default directory
    /// URL uses its directory role.
    pub roles: crate::schema::RoleNames,
    /// How the tenant pool is shared between tenants (default: no tenant holds more than half
    /// of it; see [`FairShare`]).
    pub fair_share: FairShare,
    /// Tenants named in the metrics (default 20): the busiest; the others are counted together
    /// as `_other` (see [`Db::metrics_text`]).
    pub metrics_tenants: usize,
}

impl DbConfig {
    /// A config with the default pool sizes and timeouts.
    pub fn new(app_url: impl Into<String>, bypass_url: Option<String>) -> Self {
        let t = Timeouts::default();
        Self {
            app_url: app_url.into(),
            bypass_url,
            directory_url: None,
            max_connections: 16,
            max_bypass_connections: 2,
            max_directory_connections: 2,
            connect_timeout: t.connect,
            pool_timeout: t.wait,
            statement_timeout: t.statement,
            lock_timeout: t.lock,
            idle_in_transaction_timeout: t.idle_in_transaction,
            ping_timeout: Duration::from_secs(2),
            pooler: Pooler::Direct,
            listen_url: None,
            principal_cache_capacity: 10_000,
            principal_cache_ttl: Duration::from_secs(1),
            principal_cache_max_age: Duration::from_secs(1),
            roles: crate::schema::RoleNames::default(),
            fair_share: FairShare::default(),
            metrics_tenants: 20,
        }
    }

    pub(super) fn timeouts(&self) -> Result<Timeouts, DbError> {
        let durations = [
            ("connect_timeout", self.connect_timeout),
            ("pool_timeout", self.pool_timeout),
            ("statement_timeout", self.statement_timeout),
            ("lock_timeout", self.lock_timeout),
            (
                "idle_in_transaction_timeout",
                self.idle_in_transaction_timeout,
            ),
            ("ping_timeout", self.ping_timeout),
            ("principal_cache_ttl", self.principal_cache_ttl),
            ("principal_cache_max_age", self.principal_cache_max_age),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(DbError::Config(format!(
                "DbConfig::{name} must be greater than zero"
            )));
        }
        Ok(Timeouts {
            connect: self.connect_timeout,
            wait: self.pool_timeout,
            statement: self.statement_timeout,
            lock: self.lock_timeout,
            idle_in_transaction: self.idle_in_transaction_timeout,
        })
    }
}

/// The session timeouts for the transaction, for transactions behind a transaction pooler (which
/// refuses them in the startup packet and would not keep them in a session anyway). One
/// `set_config(.., true)` statement rather than `SET LOCAL`s: the same transaction-local
/// settings, and on Citus (which forwards each `SET LOCAL`'s whole query text to the workers,
/// `BEGIN` included, warning "there is already a transaction in progress" there) not forwarded;
/// the coordinator enforces them for the whole statement.
pub(super) fn tx_settings(pooler: Pooler, t: &Timeouts) -> String {
    match pooler {
        Pooler::Direct => String::new(),
        Pooler::Transaction => format!(
            "; SELECT set_config('statement_timeout', '{}', true), \
             set_config('lock_timeout', '{}', true), \
             set_config('idle_in_transaction_session_timeout', '{}', true)",
            t.statement.as_millis(),
            t.lock.as_millis(),
            t.idle_in_transaction.as_millis()
        ),
    }
}

pub(super) const APP_URL: &str = "TENANTRY_APP_DATABASE_URL";
pub(super) const BYPASS_URL: &str = "TENANTRY_BYPASS_DATABASE_URL";
pub(super) const LISTEN_URL: &str = "TENANTRY_LISTEN_DATABASE_URL";
