//! What the caller of a splice holds: where it goes ([`Anchor`]), its [`Ticket`] and the
//! [`Outcome`] the ticket resolves to, with the server's error if any.

use super::*;

/// Where a splice goes in the outgoing stream.
#[derive(Debug)]
pub(crate) enum Anchor {
    /// A complete request (its own `Sync`), right after the next simple query.
    AfterQuery(Vec<u8>),
    /// A complete request (its own `Sync`), right before the next simple query.
    BeforeQuery(Vec<u8>),
    /// `prefix` (no `Sync`) before the next `Bind`, `suffix` (no `Sync`) before the `Sync` after it.
    AroundStatement {
        /// Written before the statement's `Bind`.
        prefix: Vec<u8>,
        /// Written before the statement's `Sync`.
        suffix: Vec<u8>,
        /// The statements in each of `prefix` and `suffix` (1: the entry, the assertion; 2 with
        /// `BEGIN` first and `COMMIT` last).
        parts: u8,
    },
}

/// What the server answered to a splice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    /// The error of the splice's first part (the entry), if any.
    pub(crate) first: Option<ServerError>,
    /// The error of the splice's second part (the assertion around a statement), if any.
    pub(crate) second: Option<ServerError>,
    /// The error of the `COMMIT` after the assertion (a transaction block around a statement),
    /// if any.
    pub(crate) commit: Option<ServerError>,
    /// The `Execute`s the client wrote between the two parts (around a statement).
    pub(crate) client_executes: u32,
    /// The connection ended before the server answered.
    pub(crate) lost: bool,
}

impl Outcome {
    /// The first error of the splice, if any.
    #[cfg(test)]
    pub(super) fn error(&self) -> Option<&ServerError> {
        self.first.as_ref().or(self.second.as_ref())
    }
}

/// The fields of an `ErrorResponse` that tenantry looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ServerError {
    /// `C`: the SQLSTATE.
    pub(crate) code: String,
    /// `M`: the message.
    pub(crate) message: String,
    /// `n`: the constraint, if the error names one.
    pub(crate) constraint: Option<String>,
}

impl ServerError {
    pub(super) fn parse(body: &[u8]) -> Self {
        let mut e = ServerError::default();
        let mut rest = body;
        while let Some((&field, tail)) = rest.split_first() {
            if field == 0 {
                break;
            }
            let Some(end) = tail.iter().position(|&b| b == 0) else {
                break;
            };
            let value = String::from_utf8_lossy(&tail[..end]).into_owned();
            match field {
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'n' => e.constraint = Some(value),
                _ => {}
            }
            rest = &tail[end + 1..];
        }
        e
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

/// The handle of one splice: where its outcome arrives.
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    state: Mutex<TicketState>,
}

#[derive(Debug, Default)]
pub(super) struct TicketState {
    #[cfg_attr(not(test), allow(dead_code))]
    placed: bool,
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

impl Ticket {
    /// Whether the splice was written (its anchor came).
    #[cfg(test)]
    pub(super) fn placed(&self) -> bool {
        self.lock().placed
    }

    /// The outcome, once the server answered (or the connection ended).
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome.clone()
    }

    /// Waits for the outcome.
    pub(crate) async fn wait(&self) -> Outcome {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            let mut s = self.lock();
            match &s.outcome {
                Some(o) => Poll::Ready(o.clone()),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_placed(&self) {
        self.lock().placed = true;
    }

    pub(super) fn resolve(&self, outcome: Outcome) {
        let waker = {
            let mut s = self.lock();
            if s.outcome.is_some() {
                return;
            }
            s.outcome = Some(outcome);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Splices waiting for their anchor, shared between the code that arms them and the socket.
#[derive(Debug, Default)]
pub(crate) struct Armed {
    pub(super) queue: Mutex<Vec<(Anchor, Arc<Ticket>)>>,
    any: std::sync::atomic::AtomicBool,
}

impl Armed {
    /// Arms a splice; its ticket tells when and how the server answered.
    pub(crate) fn arm(&self, anchor: Anchor) -> Arc<Ticket> {
        let ticket = Arc::new(Ticket::default());
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push((anchor, ticket.clone()));
        self.any.store(true, std::sync::atomic::Ordering::Release);
        ticket
    }

    /// Withdraws `ticket`'s splice if its anchor has not come yet; whether it was withdrawn.
    pub(crate) fn disarm(&self, ticket: &Arc<Ticket>) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let before = q.len();
        q.retain(|(_, t)| !Arc::ptr_eq(t, ticket));
        if q.is_empty() {
            self.any.store(false, std::sync::atomic::Ordering::Release);
        }
        q.len() != before
    }

    /// Whether any splice waits for its anchor.
    pub(crate) fn any(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the first armed splice whose anchor is a message of type `kind` (its first byte).
    pub(super) fn take_for(&self, kind: u8) -> Option<(Anchor, Arc<Ticket>)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let i = q.iter().position(|(a, _)| match a {
            Anchor::AfterQuery(_) | Anchor::BeforeQuery(_) => kind == b'Q',
            Anchor::AroundStatement { .. } => kind == b'B',
        })?;
        let taken = q.remove(i);
        if q.is_empty() {
            self.any.store(false, std::sync::atomic::Ordering::Release);
        }
        Some(taken)
    }
}
