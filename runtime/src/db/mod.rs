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
use crate::pool::pooler::{self, Pooler};
use crate::pool::seal::{self, SealFailure};
use crate::pool::{
    self, ConnectError, Connector, Link, Outage, PgPool, Pooled, Purpose, Ticket, Timeouts,
};

mod citus_check;
mod config;
mod fair;
mod guard;
mod identity;
mod keys;
mod one_rtt;
mod session;
mod start;
mod tx;

pub use config::DbConfig;
use config::*;
use guard::*;
use session::connect_error;
pub use session::require_session;
use start::*;
use tx::*;

use crate::identity::listen::Directory;
use keys::{Keys, DIRECTORY_URL};

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
    /// The database has citus (found at start): a tenant transaction always opens with `BEGIN`,
    /// since Citus sends the seal to the workers only inside a transaction block, never in an
    /// implicit transaction; [`Db::query`]'s one round trip pipelines `BEGIN` and `COMMIT` there.
    citus: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("app", &self.app.status())
            .field("bypass", &self.bypass.as_ref().map(|p| p.status()))
            .finish()
    }
}

impl Db {
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

    /// What the principal cache knows and did: whether its listener is up, how often it was
    /// emptied, hits and misses (see [`DbConfig::principal_cache_ttl`]).
    pub fn principal_cache_status(&self) -> PrincipalCacheStatus {
        self.directory.cache().status()
    }

    /// The principal cache (its listener starts with the first use).
    pub(crate) fn principals(&self) -> &PrincipalCache {
        self.directory.principals()
    }

    /// Whether the database has citus (found at start): the job queue claims one shard at a
    /// time there (`queue.rs`).
    pub(crate) fn on_citus(&self) -> bool {
        std::sync::atomic::AtomicBool::load(&self.citus, std::sync::atomic::Ordering::Relaxed)
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

fn pool_error(e: impl std::fmt::Display) -> DbError {
    DbError::Pool(e.to_string())
}
