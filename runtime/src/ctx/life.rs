//! How long what a request's extractor grants lives: a [`RequestLife`], started by the role
//! extractor and ended when the handler that took it returns or is dropped, and the request
//! tasks in which system jobs may not run.
//!
//! axum extractors are owned `'static` values, so a type system alone cannot stop one being kept
//! past its request (in a `static`, the router's state, a spawned task, a channel).
//! `#[requires_role]` keeps the extractor in a local of the handler, and the context and proof it
//! hands out borrow it: keeping those does not compile. This module is the second line, for what
//! the compiler cannot see (the extractor moved out of that local by its name, taken through
//! tenantry's hidden API by hand, a borrow forged with `unsafe`): each context, proof and bypass carries the
//! request's life, and every use in the database (`Db::tx`, `Db::query`, `Db::bypass`, raw SQL)
//! refuses one whose request has ended with [`DbError::RequestEnded`] and one `ERROR` line.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::DbError;

/// Not yet armed by a handler: the extractor was made, no handler holds its end.
const FRESH: u8 = 0;
/// A handler holds its end ([`EndOfRequest`]).
const LIVE: u8 = 1;
/// The handler returned or was dropped.
const ENDED: u8 = 2;

/// The life of one request's grants, shared by its extractor and everything derived from it.
///
/// Public only because the sealed [`crate::ctx::BypassActor`] hands it to the bypasses it opens; it
/// cannot be named outside tenantry.
#[doc(hidden)]
#[derive(Clone)]
pub struct RequestLife(Arc<Inner>);

struct Inner {
    state: AtomicU8,
    /// What was granted, for messages: `InTenant<Partner>`, `AsOwner`.
    grant: &'static str,
    request_id: String,
}

impl fmt::Debug for RequestLife {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLife")
            .field("grant", &self.0.grant)
            .field("request_id", &self.0.request_id)
            .field("live", &(self.0.state.load(Ordering::Acquire) == LIVE))
            .finish()
    }
}

impl RequestLife {
    /// A life not yet armed: what an extractor starts with.
    pub(crate) fn new(grant: &'static str, request_id: String) -> Self {
        RequestLife(Arc::new(Inner {
            state: AtomicU8::new(FRESH),
            grant,
            request_id,
        }))
    }

    /// `Ok` while the handler that took the extractor runs; else [`DbError::RequestEnded`],
    /// logged once per refusal.
    pub(crate) fn check(&self) -> Result<(), DbError> {
        let state = self.0.state.load(Ordering::Acquire);
        if state == LIVE {
            return Ok(());
        }
        let armed = state == ENDED;
        tracing::error!(
            grant = self.0.grant,
            request_id = %self.0.request_id,
            armed,
            "refused: a request's grant used after its request ended (kept in a static, the state, \
             a spawned task or a channel); continue such work in a system job"
        );
        Err(DbError::RequestEnded {
            grant: self.0.grant,
            request_id: self.0.request_id.clone(),
        })
    }

    /// Arms the life in the handler's task: it ends when the returned guard is dropped.
    fn arm(&self) -> EndOfRequest {
        let _ = self
            .0
            .state
            .compare_exchange(FRESH, LIVE, Ordering::AcqRel, Ordering::Acquire);
        EndOfRequest {
            life: self.clone(),
            _task: RequestTask::enter(),
        }
    }

    fn end(&self) {
        self.0.state.store(ENDED, Ordering::Release);
    }
}

/// Checks an optional life: contexts and bypasses of jobs and tests have none.
pub(crate) fn check(life: Option<&RequestLife>) -> Result<(), DbError> {
    life.map_or(Ok(()), RequestLife::check)
}

/// Something whose grants live as long as one request: tenantry's role extractors. Not public
/// API.
#[doc(hidden)]
pub trait HasLife {
    /// The request's life.
    fn life(&self) -> &RequestLife;
}

/// What `#[requires_role]` puts first in a handler's parameters: the role extractor `X`
/// ([`super::InTenant`] or [`super::AsOwner`]), kept in a local of the handler.
///
/// Used by generated code, not public API. The handler arms it with [`ByRole::arm`] and keeps
/// the guard to its end; a `ByRole` taken by hand and never armed grants nothing.
#[doc(hidden)]
#[derive(Debug)]
pub struct ByRole<X>(pub(crate) X);

impl<X: HasLife> ByRole<X> {
    /// Starts the request's life; it ends when the guard is dropped (the handler returned or
    /// was dropped).
    pub fn arm(&self) -> EndOfRequest {
        self.0.life().arm()
    }

    /// The extractor.
    pub fn get(&self) -> &X {
        &self.0
    }
}

/// Ends a request's grants when dropped: a local of the handler `#[requires_role]` writes, which
/// the handler's body cannot name or move. Used by generated code, not public API.
#[doc(hidden)]
#[must_use = "the request's grants end when this is dropped"]
#[derive(Debug)]
pub struct EndOfRequest {
    life: RequestLife,
    /// Marks the handler's task as a request's while the handler runs.
    _task: RequestTask,
}

impl Drop for EndOfRequest {
    fn drop(&mut self) {
        // The task's mark goes right after, with the guard's fields.
        self.life.end();
    }
}

/// The tasks serving a request now, counted per task (keep-alive connections serve several,
/// one after the other): system jobs refuse to start in them.
fn request_tasks() -> &'static Mutex<HashMap<tokio::task::Id, u32>> {
    static TASKS: OnceLock<Mutex<HashMap<tokio::task::Id, u32>>> = OnceLock::new();
    TASKS.get_or_init(Default::default)
}

/// Marks the current Tokio task as serving a request until dropped: `tenantry::serve` holds one
/// per connection task, and a `#[requires_role]` handler one while it runs. Outside a Tokio task
/// it marks nothing.
#[derive(Debug)]
pub(crate) struct RequestTask(Option<tokio::task::Id>);

impl RequestTask {
    pub(crate) fn enter() -> Self {
        let id = tokio::task::try_id();
        if let Some(id) = id {
            let mut tasks = request_tasks().lock().unwrap_or_else(|e| e.into_inner());
            *tasks.entry(id).or_insert(0) += 1;
        }
        RequestTask(id)
    }
}

impl Drop for RequestTask {
    fn drop(&mut self) {
        let Some(id) = self.0 else { return };
        let mut tasks = request_tasks().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = tasks.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                tasks.remove(&id);
            }
        }
    }
}

/// `Ok` outside the tasks that serve requests; else [`DbError::JobInRequest`], logged.
pub(crate) fn outside_requests(what: &'static str) -> Result<(), DbError> {
    if !in_request_task() {
        return Ok(());
    }
    tracing::error!(
        refused = what,
        "refused: system jobs run in the job runner, never in a task that serves a request"
    );
    Err(DbError::JobInRequest { what })
}

/// Whether the current Tokio task serves a request (see [`RequestTask`]).
pub(crate) fn in_request_task() -> bool {
    let Some(id) = tokio::task::try_id() else {
        return false;
    };
    request_tasks()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_life_is_live_only_while_its_guard_is_held() {
        let life = RequestLife::new("InTenant<Partner>", "r-1".into());
        assert!(
            matches!(
                life.check(),
                Err(DbError::RequestEnded {
                    grant: "InTenant<Partner>",
                    ..
                })
            ),
            "never armed: refused"
        );
        let guard = life.arm();
        let copy = life.clone();
        assert!(life.check().is_ok() && copy.check().is_ok());
        drop(guard);
        assert!(matches!(copy.check(), Err(DbError::RequestEnded { .. })));
        // Arming again after the end does not revive it.
        let again = life.arm();
        assert!(life.check().is_err());
        drop(again);
    }

    #[tokio::test]
    async fn a_handler_marks_its_task_while_it_runs() {
        let outside = tokio::spawn(async { in_request_task() }).await.unwrap();
        assert!(!outside);
        let (inside, after) = tokio::spawn(async {
            let life = RequestLife::new("AsOwner", "r-2".into());
            let guard = life.arm();
            let inside = in_request_task();
            drop(guard);
            (inside, in_request_task())
        })
        .await
        .unwrap();
        assert!(inside && !after);
    }
}
