//! A pooler in the way, as the start sees it: a connection error naming its setting, and the
//! check that a URL reaches a PostgreSQL session of its own.

use std::sync::Arc;

use crate::error::DbError;
use crate::pool::pooler::{shared_backend, statement_lost_message, Shared, SET_TRANSACTION};
use crate::pool::{self, ConnectError, Pooler, Timeouts};

/// The start's error for a connection to `setting`'s URL that could not be opened.
pub(crate) fn connect_error(setting: &str, pooler: Pooler, e: ConnectError) -> DbError {
    match e {
        ConnectError::Refused { message, options } if options => DbError::Pooler(match pooler {
            Pooler::Direct => format!(
                "{setting}: the server refused the session timeouts tenantry sends at startup \
                 ({message}), so a pooler such as PgBouncer is in the way; {SET_TRANSACTION}"
            ),
            Pooler::Transaction => format!(
                "{setting}: the pooler refused the URL's own `options` parameter ({message}); \
                 remove it from the URL (TENANTRY_DB_POOLER=transaction sets the session \
                 timeouts in each transaction)"
            ),
        }),
        ConnectError::Refused { message, .. } => DbError::Config(format!(
            "{setting}: PostgreSQL refused the connection: {message} (the migrations create the \
             roles tenantry_app and tenantry_bypass: run them first, e.g. `tenantry migrate`)"
        )),
        ConnectError::StatementLost(message) => DbError::Pooler(format!(
            "{setting}: {message}: {}",
            statement_lost_message(pooler)
        )),
        ConnectError::Url(message) => DbError::Config(format!("{setting}: {message}")),
        ConnectError::Tls(message) => DbError::Config(format!("{setting}: {message}")),
        other => DbError::Pool(format!("{setting}: {other}")),
    }
}

/// Checks that `url` reaches PostgreSQL sessions of their own, as a `LISTEN`, a session
/// advisory lock or a migration needs, rather than a transaction pooler (which would run the
/// `LISTEN` on a server connection that other clients use next, and deliver nothing).
///
/// Call it at start for each URL that needs a session, with the name of the setting it comes
/// from (`"DATABASE_URL"`, `"TENANTRY_LISTEN_DATABASE_URL"`): a URL through PgBouncer in
/// transaction mode then stops the start with one line naming that setting. It opens two
/// connections, runs three short read-only transactions on each side (`SELECT
/// pg_backend_pid()`), and closes them.
pub async fn require_session(url: &str, setting: &str) -> Result<(), DbError> {
    // No startup `options`: a pooler that refuses them would hide what it is.
    let timeouts = Timeouts::default();
    let connector = Arc::new(
        pool::Connector::new(url, timeouts, Pooler::Transaction)
            .map_err(|e| connect_error(setting, Pooler::Transaction, e))?,
    );
    let a = connector
        .connect()
        .await
        .map_err(|e| connect_error(setting, Pooler::Transaction, e))?;
    let b = connector
        .connect()
        .await
        .map_err(|e| connect_error(setting, Pooler::Transaction, e))?;
    match shared_backend(&a, &b).await {
        Ok(None) => Ok(()),
        Ok(Some(shared)) => Err(DbError::Pooler(session_message(setting, shared))),
        Err(e) if a.statement_lost() || b.statement_lost() => Err(DbError::Pooler(format!(
            "{setting}: {e}: it leads to a transaction pooler, but it needs a PostgreSQL \
             session of its own; point it at PostgreSQL itself, not at the pooler"
        ))),
        Err(e) => Err(DbError::from(e)),
    }
}

/// The message of a URL that needs a session but leads to a transaction pooler.
fn session_message(setting: &str, shared: Shared) -> String {
    format!(
        "{setting} leads to a transaction pooler ({shared}), but it needs a PostgreSQL session \
         of its own (LISTEN, advisory locks, migrations); point it at PostgreSQL itself, not at \
         the pooler"
    )
}
