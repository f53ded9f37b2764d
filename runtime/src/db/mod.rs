//! [`Db`]: the connection pools and the transactions that use them.
//!
//! Tenant work runs on the app role (row-level security applies) inside a transaction that enters
//! its tenant through the tenant seal (`seal.rs`): `tenantry_enter` with a signed proof first, an
//! assertion of the tenant last. Audited cross-tenant work runs on a separate pool whose role has
//! `BYPASSRLS`; a tenant transaction can never reach that pool. tenantry's own lookups (principals,
//! the tenant keys) run on a third pool, the directory role's, which alone may call the directory
//! functions.
//!
//! Every wait is bounded (see [`DbConfig`]); the pools themselves live in `pool/`. Behind a
//! transaction pooler ([`Pooler::Transaction`]) every statement runs inside a transaction, and
//! each transaction sets the session timeouts itself.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::future::join;
use uuid::Uuid;

use crate::ctx::audit::AuditEntry;
use crate::ctx::bypass::AuditedBypass;
use crate::ctx::conn::{BypassConn, Taint, TenantConn};
use crate::ctx::{Access, Scope, TenantCtx};
use crate::error::DbError;
use crate::fairness::{FairShare, Fairness, Permit};
use crate::identity::{PrincipalCache, PrincipalCacheStatus};
use crate::jobs::Jobs;
use crate::pool::pooler::{self, Pooler};
use crate::pool::seal::{self, SealFailure};
use crate::pool::{
    self, ConnectError, Connector, Link, Outage, PgPool, Pooled, Purpose, Ticket, Timeouts,
};

mod fair;
mod identity;
mod keys;
mod one_rtt;

use crate::identity::listen::Directory;
use keys::{Keys, DIRECTORY_URL};

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

    fn timeouts(&self) -> Result<Timeouts, DbError> {
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

/// The database handle of a tenantry application: a tenant pool, a bypass pool and the
/// directory pool.
#[derive(Clone)]
pub struct Db {
    app: PgPool,
    bypass: Option<PgPool>,
    directory_pool: PgPool,
    app_outage: Arc<Outage>,
    bypass_outage: Arc<Outage>,
    directory_outage: Arc<Outage>,
    /// The tenant keys the seal's entries are signed with.
    keys: Arc<Keys>,
    ping_timeout: Duration,
    pooler: Pooler,
    /// Appended to each transaction's `BEGIN ..`: empty, or behind a transaction pooler the
    /// session timeouts as `SET LOCAL`s.
    tx_settings: Arc<str>,
    directory: Arc<Directory>,
    /// The tenant pool's fair shares and the per-tenant load (`fairness/`).
    fair: Arc<Fairness>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("app", &self.app.status())
            .field("bypass", &self.bypass.as_ref().map(|p| p.status()))
            .finish()
    }
}

fn pool(
    url: &str,
    size: usize,
    timeouts: Timeouts,
    pooler: Pooler,
    purpose: Purpose,
) -> Result<PgPool, DbError> {
    pool::build(url, size, timeouts, pooler, purpose).map_err(DbError::Config)
}

/// The audit action of an Owner entering a tenant it is not a member of.
const OWNER_ENTRY: &str = "owner.enter";

/// `url` with its user replaced by `role` and no password: the default directory URL.
fn with_role(url: &str, role: &str) -> Result<String, DbError> {
    let mut parsed = url::Url::parse(url).map_err(|e| {
        DbError::Config(format!(
            "{DIRECTORY_URL}: cannot derive it from the app URL ({e}); set it"
        ))
    })?;
    let derived = parsed.set_username(role).is_ok() && parsed.set_password(None).is_ok();
    if !derived {
        return Err(DbError::Config(format!(
            "{DIRECTORY_URL}: cannot derive it from the app URL; set it"
        )));
    }
    Ok(parsed.into())
}

/// The session timeouts as `SET LOCAL`s, for transactions behind a transaction pooler (which
/// refuses them in the startup packet and would not keep them in a session anyway).
fn tx_settings(pooler: Pooler, t: &Timeouts) -> String {
    match pooler {
        Pooler::Direct => String::new(),
        Pooler::Transaction => format!(
            "; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL idle_in_transaction_session_timeout = {}",
            t.statement.as_millis(),
            t.lock.as_millis(),
            t.idle_in_transaction.as_millis()
        ),
    }
}

const APP_URL: &str = "TENANTRY_APP_DATABASE_URL";
const BYPASS_URL: &str = "TENANTRY_BYPASS_DATABASE_URL";
const LISTEN_URL: &str = "TENANTRY_LISTEN_DATABASE_URL";

/// The listener's URL: the configured one; else the app URL, unless that is a transaction
/// pooler's (a `LISTEN` there would stop hearing at the pooler's next hand-over).
fn listen_url(config: &DbConfig) -> Option<&str> {
    match (&config.listen_url, config.pooler) {
        (Some(url), _) => Some(url),
        (None, Pooler::Direct) => Some(&config.app_url),
        (None, Pooler::Transaction) => None,
    }
}

/// A listener URL given (unless it is the app URL of a direct pool, which the app role's checks
/// cover) must lead to a session, never to a transaction pooler: that stops the start, naming the setting. One that
/// cannot be reached now is not fatal: the listener keeps trying, and the cache lives by its
/// TTL meanwhile.
async fn check_listen_url(config: &DbConfig) -> Result<(), DbError> {
    let checked = |u: &&str| config.pooler == Pooler::Transaction || *u != config.app_url;
    let Some(url) = config.listen_url.as_deref().filter(checked) else {
        return Ok(());
    };
    match pooler::require_session(url, LISTEN_URL).await {
        Err(e @ DbError::Pooler(_)) => Err(e),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "{LISTEN_URL} cannot be reached yet: cached principals live at most the TTL \
                 until the directory listener connects"
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// A connection for a check at start: a failure names `setting`.
async fn start_conn(pool: &PgPool, setting: &str, pooler: Pooler) -> Result<Pooled, DbError> {
    use deadpool::managed::PoolError;
    match pool.get().await {
        Ok(obj) => Ok(Pooled::new(obj)),
        Err(PoolError::Backend(e)) => Err(pooler::connect_error(setting, pooler, e)),
        Err(PoolError::Timeout(_)) => Err(pooler::connect_error(
            setting,
            pooler,
            ConnectError::Unreachable("no connection within the connect timeout".into()),
        )),
        Err(e) => Err(DbError::Pool(format!("{setting}: {e}"))),
    }
}

/// Runs `work` on `conn` inside a read-only transaction (so that a transaction pooler keeps its
/// statements on one server); a statement the server lost names the setting to change.
async fn in_read_only_tx<T>(
    conn: &Pooled,
    work: impl AsyncFnOnce(&mut &AsyncPgConnection) -> diesel::QueryResult<T>,
) -> Result<T, DbError> {
    let mut c: &AsyncPgConnection = conn;
    c.batch_execute("BEGIN READ ONLY").await?;
    let result = work(&mut c).await;
    let end = c
        .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    if conn.statement_lost() {
        return Err(DbError::Pooler(pooler::statement_lost_message(
            conn.pooler(),
        )));
    }
    let value = result?;
    end?;
    Ok(value)
}

/// The connection's role, and whether it escapes row-level security (superuser or
/// `BYPASSRLS`).
#[allow(
    clippy::disallowed_methods,
    reason = "a literal probe of the pool's role at connect, outside any tenant transaction"
)]
async fn role_of(conn: &Pooled) -> Result<(String, bool), DbError> {
    in_read_only_tx(conn, async |c| {
        diesel::select((
            diesel::dsl::sql::<diesel::sql_types::Text>("current_user::text"),
            diesel::dsl::sql::<Bool>(
                "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)",
            ),
        ))
        .get_result(c)
        .await
    })
    .await
}

/// Takes a connection from `pool`, recording a failure in `outage`.
async fn checkout(pool: &PgPool, outage: &Outage) -> Result<Pooled, DbError> {
    match pool.get().await {
        Ok(obj) => Ok(Pooled::new(obj)),
        Err(e) => {
            let e = pool_error(e);
            outage.failed(&e);
            Err(e)
        }
    }
}

impl Db {
    /// Builds both pools and checks what they need, at start rather than at the first request:
    /// the tenant pool's role is subject to row-level security, the bypass pool's role (when
    /// configured) is not, and with [`Pooler::Direct`] the tenant pool's URL does not lead to a
    /// transaction pooler. Each failure is one line naming the setting.
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        let timeouts = config.timeouts()?;
        config.fair_share.validate().map_err(DbError::Config)?;
        let pooler = config.pooler;
        let app = pool(
            &config.app_url,
            config.max_connections,
            timeouts,
            pooler,
            Purpose::Tenant,
        )?;
        let bypass = match &config.bypass_url {
            Some(url) => Some(pool(
                url,
                config.max_bypass_connections,
                timeouts,
                pooler,
                Purpose::Other,
            )?),
            None => None,
        };
        let directory_url = match &config.directory_url {
            Some(url) => url.clone(),
            None => with_role(&config.app_url, &config.roles.directory)?,
        };
        if config.max_directory_connections == 0 {
            return Err(DbError::Config(
                "DbConfig::max_directory_connections must be at least 1".into(),
            ));
        }
        let directory_pool = pool(
            &directory_url,
            config.max_directory_connections,
            timeouts,
            pooler,
            Purpose::Other,
        )?;
        let keys = Keys::unloaded();
        let cache = PrincipalCache::new(
            config.principal_cache_capacity,
            config.principal_cache_ttl,
            config.principal_cache_max_age,
        );
        let listener = match listen_url(&config) {
            Some(url) if cache.is_enabled() => Some(
                Connector::new(url, timeouts, Pooler::Direct)
                    .map_err(|e| DbError::Config(format!("{LISTEN_URL}: {e}")))?,
            ),
            _ => None,
        };
        if cache.is_enabled() && listener.is_none() {
            tracing::warn!(
                ttl_ms = u64::try_from(config.principal_cache_ttl.as_millis()).unwrap_or(u64::MAX),
                "no directory listener (TENANTRY_LISTEN_DATABASE_URL is not set behind a \
                 transaction pooler): cached principals live at most the TTL"
            );
        }
        let directory = Arc::new(Directory::new(cache, listener, app.clone()));
        let db = Self {
            app,
            bypass,
            directory_pool,
            app_outage: Arc::new(Outage::new("app")),
            bypass_outage: Arc::new(Outage::new("bypass")),
            directory_outage: Arc::new(Outage::new("directory")),
            keys,
            ping_timeout: config.ping_timeout,
            pooler,
            tx_settings: tx_settings(pooler, &timeouts).into(),
            directory,
            fair: Arc::new(Fairness::new(
                config.max_connections,
                &config.fair_share,
                timeouts.wait,
                config.metrics_tenants,
            )),
        };
        db.check_app_role().await?;
        db.check_bypass_role().await?;
        start_conn(&db.directory_pool, DIRECTORY_URL, pooler).await?;
        db.keys.read(&db.directory_pool).await?;
        db.check_seal().await?;
        if db.directory.listens() {
            check_listen_url(&config).await?;
        }
        db.keys.spawn_refresher(db.directory_pool.clone());
        Ok(db)
    }

    /// One tenant transaction of the nil tenant, at start: the keys read through the directory
    /// role must verify on the app role's database, and the verified tenant must be the one
    /// entered. A directory URL that leads to another database, or a clock far from the
    /// server's, stops the start here, naming the setting.
    async fn check_seal(&self) -> Result<(), DbError> {
        let ctx = TenantCtx::<crate::ctx::ReadOnly>::for_start_check();
        let verified = self
            .tx(&ctx, async |conn| {
                conn.verified_tenant().await.map_err(DbError::from)
            })
            .await;
        match verified {
            Ok(Some(t)) if t == ctx.tenant_id() => Ok(()),
            Ok(other) => Err(DbError::Config(format!(
                "{APP_URL}: the tenant seal does not hold on this database (a transaction \
                 entered for {} saw {other:?}): re-run tenantry's migrations",
                ctx.tenant_id()
            ))),
            Err(DbError::Seal(message)) if message.contains("42501") => {
                Err(DbError::Config(format!(
                    "{APP_URL}: its role may not enter a tenant ({message}): connect as \
                     tenantry_app, or GRANT EXECUTE ON FUNCTION tenantry_enter(uuid, boolean, \
                     bigint, integer, bytea) to the role"
                )))
            }
            Err(DbError::Seal(message)) => Err(DbError::Config(format!(
                "{DIRECTORY_URL} and {APP_URL} must lead to the same database: the tenant key \
                 read through the first does not verify on the second ({message})"
            ))),
            Err(e) => Err(e),
        }
    }

    /// [`Db::connect`], and the [`Jobs`] capability of this application's background work: audited
    /// system jobs that act inside any tenant by id or across tenants.
    ///
    /// Call it once, in `main`, and hand the `Jobs` to the tasks that run jobs, never to the
    /// router: nothing else makes one, and it cannot be cloned or shared (`Arc<Jobs>` is not
    /// `Send`), so request handlers cannot reach it without a visible, deliberate act. It needs
    /// the bypass URL: a job has the power of the bypass role.
    ///
    /// Refused ([`DbError::JobInRequest`]) in a task that serves a request, and
    /// ([`DbError::JobsAlreadyMade`]) when this process already made the `Jobs` of the same
    /// database (see [`Jobs`]).
    pub async fn connect_with_jobs(config: DbConfig) -> Result<(Self, Jobs), DbError> {
        if config.bypass_url.is_none() {
            return Err(DbError::NoBypassPool);
        }
        crate::jobs::outside_requests("`Db::connect_with_jobs`")?;
        let db = Self::connect(config).await?;
        let jobs = Jobs::once_per_database(&db).await?;
        Ok((db, jobs))
    }

    async fn check_app_role(&self) -> Result<(), DbError> {
        let conn = start_conn(&self.app, APP_URL, self.pooler).await?;
        let (role, privileged) = role_of(&conn).await?;
        if privileged {
            return Err(DbError::PrivilegedAppRole { role });
        }
        let found = in_read_only_tx(&conn, async |c| {
            crate::schema::roles_check::escalations(c, &role, &[]).await
        })
        .await?;
        if let Some(escalation) = found.into_iter().next() {
            return Err(DbError::AppRoleEscalates { escalation });
        }
        if self.pooler == Pooler::Direct {
            self.check_own_sessions(&conn).await?;
        }
        Ok(())
    }

    /// Straight to PostgreSQL, two connections are two sessions; behind a transaction pooler
    /// they share server backends, and the statement cache would fail under load. The second
    /// connection comes from the pool, or, for a pool of one, is opened for the check alone.
    async fn check_own_sessions(&self, conn: &Pooled) -> Result<(), DbError> {
        let (shared, other_lost) = if self.app.status().max_size >= 2 {
            let other = start_conn(&self.app, APP_URL, self.pooler).await?;
            (
                pooler::shared_backend(conn, &other).await,
                other.statement_lost(),
            )
        } else {
            let other = self
                .app
                .manager()
                .connect()
                .await
                .map_err(|e| pooler::connect_error(APP_URL, self.pooler, e))?;
            (
                pooler::shared_backend(conn, &other).await,
                other.statement_lost(),
            )
        };
        if conn.statement_lost() || other_lost {
            return Err(DbError::Pooler(pooler::statement_lost_message(self.pooler)));
        }
        match shared? {
            Some(shared) => Err(DbError::Pooler(pooler::direct_behind_pooler(
                APP_URL, shared,
            ))),
            None => Ok(()),
        }
    }

    /// The bypass role must exist and bypass row-level security: under it, with no tenant set,
    /// audited cross-tenant work would otherwise see no tenant's rows and report nothing.
    async fn check_bypass_role(&self) -> Result<(), DbError> {
        let Some(bypass) = &self.bypass else {
            return Ok(());
        };
        let conn = start_conn(bypass, BYPASS_URL, self.pooler).await?;
        let (role, bypasses) = role_of(&conn).await?;
        if !bypasses {
            return Err(DbError::Config(format!(
                "{BYPASS_URL}: role `{role}` does not bypass row-level security, so audited \
                 cross-tenant work would see no tenant's rows; connect as tenantry_bypass \
                 (BYPASSRLS, created by the migrations)"
            )));
        }
        Ok(())
    }

    /// Whether the database answers (one `SELECT 1` on the tenant pool), within
    /// [`DbConfig::ping_timeout`] including the wait for a connection. A ping cut short by the
    /// timeout is [`DbError::Timeout`]; its statement is cancelled.
    pub async fn ping(&self) -> Result<(), DbError> {
        let ping = async {
            let mut conn = checkout(&self.app, &self.app_outage).await?;
            conn.batch_execute("SELECT 1").await?;
            Ok::<_, DbError>(())
        };
        let result = match tokio::time::timeout(self.ping_timeout, ping).await {
            Ok(result) => result,
            Err(_) => Err(DbError::Timeout(format!(
                "the database did not answer within {} ms",
                self.ping_timeout.as_millis()
            ))),
        };
        self.record(&self.app_outage, &result);
        result
    }

    /// Stops handing out connections and closes the idle ones (at shutdown, after the last
    /// request). Connections in use are closed when they are returned. The directory listener
    /// stops too.
    pub fn close(&self) {
        self.directory.close();
        self.keys.close();
        self.directory_pool.close();
        self.app.close();
        if let Some(bypass) = &self.bypass {
            bypass.close();
        }
    }

    fn record<T>(&self, outage: &Outage, result: &Result<T, DbError>) {
        match result {
            Ok(_) => outage.succeeded(),
            Err(e) if e.is_unavailable() => outage.failed(e),
            Err(_) => {}
        }
    }

    /// Runs `work` in a transaction of `ctx`'s tenant.
    ///
    /// The transaction's `BEGIN` and its entry into the tenant (`tenantry_enter`, signed; see
    /// `seal.rs`) go out pipelined with the first query of `work`, so a one-query transaction
    /// costs two round trips. Before `COMMIT` the transaction asserts its tenant: if the tenant
    /// the database verifies is not `ctx`'s, it rolls back with [`DbError::TenantMoved`].
    /// If `work` fails the transaction rolls back. If the returned future is dropped before it
    /// finishes, the connection is closed rather than returned to the pool, so no open
    /// transaction or setting can reach the next user.
    ///
    /// `work` gets a [`TenantConn`] whose queries (`Invoice::scoped(conn)`) belong to this
    /// transaction alone: they cannot be returned from `work` or run on another connection.
    pub async fn tx<A, T, E, F>(&self, ctx: &TenantCtx<'_, A>, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        ctx.scope().alive()?;
        self.tx_in(ctx.scope().clone(), work).await
    }

    /// [`Db::tx`] in `scope`'s tenant. An Owner entering a tenant it is not a member of writes
    /// one audit row (action `owner.enter`) in the request's first tenant transaction, before
    /// the work, so the two commit together; if that transaction rolls back, the next one of
    /// the request writes it. A read-only transaction cannot link a row into the audit chain, so
    /// there the row is committed first, in a transaction of its own (as a read-only job's).
    #[tracing::instrument(name = "transaction", level = "info", skip_all, fields(tenant = %scope.tenant_id, request_id = scope.request_id.as_deref()))]
    async fn tx_in<A, T, E, F>(&self, scope: Scope, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        let Some(entry) = scope.owner_entry.clone().filter(|e| e.claim()) else {
            return self.tx_plain(scope, work).await;
        };
        let reason = "an Owner acting in a tenant it is not a member of";
        if A::READ_ONLY {
            let entered = self
                .tx_audited::<crate::ctx::ReadWrite, _, DbError, _>(
                    scope.clone(),
                    OWNER_ENTRY,
                    reason,
                    async |_| Ok(()),
                )
                .await;
            if let Err(e) = entered {
                entry.release();
                return Err(E::from(e));
            }
            return self.tx_plain(scope, work).await;
        }
        let result = self.tx_audited(scope, OWNER_ENTRY, reason, work).await;
        if result.is_err() {
            entry.release();
        }
        result
    }

    /// [`Db::tx`] in `scope`'s tenant, without an Owner's entry to audit.
    async fn tx_plain<A, T, E, F>(&self, scope: Scope, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        let (obj, permit) = self.tenant_checkout(scope.tenant_id).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone()).with(permit);
        guard.enter(&self.keys, scope.tenant_id, A::READ_ONLY);
        let result = {
            let conn: &AsyncPgConnection = guard.conn();
            let begin = begin_sql(A::READ_ONLY, &self.tx_settings);
            let mut begin_conn = conn;
            let mut tenant_conn = TenantConn::new(conn, scope, guard.taint());
            let (begun, result) =
                join(begin_conn.batch_execute(&begin), work(&mut tenant_conn)).await;
            if let Err(e) = begun {
                // The work ran without a tenant (row-level security showed it nothing); drop the
                // connection rather than guess its state.
                guard.discard();
                let e = DbError::from(e);
                if e.is_unavailable() {
                    self.app_outage.failed(&e);
                }
                return Err(E::from(e));
            }
            result
        };
        guard.finish(result, &self.keys).await
    }

    /// A read-write tenant transaction in `scope`'s tenant that writes one audit row (`action`,
    /// `reason`, the scope's actor, tenant and request) before `work`, in the same transaction.
    async fn tx_audited<A, T, E, F>(
        &self,
        scope: Scope,
        action: &str,
        reason: &str,
        work: F,
    ) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        let (obj, permit) = self.tenant_checkout(scope.tenant_id).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone()).with(permit);
        guard.enter(&self.keys, scope.tenant_id, A::READ_ONLY);
        let result = {
            let mut conn: &AsyncPgConnection = guard.conn();
            let started = async {
                conn.batch_execute(&begin_sql(A::READ_ONLY, &self.tx_settings))
                    .await?;
                AuditEntry {
                    actor: &scope.actor,
                    action,
                    reason,
                    tenant_id: Some(scope.tenant_id),
                    request_id: scope.request_id.as_deref(),
                    location: None,
                }
                .write(conn)
                .await
            };
            match started.await {
                Ok(()) => work(&mut TenantConn::new(conn, scope, guard.taint())).await,
                Err(e) => Err(E::from(DbError::from(e))),
            }
        };
        guard.finish(result, &self.keys).await
    }

    /// A system job's transaction inside `scope`'s tenant: one audit row (action `job`) is
    /// written first, in the same transaction. A read-only job's row is committed before a
    /// `READ ONLY` transaction opens for `work`: a read-only transaction cannot link its row
    /// into the audit chain when it commits, and what the work reads is read even if it fails.
    #[tracing::instrument(name = "job_transaction", level = "info", skip_all, fields(tenant = %scope.tenant_id, job = scope.actor.email()))]
    pub(crate) async fn run_job_tx<A, T, E, F>(
        &self,
        scope: Scope,
        reason: &str,
        work: F,
    ) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        self.fair.tally().job_run(scope.tenant_id);
        if A::READ_ONLY {
            self.tx_audited::<crate::ctx::ReadWrite, _, DbError, _>(
                scope.clone(),
                "job",
                reason,
                async |_| Ok(()),
            )
            .await?;
            return self.tx_plain(scope, work).await;
        }
        self.tx_audited(scope, "job", reason, work).await
    }

    /// Runs cross-tenant `work` on the bypass pool, after writing one `audit_log` row (actor,
    /// action, reason, caller location, time) in the same transaction, and emits a `WARN` event.
    /// If the audit row cannot be written, `work` does not run.
    pub async fn bypass<T, E, F>(&self, bypass: AuditedBypass<'_>, work: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut BypassConn<'_>) -> Result<T, E>,
        E: From<DbError>,
    {
        bypass.alive()?;
        let pool = self.bypass.as_ref().ok_or(DbError::NoBypassPool)?;
        self.fair.tally().bypass(&bypass.action);
        let obj = checkout(pool, &self.bypass_outage).await?;
        let guard = TxGuard::new(obj, self.bypass_outage.clone());
        let result = {
            let mut conn: &AsyncPgConnection = guard.conn();
            let location = bypass.location();
            tracing::warn!(
                actor = bypass.actor.email(),
                action = %bypass.action,
                reason = %bypass.reason,
                location = %location,
                "tenant isolation lifted (audited bypass)"
            );
            conn.batch_execute(&format!("BEGIN{}", self.tx_settings))
                .await
                .map_err(DbError::from)?;
            AuditEntry {
                actor: &bypass.actor,
                action: &bypass.action,
                reason: &bypass.reason,
                tenant_id: None,
                request_id: bypass.request_id.as_deref(),
                location: Some(&location),
            }
            .write(conn)
            .await
            .map_err(DbError::from)?;
            work(&mut BypassConn::new(conn, guard.taint())).await
        };
        guard.finish(result, &self.keys).await
    }

    /// What the principal cache knows and did: whether its listener is up, how often it was
    /// emptied, hits and misses (see [`DbConfig::principal_cache_ttl`]).
    pub fn principal_cache_status(&self) -> PrincipalCacheStatus {
        self.directory.cache().status()
    }

    /// The principal cache (its listener starts with the first use).
    pub(crate) fn principals(&self) -> &PrincipalCache {
        self.directory.principals()
    }

    /// A signed entry into `tenant` (for the test kit's raw connections).
    #[cfg(feature = "testing")]
    pub(crate) fn entry(&self, tenant: Uuid, read_only: bool) -> seal::Entry {
        self.keys.keys.entry(tenant, read_only)
    }

    /// Reads the tenant keys again now, through the directory pool (they are read every 30 s
    /// anyway, and at once after an entry is refused for an unknown or expired key): for a
    /// deployment that rotates keys with no grace (`tenantry rotate-tenant-key --grace 0s`) and
    /// wants every instance to switch before its next transaction.
    pub async fn reload_tenant_keys(&self) -> Result<(), DbError> {
        self.keys.read(&self.directory_pool).await
    }

    /// Connections of the tenant pool: `(open, idle)`.
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.app.status();
        (s.size, s.available)
    }
}

impl Db {
    /// A pooled connection of the directory role, for tenantry's own lookups (principals,
    /// tenants an Owner names): it runs no SQL of the application's, and alone may call the
    /// directory functions.
    ///
    /// Dropped while a statement runs (its request was abandoned), the connection is cancelled
    /// and closed rather than returned. Behind a transaction pooler its statements run in a
    /// transaction opened here and committed when it is returned, so that the pooler keeps each
    /// statement's prepare and execute on one server.
    pub(crate) async fn directory_conn(&self) -> Result<Pooled, DbError> {
        let mut conn = checkout(&self.directory_pool, &self.directory_outage).await?;
        if self.pooler == Pooler::Transaction {
            let begin = format!("BEGIN{}", self.tx_settings);
            if let Err(e) = conn.begin_until_returned(&begin).await {
                conn.discard();
                let e = DbError::from(e);
                if e.is_unavailable() {
                    self.directory_outage.failed(&e);
                }
                return Err(e);
            }
        }
        Ok(conn)
    }
}

/// `BEGIN [READ ONLY]`, and behind a transaction pooler the session timeouts. The tenant is
/// entered right after it (the seal's entry, spliced in behind this simple query).
fn begin_sql(read_only: bool, settings: &str) -> String {
    let mode = if read_only { " READ ONLY" } else { "" };
    format!("BEGIN{mode}{settings}")
}

/// What a connection on which raw SQL ran gets before its transaction ends, behind a transaction
/// pooler (straight to PostgreSQL it is closed instead): nothing the raw SQL left in the session
/// reaches the pooler's next client.
const RESET_SESSION_SQL: &str = "RESET ALL; RESET ROLE; RESET SESSION AUTHORIZATION; \
     SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; DISCARD SEQUENCES; \
     DISCARD TEMP";

fn pool_error(e: impl std::fmt::Display) -> DbError {
    DbError::Pool(e.to_string())
}

/// Owns a pooled connection for the length of one transaction. Unless the transaction is
/// finished (committed or rolled back), dropping the guard cancels whatever statement runs and
/// closes the connection (see `pool/reap.rs`) instead of returning it to the pool.
struct TxGuard {
    obj: Option<Pooled>,
    clean: bool,
    outage: Arc<Outage>,
    /// Raw SQL ran on the connection (see [`Taint`]).
    taint: Taint,
    /// The tenant entered, and the ticket of its entry.
    sealed: Option<(Uuid, Arc<Ticket>)>,
    /// The tenant's turn at the pool (tenant transactions): returned after the connection (the
    /// fields drop in this order), recording the transaction's load.
    permit: Option<Permit>,
}

impl TxGuard {
    fn new(obj: Pooled, outage: Arc<Outage>) -> Self {
        let behind_pooler = obj.pooler() == Pooler::Transaction;
        Self {
            obj: Some(obj),
            clean: false,
            outage,
            taint: Taint::new(behind_pooler),
            sealed: None,
            permit: None,
        }
    }

    /// Holds `permit` for the length of the transaction and counts its rows.
    fn with(mut self, mut permit: Permit) -> Self {
        permit.watch(self.pooled().link());
        self.permit = Some(permit);
        self
    }

    /// Arms the entry into `tenant` right behind the transaction's `BEGIN`.
    fn enter(&mut self, keys: &Keys, tenant: Uuid, read_only: bool) {
        let entry = keys.keys.entry(tenant, read_only);
        let pooled = self.pooled();
        let ticket = pooled
            .link()
            .splice(entry.request(&pooled.seal_statements()));
        self.sealed = Some((tenant, ticket));
    }

    fn conn(&self) -> &AsyncPgConnection {
        self.obj
            .as_deref()
            .expect("connection present until finish")
    }

    fn taint(&self) -> &Taint {
        &self.taint
    }

    fn link(&self) -> &Arc<Link> {
        self.pooled().link()
    }

    fn pooled(&self) -> &Pooled {
        self.obj.as_ref().expect("connection present until finish")
    }

    fn discard(&mut self) {
        if let Some(obj) = self.obj.take() {
            obj.discard();
        }
    }

    /// The transaction committed on its own (an implicit transaction): the connection goes back
    /// to the pool.
    fn committed(&mut self) {
        self.clean = true;
        self.outage.succeeded();
    }

    /// Ends the transaction: the tenant asserted and `COMMIT` when `result` is `Ok`, else
    /// `ROLLBACK`. A seal that did not hold turns any result into its error.
    async fn finish<T, E: From<DbError>>(
        mut self,
        result: Result<T, E>,
        keys: &Keys,
    ) -> Result<T, E> {
        let commit = result.is_ok();
        let pooler = self.pooled().pooler();
        let tainted = self.taint.is_set();
        let mut conn: &AsyncPgConnection = self.conn();
        let mut assertion = None;
        if commit {
            if let Some((tenant, _)) = &self.sealed {
                let statements = self.pooled().seal_statements();
                assertion = Some(self.link().splice(seal::assertion(*tenant, &statements)));
            }
        }
        let mut ended = Ok(());
        if tainted && pooler == Pooler::Transaction {
            // Raw SQL ran on a server the pooler hands to others next: reset its session inside
            // this transaction, the assertion first (it goes before this batch).
            if !commit {
                let _ = conn
                    .batch_execute(&format!("ROLLBACK TO SAVEPOINT {}", Taint::SAVEPOINT))
                    .await;
            }
            ended = conn.batch_execute(RESET_SESSION_SQL).await;
        }
        let end = if commit && ended.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let closed = conn.batch_execute(end).await;
        if ended.is_ok() {
            ended = closed;
        }
        if let Some(obj) = self.obj.as_ref().filter(|o| o.statement_lost()) {
            // Whatever the work made of the error, the cause is the pooler: name the setting.
            // (The connection is closed when the guard drops it.)
            return Err(E::from(DbError::Pooler(pooler::statement_lost_message(
                obj.pooler(),
            ))));
        }
        if let Some(failure) = self.seal_failure(assertion.as_ref()) {
            self.discard();
            return Err(E::from(failed(failure, keys)));
        }
        match ended {
            Ok(()) => {
                if tainted && pooler == Pooler::Direct {
                    // Raw SQL may have left state in the session: the next transaction gets a
                    // fresh connection instead.
                    self.discard();
                } else {
                    self.clean = true;
                }
                self.outage.succeeded();
                result
            }
            Err(e) => {
                self.discard();
                let e = DbError::from(e);
                if e.is_unavailable() {
                    self.outage.failed(&e);
                }
                match result {
                    Ok(_) => Err(E::from(e)),
                    Err(original) => Err(original),
                }
            }
        }
    }

    /// Whether the entry or the assertion failed (once the transaction ended, both answered).
    fn seal_failure(&self, assertion: Option<&Arc<Ticket>>) -> Option<SealFailure> {
        let (_, entry) = self.sealed.as_ref()?;
        let unanswered = || SealFailure::Other("the tenant seal was not answered".into());
        let Some(outcome) = entry.outcome() else {
            return Some(unanswered());
        };
        if let Some(f) = seal::entry_failure(&outcome) {
            return Some(f);
        }
        let assertion = assertion?;
        match assertion.outcome() {
            None => {
                self.link().unsplice(assertion);
                Some(unanswered())
            }
            Some(o) if o.lost => Some(unanswered()),
            Some(o) => o.first.as_ref().map(seal::assertion_failure),
        }
    }
}

/// The error of a seal that did not hold, logged once.
fn failed(failure: SealFailure, keys: &Keys) -> DbError {
    match failure {
        SealFailure::Moved => {
            tracing::error!(
                "a tenant transaction's tenant moved before it ended (the setting \
                 tenantry.tenant was changed by SQL it ran): rolled back"
            );
            DbError::TenantMoved
        }
        SealFailure::Aborted => DbError::RolledBack,
        other => {
            if seal::stale_key(&other) {
                keys.refresh_now();
            }
            DbError::Seal(other.to_string())
        }
    }
}

impl Drop for TxGuard {
    fn drop(&mut self) {
        if !self.clean {
            self.discard();
        }
    }
}
