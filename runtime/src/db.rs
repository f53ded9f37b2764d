//! [`Db`]: the two connection pools and the transactions that use them.
//!
//! Tenant work runs on the app role (row-level security applies) inside a transaction whose
//! first statement sets `app.tenant_id` with a transaction-local `SET LOCAL`. Audited
//! cross-tenant work runs on a separate pool whose role has `BYPASSRLS`; a tenant transaction
//! can never reach that pool.
//!
//! Every wait is bounded (see [`DbConfig`]); the pools themselves live in `pool/`.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::future::join;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::bypass::AuditedBypass;
use crate::conn::{BypassConn, TenantConn};
use crate::ctx::{Access, Scope, TenantCtx};
use crate::error::DbError;
use crate::jobs::Jobs;
use crate::pool::{self, Outage, PgPool, Pooled, Timeouts};

/// Settings of [`Db::connect`]. [`DbConfig::new`] fills in the defaults below; every duration
/// must be greater than zero.
///
/// The three session timeouts are sent in each connection's startup packet (`options`), so they
/// hold for every statement of both roles; a URL's own `options` parameter overrides them.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// URL of the tenant pool: a role that is neither superuser nor `BYPASSRLS`.
    pub app_url: String,
    /// URL of the bypass pool (a `BYPASSRLS` role), or `None` to refuse all bypasses.
    pub bypass_url: Option<String>,
    /// Maximum connections of the tenant pool (default 16).
    pub max_connections: usize,
    /// Maximum connections of the bypass pool (default 2).
    pub max_bypass_connections: usize,
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
}

impl DbConfig {
    /// A config with the default pool sizes and timeouts.
    pub fn new(app_url: impl Into<String>, bypass_url: Option<String>) -> Self {
        let t = Timeouts::default();
        Self {
            app_url: app_url.into(),
            bypass_url,
            max_connections: 16,
            max_bypass_connections: 2,
            connect_timeout: t.connect,
            pool_timeout: t.wait,
            statement_timeout: t.statement,
            lock_timeout: t.lock,
            idle_in_transaction_timeout: t.idle_in_transaction,
            ping_timeout: Duration::from_secs(2),
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

/// The database handle of a tenantry application: a tenant pool and a bypass pool.
#[derive(Clone)]
pub struct Db {
    app: PgPool,
    bypass: Option<PgPool>,
    app_outage: Arc<Outage>,
    bypass_outage: Arc<Outage>,
    ping_timeout: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("app", &self.app.status())
            .field("bypass", &self.bypass.as_ref().map(|p| p.status()))
            .finish()
    }
}

fn pool(url: &str, size: usize, timeouts: Timeouts) -> Result<PgPool, DbError> {
    pool::build(url, size, timeouts).map_err(DbError::Config)
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
    /// Builds both pools and checks that the tenant pool's role is subject to row-level security.
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        let timeouts = config.timeouts()?;
        let app = pool(&config.app_url, config.max_connections, timeouts)?;
        let bypass = match &config.bypass_url {
            Some(url) => Some(pool(url, config.max_bypass_connections, timeouts)?),
            None => None,
        };
        let db = Self {
            app,
            bypass,
            app_outage: Arc::new(Outage::new("app")),
            bypass_outage: Arc::new(Outage::new("bypass")),
            ping_timeout: config.ping_timeout,
        };
        db.check_app_role().await?;
        Ok(db)
    }

    /// [`Db::connect`], and the [`Jobs`] capability of this application's background work: audited
    /// system jobs that act inside any tenant by id or across tenants.
    ///
    /// Call it once, in `main`, and hand the `Jobs` to the tasks that run jobs, never to the
    /// router: nothing else makes one, and it cannot be cloned or shared (`Arc<Jobs>` is not
    /// `Send`), so request handlers cannot reach it without a visible, deliberate act. It needs
    /// the bypass URL: a job has the power of the bypass role.
    pub async fn connect_with_jobs(config: DbConfig) -> Result<(Self, Jobs), DbError> {
        if config.bypass_url.is_none() {
            return Err(DbError::NoBypassPool);
        }
        let db = Self::connect(config).await?;
        let jobs = Jobs::new(db.clone());
        Ok((db, jobs))
    }

    async fn check_app_role(&self) -> Result<(), DbError> {
        let mut conn = checkout(&self.app, &self.app_outage).await?;
        let (role, privileged): (String, bool) = diesel::select((
            diesel::dsl::sql::<diesel::sql_types::Text>("current_user::text"),
            diesel::dsl::sql::<Bool>(
                "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)",
            ),
        ))
        .get_result(&mut *conn)
        .await?;
        if privileged {
            return Err(DbError::PrivilegedAppRole { role });
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
    /// request). Connections in use are closed when they are returned.
    pub fn close(&self) {
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
    /// The transaction's `BEGIN; SET LOCAL app.tenant_id = ..` (one simple-query message) is
    /// pipelined with the first query of `work`, so a one-query transaction costs two round
    /// trips, not four.
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
        let obj = checkout(&self.app, &self.app_outage).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone());
        let result = {
            let conn: &AsyncPgConnection = guard.conn();
            let prelude = begin_tenant_sql(ctx.tenant_id(), A::READ_ONLY);
            let mut prelude_conn = conn;
            let mut tenant_conn = TenantConn::new(conn, ctx.scope().clone());
            let (begun, result) =
                join(prelude_conn.batch_execute(&prelude), work(&mut tenant_conn)).await;
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
        guard.finish(result).await
    }

    /// A system job's transaction inside `scope`'s tenant: one audit row (action `job`) is
    /// written first, in the same transaction; then, for a read-only job, the transaction turns
    /// `READ ONLY` before `work` runs.
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
        let obj = checkout(&self.app, &self.app_outage).await?;
        let guard = TxGuard::new(obj, self.app_outage.clone());
        let result = {
            let mut conn: &AsyncPgConnection = guard.conn();
            conn.batch_execute(&begin_tenant_sql(scope.tenant_id, false))
                .await
                .map_err(DbError::from)?;
            AuditEntry {
                actor: &scope.actor,
                action: "job",
                reason,
                tenant_id: Some(scope.tenant_id),
                request_id: None,
                location: None,
            }
            .write(conn)
            .await
            .map_err(DbError::from)?;
            if A::READ_ONLY {
                // Allowed after the audit insert: a transaction may always turn read-only.
                conn.batch_execute("SET TRANSACTION READ ONLY")
                    .await
                    .map_err(DbError::from)?;
            }
            work(&mut TenantConn::new(conn, scope)).await
        };
        guard.finish(result).await
    }

    /// Runs cross-tenant `work` on the bypass pool, after writing one `audit_log` row (actor,
    /// action, reason, caller location, time) in the same transaction, and emits a `WARN` event.
    /// If the audit row cannot be written, `work` does not run.
    pub async fn bypass<T, E, F>(&self, bypass: AuditedBypass<'_>, work: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut BypassConn<'_>) -> Result<T, E>,
        E: From<DbError>,
    {
        let pool = self.bypass.as_ref().ok_or(DbError::NoBypassPool)?;
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
            conn.batch_execute("BEGIN").await.map_err(DbError::from)?;
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
            work(&mut BypassConn::new(conn)).await
        };
        guard.finish(result).await
    }

    /// Connections of the tenant pool: `(open, idle)`.
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.app.status();
        (s.size, s.available)
    }
}

impl Db {
    /// A pooled tenant-pool connection outside any tenant transaction (no tenant set, so
    /// row-level security shows no tenant rows): for reads of global tables such as `users`.
    ///
    /// Dropped while a statement runs (its request was abandoned), the connection is cancelled
    /// and closed rather than returned.
    pub(crate) async fn global_conn(&self) -> Result<Pooled, DbError> {
        checkout(&self.app, &self.app_outage).await
    }
}

fn begin_tenant_sql(tenant: Uuid, read_only: bool) -> String {
    // A `Uuid` formats as 36 hex-and-dash characters: nothing to escape.
    // `SET LOCAL` has the effect of `SELECT set_config('app.tenant_id', .., true)` (the value
    // ends with the transaction) but is a utility statement: the server neither plans nor
    // executes a query for it and sends no row back. `cargo bench --bench tenantry_bench`
    // measured ~15% more tenant transactions per second with it (see BENCHMARKS.md).
    let mode = if read_only { " READ ONLY" } else { "" };
    format!("BEGIN{mode}; SET LOCAL app.tenant_id = '{tenant}'")
}

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
}

impl TxGuard {
    fn new(obj: Pooled, outage: Arc<Outage>) -> Self {
        Self {
            obj: Some(obj),
            clean: false,
            outage,
        }
    }

    fn conn(&self) -> &AsyncPgConnection {
        self.obj
            .as_deref()
            .expect("connection present until finish")
    }

    fn discard(&mut self) {
        if let Some(obj) = self.obj.take() {
            obj.discard();
        }
    }

    async fn finish<T, E: From<DbError>>(mut self, result: Result<T, E>) -> Result<T, E> {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let mut conn: &AsyncPgConnection = self.conn();
        match conn.batch_execute(end).await {
            Ok(()) => {
                self.clean = true;
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
}

impl Drop for TxGuard {
    fn drop(&mut self) {
        if !self.clean {
            self.discard();
        }
    }
}
