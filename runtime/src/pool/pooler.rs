//! Connection poolers between tenantry and PostgreSQL (PgBouncer, and the managed poolers of its
//! kind): [`Pooler`] says how the pools reach the server, and the checks here catch, at start
//! and with one line naming the setting, a pooler that breaks what a configuration needs.
//!
//! A transaction pooler hands each transaction of a client connection to whichever server
//! connection is free, and gives that server connection to another client afterwards. A tenant
//! transaction is safe behind one (the tenant seal is transaction-local and bound to its transaction), but
//! three things are not:
//!
//! - named prepared statements cached per connection (diesel-async's default): the statement
//!   is on one server connection and the next transaction runs on another ("prepared
//!   statement \"s1\" does not exist"), or another client left one of the same name ("already
//!   exists"). [`Pooler::Transaction`] turns the cache off and keeps every statement inside a
//!   transaction; in [`Pooler::Direct`] mode the start refuses a URL that leads to a
//!   transaction pooler, and a lost statement under load is a [`DbError::Pooler`](crate::error::DbError::Pooler) naming the
//!   setting;
//! - session settings sent in the startup packet (`options`), which PgBouncer refuses: behind
//!   a transaction pooler the session timeouts are set in each transaction instead;
//! - anything that needs a session of its own: a `LISTEN`, a session advisory lock, a
//!   migration. [`require_session`](crate::db::require_session) refuses a URL that leads to a transaction pooler.

use diesel::sql_types::Integer;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// How the pools reach PostgreSQL: `TENANTRY_DB_POOLER` (`direct` or `transaction`),
/// [`DbConfig::pooler`](crate::db::DbConfig::pooler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Straight to PostgreSQL (the default), or through a pooler in session mode: each pooled
    /// connection is one server session for as long as it lives. Each connection caches its
    /// prepared statements, and the session timeouts travel in the startup packet (`options`).
    #[default]
    Direct,
    /// Through a transaction pooler (PgBouncer's `pool_mode = transaction`): two transactions of
    /// one connection may run on two server sessions, each shared with other clients. tenantry
    /// then runs without a per-connection statement cache (each statement is prepared, run and
    /// closed inside its transaction), runs every statement inside a transaction (lookups
    /// outside a tenant transaction included), and sets the session timeouts with `SET LOCAL`
    /// at the start of each transaction instead of in the startup packet, which PgBouncer
    /// refuses.
    Transaction,
}

impl Pooler {
    /// The value of `TENANTRY_DB_POOLER`: `direct` or `transaction`.
    pub fn name(self) -> &'static str {
        match self {
            Pooler::Direct => "direct",
            Pooler::Transaction => "transaction",
        }
    }

    /// Parses a value of `TENANTRY_DB_POOLER`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "direct" => Some(Pooler::Direct),
            "transaction" => Some(Pooler::Transaction),
            _ => None,
        }
    }
}

/// What to set when the app's URL leads to a transaction pooler.
pub(crate) const SET_TRANSACTION: &str =
    "set TENANTRY_DB_POOLER=transaction (DbConfig::pooler = Pooler::Transaction)";

/// The message of a statement lost under load (see `pool/watch.rs`).
pub(crate) fn statement_lost_message(pooler: Pooler) -> String {
    match pooler {
        Pooler::Direct => format!(
            "PostgreSQL lost a prepared statement of a pooled connection (SQLSTATE 26000 or \
             42P05): a transaction pooler sits between tenantry and PostgreSQL, so the \
             per-connection statement cache does not work; {SET_TRANSACTION}"
        ),
        Pooler::Transaction => "PostgreSQL lost a prepared statement inside a transaction \
             (SQLSTATE 26000 or 42P05): the pooler in front of it does not keep a transaction on \
             one server connection; use a transaction-mode pooler (PgBouncer pool_mode = \
             transaction), not statement mode"
            .to_owned(),
    }
}

/// Logs a statement lost under load, naming the setting.
pub(crate) fn report_statement_lost(pooler: Pooler) {
    tracing::error!("{}", statement_lost_message(pooler));
}

/// Why two connections to one URL do not behave like two sessions of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shared {
    /// Two client connections were served by one server backend.
    OneBackend(i32),
    /// Two transactions of one client connection ran on two server backends.
    TwoBackends(i32, i32),
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shared::OneBackend(pid) => write!(
                f,
                "two of its connections were served by one PostgreSQL backend (pid {pid})"
            ),
            Shared::TwoBackends(a, b) => write!(
                f,
                "two transactions of one connection ran on two PostgreSQL backends (pids {a} and {b})"
            ),
        }
    }
}

/// The backend that runs `conn`'s next transaction (its own transaction, so that a pooler keeps
/// the statement's two round trips on one server).
#[allow(
    clippy::disallowed_methods,
    reason = "a literal probe of the backend pid, outside any tenant transaction"
)]
async fn backend_pid(conn: &AsyncPgConnection) -> Result<i32, diesel::result::Error> {
    let mut conn = conn;
    conn.batch_execute("BEGIN READ ONLY").await?;
    let pid = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result::<i32>(&mut conn)
        .await;
    let end = conn
        .batch_execute(if pid.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    let pid = pid?;
    end?;
    Ok(pid)
}

/// Rounds of [`shared_backend`]: behind PgBouncer (which reuses the server connection freed
/// last) the first round tells, unless other clients take that server connection meanwhile.
const ROUNDS: usize = 3;

/// Whether `a` and `b`, two connections to one URL, share server backends as a transaction
/// pooler's connections do: `a`, `b`, `a` each run a transaction that reads its backend's pid.
/// A session of its own keeps one backend, and two sessions never share one.
pub(crate) async fn shared_backend(
    a: &AsyncPgConnection,
    b: &AsyncPgConnection,
) -> Result<Option<Shared>, diesel::result::Error> {
    for _ in 0..ROUNDS {
        let a1 = backend_pid(a).await?;
        let b1 = backend_pid(b).await?;
        let a2 = backend_pid(a).await?;
        if a1 == b1 || a2 == b1 {
            return Ok(Some(Shared::OneBackend(b1)));
        }
        if a1 != a2 {
            return Ok(Some(Shared::TwoBackends(a1, a2)));
        }
    }
    Ok(None)
}

/// The message of a tenant or bypass URL that leads to a transaction pooler while the pools
/// run as if they reached PostgreSQL directly.
pub(crate) fn direct_behind_pooler(setting: &str, shared: Shared) -> String {
    format!(
        "{setting} leads to a transaction pooler ({shared}) but TENANTRY_DB_POOLER is `direct`: \
         the per-connection statement cache would fail under load (prepared statement \
         \"s1\" does not exist); {SET_TRANSACTION}"
    )
}
