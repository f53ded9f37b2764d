//! [`Db`]: the two connection pools and the transactions that use them.
//!
//! Tenant work runs on the app role (row-level security applies) inside a transaction whose
//! first statement sets `app.tenant_id` with a transaction-local `SET LOCAL`. Audited
//! cross-tenant work runs on a separate pool whose role has `BYPASSRLS`; a tenant transaction
//! can never reach that pool.

use diesel::sql_types::Bool;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::future::join;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::bypass::AuditedBypass;
use crate::conn::{BypassConn, TenantConn};
use crate::ctx::{Access, Scope, TenantCtx};
use crate::error::DbError;
use crate::jobs::Jobs;

type PgPool = Pool<AsyncPgConnection>;

/// Settings of [`Db::connect`].
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// URL of the tenant pool: a role that is neither superuser nor `BYPASSRLS`.
    pub app_url: String,
    /// URL of the bypass pool (a `BYPASSRLS` role), or `None` to refuse all bypasses.
    pub bypass_url: Option<String>,
    /// Maximum connections of the tenant pool.
    pub max_connections: usize,
    /// Maximum connections of the bypass pool.
    pub max_bypass_connections: usize,
}

impl DbConfig {
    /// A config with default pool sizes (16 tenant connections, 2 bypass connections).
    pub fn new(app_url: impl Into<String>, bypass_url: Option<String>) -> Self {
        Self {
            app_url: app_url.into(),
            bypass_url,
            max_connections: 16,
            max_bypass_connections: 2,
        }
    }
}

/// The database handle of a tenantry application: a tenant pool and a bypass pool.
#[derive(Clone)]
pub struct Db {
    app: PgPool,
    bypass: Option<PgPool>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("app", &self.app.status())
            .field("bypass", &self.bypass.as_ref().map(|p| p.status()))
            .finish()
    }
}

fn pool(url: &str, size: usize) -> Result<PgPool, DbError> {
    let mut config = ManagerConfig::default();
    // Every tenant transaction starts with BEGIN, which fails fast on a dead connection; a ping
    // on each checkout would add a round trip to every request.
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| DbError::Config(format!("cannot build the connection pool: {e}")))
}

impl Db {
    /// Builds both pools and checks that the tenant pool's role is subject to row-level security.
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        let app = pool(&config.app_url, config.max_connections)?;
        let bypass = match &config.bypass_url {
            Some(url) => Some(pool(url, config.max_bypass_connections)?),
            None => None,
        };
        let db = Self { app, bypass };
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
        let mut conn = self.app.get().await.map_err(pool_error)?;
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

    /// Whether the database answers (one `SELECT 1` on the tenant pool).
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.app.get().await.map_err(pool_error)?;
        conn.batch_execute("SELECT 1").await?;
        Ok(())
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
        let obj = self.app.get().await.map_err(pool_error)?;
        let mut guard = TxGuard::new(obj);
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
                return Err(E::from(DbError::from(e)));
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
        let obj = self.app.get().await.map_err(pool_error)?;
        let guard = TxGuard::new(obj);
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
        let obj = pool.get().await.map_err(pool_error)?;
        let guard = TxGuard::new(obj);
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
    pub(crate) async fn global_conn(&self) -> Result<Object<AsyncPgConnection>, DbError> {
        self.app.get().await.map_err(pool_error)
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
/// finished (committed or rolled back), dropping the guard closes the connection instead of
/// returning it to the pool.
struct TxGuard {
    obj: Option<Object<AsyncPgConnection>>,
    clean: bool,
}

impl TxGuard {
    fn new(obj: Object<AsyncPgConnection>) -> Self {
        Self {
            obj: Some(obj),
            clean: false,
        }
    }

    fn conn(&self) -> &AsyncPgConnection {
        self.obj
            .as_deref()
            .expect("connection present until finish")
    }

    fn discard(&mut self) {
        if let Some(obj) = self.obj.take() {
            drop(Object::take(obj));
        }
    }

    async fn finish<T, E: From<DbError>>(mut self, result: Result<T, E>) -> Result<T, E> {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let mut conn: &AsyncPgConnection = self.conn();
        match conn.batch_execute(end).await {
            Ok(()) => {
                self.clean = true;
                result
            }
            Err(e) => {
                self.discard();
                match result {
                    Ok(_) => Err(E::from(DbError::from(e))),
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
