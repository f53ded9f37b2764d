//! Abandoned connections: a transaction dropped mid-statement (the client gave up, a deadline
//! passed) must not leave its server backend running.
//!
//! The connection keeps its pool slot while, in a task of its own, the reaper sends the server a
//! cancel request for the running statement, waits (bounded) for the server to answer it, and
//! closes the socket; only then is the slot released. So while the server answers, the backends
//! the application holds never outnumber its pool slots. When the server does not answer at
//! all, the slot is released after the reply timeout and the server's own `statement_timeout`,
//! `lock_timeout` and `idle_in_transaction_session_timeout` end the session.

use deadpool::managed::Object;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use super::PgManager;

/// Commits the transaction open on the idle `obj` in the background, then returns it to the
/// pool (closes it if the commit fails). The slot stays taken until then.
pub(crate) fn commit_then_return(obj: Object<PgManager>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let mut conn: &AsyncPgConnection = &obj;
                match conn.batch_execute("COMMIT").await {
                    Ok(()) => drop(obj),
                    Err(e) => {
                        tracing::debug!(error = %e, "COMMIT of a returned connection failed");
                        abandon(obj);
                    }
                }
            });
        }
        Err(_) => {
            obj.link.kill();
            drop(Object::take(obj));
        }
    }
}

/// Cancels, drains and closes `obj` in the background, then releases its slot.
pub(crate) fn abandon(obj: Object<PgManager>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(reap(obj));
        }
        // No runtime to run the reaper: close the socket and release the slot at once.
        Err(_) => {
            obj.link.kill();
            drop(Object::take(obj));
        }
    }
}

async fn reap(mut obj: Object<PgManager>) {
    let limit = obj.connector.timeouts().reply();
    let mut driver_done = obj.driver.is_finished();
    let link = obj.link.clone();
    if link.owed() > 0 {
        if let Err(e) = obj.connector.cancel(&obj.cancel).await {
            tracing::debug!(error = %e, "cancel request for an abandoned statement failed");
        }
        // Wait for the server's answer, unless the connection is already gone (then no answer
        // can come).
        if !driver_done {
            tokio::select! {
                idle = tokio::time::timeout(limit, link.idle()) => {
                    if idle.is_err() {
                        tracing::debug!("the server did not answer an abandoned statement in time");
                    }
                }
                _ = &mut obj.driver => driver_done = true,
            }
        }
    }
    link.kill();
    if !driver_done && tokio::time::timeout(limit, &mut obj.driver).await.is_err() {
        obj.driver.abort();
    }
    drop(Object::take(obj));
}
