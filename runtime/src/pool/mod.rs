//! The connection pools behind [`Db`](crate::db::Db): connections opened with bounded waits and the
//! session timeouts, watched so that the client never waits forever for the server, and
//! cancelled rather than leaked when a request is abandoned mid-statement.
//!
//! - `connect.rs`: opening a connection (socket, startup options, diesel-async setup).
//!   TLS as the URL asks (`crate::pool::tls`), under the watch.
//! - `watch.rs`: the socket wrapper that counts owed replies and enforces the reply timeout.
//! - `reap.rs`: what happens to a connection dropped while the server still works for it.
//! - `outage.rs`: logging an outage once when it starts and once when it ends.

mod connect;
mod outage;
pub mod pooler;
mod reap;
pub(crate) mod seal;
mod splice;
pub mod tls;
mod watch;

pub use pooler::Pooler;

use std::any::TypeId;
use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleError, RecycleResult};
use deadpool::Runtime;
use diesel::query_builder::QueryId;
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::AsyncPgConnection;
use tokio::task::JoinHandle;
use tokio_postgres::CancelToken;

pub(crate) use connect::ConnectError;
pub(crate) use outage::Outage;
pub(crate) use splice::{Anchor, Outcome, ServerError, Ticket};
#[cfg(test)]
pub(crate) use watch::message;
pub(crate) use watch::Link;

pub(crate) use connect::{open_socket, Connector, Session};

/// The timeouts of one pool (see [`DbConfig`](crate::db::DbConfig) for what each one means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) wait: Duration,
    pub(crate) statement: Duration,
    pub(crate) lock: Duration,
    pub(crate) idle_in_transaction: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            wait: Duration::from_secs(1),
            statement: Duration::from_secs(5),
            lock: Duration::from_secs(2),
            idle_in_transaction: Duration::from_secs(10),
        }
    }
}

/// How long the server may stay silent while it owes a reply: the statement timeout plus one
/// second for the network (past it, the server would have cancelled the statement itself).
const REPLY_GRACE: Duration = Duration::from_secs(1);

impl Timeouts {
    pub(crate) fn reply(&self) -> Duration {
        self.statement + REPLY_GRACE
    }
}

/// One pooled connection: the diesel-async connection and what the pool needs to know about
/// its socket. Dereferences to the [`AsyncPgConnection`].
pub(crate) struct PgConn {
    conn: AsyncPgConnection,
    link: Arc<Link>,
    driver: JoinHandle<()>,
    cancel: CancelToken,
    connector: Arc<Connector>,
    /// Statements seen sent on this connection as `Bind`/`Execute` with no `Parse`: diesel-async
    /// holds them prepared, for as long as the connection lives (its cache is unbounded).
    prepared: Mutex<HashSet<StatementKey>>,
    /// How the tenant seal's statements run on this connection: prepared on it (app pool,
    /// straight to PostgreSQL), or parsed with each use.
    seal: crate::pool::seal::SealStatements,
}

impl Deref for PgConn {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

impl PgConn {
    /// Whether the server owes this connection no reply (nothing is running on it).
    pub(crate) fn is_idle(&self) -> bool {
        self.link.owed() == 0
    }

    /// Whether the server reported a prepared statement of this connection missing or already
    /// there (see `watch.rs`): its statements can no longer be trusted, nor can the path to the
    /// server.
    pub(crate) fn statement_lost(&self) -> bool {
        self.link.statement_lost()
    }
}

/// Creates and recycles [`PgConn`]s for deadpool.
#[derive(Debug)]
pub(crate) struct PgManager {
    connector: Arc<Connector>,
}

impl PgManager {
    /// A connection outside the pool (for a check at start; closed when dropped).
    pub(crate) async fn connect(&self) -> Result<PgConn, ConnectError> {
        self.connector.connect().await
    }
}

impl Manager for PgManager {
    type Type = PgConn;
    type Error = ConnectError;

    async fn create(&self) -> Result<PgConn, ConnectError> {
        self.connector.connect().await
    }

    async fn recycle(&self, conn: &mut PgConn, _: &Metrics) -> RecycleResult<ConnectError> {
        // No round trip: every transaction starts with BEGIN, which fails fast on a dead
        // connection. A connection that is closed, still owed a reply, or whose prepared
        // statements the server lost is not reused.
        if conn.driver.is_finished()
            || !conn.is_idle()
            || conn.conn.is_broken()
            || conn.statement_lost()
        {
            return Err(RecycleError::message("connection closed, busy or confused"));
        }
        Ok(())
    }
}

/// A pool of [`PgConn`]s.
pub(crate) type PgPool = Pool<PgManager>;

/// What a pool's connections are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Tenant transactions (the app role): the tenant seal's statements are prepared.
    Tenant,
    /// Anything else (bypasses, directory lookups).
    Other,
}

/// Builds a pool of at most `size` connections to `url`, reached as `pooler` says.
pub(crate) fn build(
    url: &str,
    size: usize,
    timeouts: Timeouts,
    pooler: Pooler,
    purpose: Purpose,
) -> Result<PgPool, String> {
    let mut connector = Connector::new(url, timeouts, pooler).map_err(|e| e.to_string())?;
    if purpose == Purpose::Tenant {
        connector = connector.for_tenant_transactions();
    }
    Pool::builder(PgManager {
        connector: Arc::new(connector),
    })
    .max_size(size)
    .wait_timeout(Some(timeouts.wait))
    .create_timeout(Some(timeouts.connect))
    .recycle_timeout(Some(timeouts.connect))
    .runtime(Runtime::Tokio1)
    .build()
    .map_err(|e| format!("cannot build the connection pool: {e}"))
}

/// A connection checked out of a pool. Dropped while the server still owes it a reply (its
/// future was dropped mid-query), it is reaped (see `reap.rs`) instead of returned.
pub(crate) struct Pooled {
    obj: Option<Object<PgManager>>,
    /// A transaction is open on it until it is returned (`Db::directory_conn` behind a
    /// transaction pooler): committed first, then the connection goes back to the pool.
    open_tx: bool,
}

impl Pooled {
    pub(crate) fn new(obj: Object<PgManager>) -> Self {
        Pooled {
            obj: Some(obj),
            open_tx: false,
        }
    }

    fn conn(&self) -> &PgConn {
        self.obj.as_ref().expect("present until dropped")
    }

    /// Runs `begin` (a `BEGIN ..`) now and commits that transaction when the connection is
    /// returned.
    pub(crate) async fn begin_until_returned(
        &mut self,
        begin: &str,
    ) -> Result<(), diesel::result::Error> {
        use diesel_async::SimpleAsyncConnection;
        self.open_tx = true;
        let mut conn: &AsyncPgConnection = self;
        conn.batch_execute(begin).await
    }

    /// See [`PgConn::statement_lost`].
    pub(crate) fn statement_lost(&self) -> bool {
        self.conn().statement_lost()
    }

    /// How this connection reaches PostgreSQL.
    pub(crate) fn pooler(&self) -> Pooler {
        self.conn().connector.pooler()
    }

    /// What the connection's socket has seen (see `watch.rs`).
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.conn().link
    }

    /// How this connection names the tenant seal's statements.
    pub(crate) fn seal_statements(&self) -> crate::pool::seal::SealStatements {
        self.conn().seal
    }

    /// Whether `statement` was seen sent on this connection without a `Parse`.
    pub(crate) fn is_prepared(&self, statement: StatementKey) -> bool {
        self.conn()
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&statement)
    }

    /// Records that `statement` was sent on this connection without a `Parse`.
    pub(crate) fn prepared(&self, statement: StatementKey) {
        self.conn()
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(statement);
    }

    /// Closes the connection instead of returning it to the pool (cancelling whatever runs).
    pub(crate) fn discard(mut self) {
        if let Some(obj) = self.obj.take() {
            reap::abandon(obj);
        }
    }
}

impl Deref for Pooled {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        self.conn()
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        self.obj.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            if obj.statement_lost() {
                crate::pool::pooler::report_statement_lost(obj.connector.pooler());
                reap::abandon(obj);
            } else if !obj.is_idle() {
                reap::abandon(obj);
            } else if self.open_tx {
                reap::commit_then_return(obj);
            }
        }
    }
}

/// Which prepared statement a query runs (a `RunFuture` of `scope/query.rs`), when its query type alone decides it (a
/// static Diesel query id): the query's type and the run method. `Db::query` remembers, per
/// connection, the statements it has seen sent without a `Parse` (cached by diesel-async).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StatementKey {
    query: TypeId,
    run: Run,
}

/// The run method: `first` adds a `LIMIT`, so it is another statement than `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Run {
    Load,
    First,
    Execute,
}

impl StatementKey {
    pub(crate) fn of<Q: QueryId>(run: Run) -> Option<Self> {
        Q::query_id().map(|query| StatementKey { query, run })
    }
}
