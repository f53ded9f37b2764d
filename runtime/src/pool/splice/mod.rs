//! Splicing tenantry's own statements into a connection's protocol stream.
//!
//! A tenant transaction enters its tenant with `tenantry_enter(..)` and ends by asserting it (see
//! `seal.rs`). Those statements are tenantry's, not the application's: they must reach the server
//! exactly where the transaction needs them, whatever tokio-postgres queues around them, and their
//! replies must never reach tokio-postgres (which did not ask for them). So they do not go through
//! tokio-postgres at all. The watched socket (`watch.rs`) writes them into the outgoing byte
//! stream at a message boundary and removes their replies from the incoming one:
//!
//! - [`Anchor::AfterQuery`]: a request of its own (ending with `Sync`) right after the next simple
//!   query (`Q`): the tenant's entry, behind `BEGIN`.
//! - [`Anchor::BeforeQuery`]: a request of its own right before the next simple query: the
//!   assertion, before `COMMIT`.
//! - [`Anchor::AroundStatement`]: `Bind`/`Execute` pairs with no `Sync` of their own, one before
//!   the next `Bind` and one before the `Sync` that follows it. PostgreSQL runs everything up to a
//!   `Sync` as one implicit transaction, so the entry, the statement and the assertion share one
//!   transaction and one round trip, with no `BEGIN` or `COMMIT`. On Citus each side holds two
//!   statements (`BEGIN` and the entry, the assertion and `COMMIT`): a transaction block, still
//!   before one `Sync`.
//!
//! Replies are matched by position: the server answers requests in order, one `ReadyForQuery`
//! (`Z`) per `Sync` or simple query, so a splice knows how many `Z`s come before its own replies.
//! Within an implicit transaction, an error makes the server skip everything up to the `Sync`; the
//! error of a spliced part is then handed on to tokio-postgres (as the statement's error) and kept
//! in the [`Ticket`].
//!
//! Both directions are streamed: the reader decides per message, at its type byte, whether it
//! passes or is dropped, and filters bytes in place in the caller's buffer.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
mod ticket;
pub(crate) use ticket::{Anchor, Armed, Outcome, ServerError, Ticket};

/// What the reader expects from one spliced position in the reply stream.
#[derive(Debug)]
enum Segment {
    /// A request of tenantry's own: every reply up to and including its `Z` is dropped.
    Hidden,
    /// A client statement between two spliced parts of `parts` statements each.
    Around { state: Around, parts: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Around {
    /// The prefix's replies (dropped) until its last `CommandComplete` (this many to come).
    Prefix(u8),
    /// The statement's replies (passed) until its completion.
    Statement,
    /// The suffix's replies (dropped) until its last `CommandComplete` (this many to come).
    Suffix(u8),
    /// An error ended the implicit transaction: the server skips to the `Sync`; pass until `Z`.
    Rest,
}

#[derive(Debug)]
struct Pending {
    /// The reply count (`Z`s seen on the connection) at which this segment starts.
    start: u64,
    segment: Segment,
    ticket: Arc<Ticket>,
    outcome: Outcome,
}

/// The message framing of one direction: where each message starts.
#[derive(Debug)]
struct Frame {
    startup: bool,
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to come.
    rest: usize,
}

impl Frame {
    fn new(startup: bool) -> Self {
        Frame {
            startup,
            header: [0; 5],
            have: 0,
            rest: 0,
        }
    }
}

/// The splice state of one connection's socket (owned by its `Watched`).
#[derive(Debug)]
pub(crate) struct Splicer {
    armed: Arc<Armed>,
    /// Outgoing: framing of the client's bytes, replies requested so far (`Q`, `S`, `F`,
    /// startup), and the splice being written around a statement.
    out: Frame,
    requested: u64,
    out_kind: u8,
    /// A complete request to write once the current (`Q`) message is fully written.
    after_current: Option<(Vec<u8>, Arc<Ticket>)>,
    /// The suffix of a statement splice, written before the next `Sync`.
    suffix: Option<(Vec<u8>, Arc<Ticket>)>,
    client_executes: u32,
    /// Incoming: framing, replies seen, and the segments to come.
    inc: Frame,
    seen: u64,
    in_kind: u8,
    in_drop: bool,
    capture: Option<Vec<u8>>,
    pending: std::collections::VecDeque<Pending>,
}

/// How much of an `ErrorResponse` is kept: its code, message and constraint come first.
const CAPTURE: usize = 1024;

impl Splicer {
    pub(crate) fn new(armed: Arc<Armed>) -> Self {
        Splicer {
            armed,
            out: Frame::new(true),
            requested: 0,
            out_kind: 0,
            after_current: None,
            suffix: None,
            client_executes: 0,
            inc: Frame::new(false),
            seen: 0,
            in_kind: 0,
            in_drop: false,
            capture: None,
            pending: Default::default(),
        }
    }

    /// Whether the outgoing bytes must go through [`Splicer::write`] (a splice is armed or half
    /// written); otherwise they may be written as they are, after [`Splicer::count`].
    pub(crate) fn writing(&self) -> bool {
        self.armed.any() || self.after_current.is_some() || self.suffix.is_some()
    }

    /// Notes client bytes written as they are (no splice armed).
    pub(crate) fn count(&mut self, bytes: &[u8]) {
        let mut sink = |_: &[u8]| {};
        self.frame_out(bytes, &mut sink, false);
    }

    /// Appends the client's `bytes` to `out`, with any armed splice written at its anchor.
    pub(crate) fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        self.frame_out(bytes, &mut sink, true);
    }

    fn frame_out(&mut self, mut bytes: &[u8], sink: &mut dyn FnMut(&[u8]), splice: bool) {
        while !bytes.is_empty() {
            if self.out.rest > 0 {
                let n = self.out.rest.min(bytes.len());
                sink(&bytes[..n]);
                self.out.rest -= n;
                bytes = &bytes[n..];
                if self.out.rest == 0 {
                    self.out_message_done(sink);
                }
                continue;
            }
            let header_len = if self.out.startup { 4 } else { 5 };
            if self.out.have == 0 && !self.out.startup && splice {
                // A message starts: its type byte decides what goes before it.
                self.before_message(bytes[0], sink);
            }
            let n = (header_len - self.out.have).min(bytes.len());
            self.out.header[self.out.have..self.out.have + n].copy_from_slice(&bytes[..n]);
            self.out.have += n;
            sink(&bytes[..n]);
            bytes = &bytes[n..];
            if self.out.have < header_len {
                break;
            }
            let (kind, len) = if self.out.startup {
                (0, &self.out.header[..4])
            } else {
                (self.out.header[0], &self.out.header[1..5])
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            self.out.rest = len.saturating_sub(4);
            self.out.have = 0;
            self.out.startup = false;
            self.out_kind = kind;
            if matches!(kind, 0 | b'Q' | b'S' | b'F') {
                self.requested += 1;
            }
            if kind == b'E' && self.suffix.is_some() {
                self.client_executes += 1;
            }
            if self.out.rest == 0 {
                self.out_message_done(sink);
            }
        }
    }

    /// Before the client's message of type `kind` goes out.
    fn before_message(&mut self, kind: u8, sink: &mut dyn FnMut(&[u8])) {
        if kind == b'S' {
            if let Some((suffix, ticket)) = self.suffix.take() {
                sink(&suffix);
                let executes = self.client_executes;
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .find(|p| Arc::ptr_eq(&p.ticket, &ticket))
                {
                    p.outcome.client_executes = executes;
                }
                return;
            }
        }
        if !self.armed.any() {
            return;
        }
        let Some((anchor, ticket)) = self.armed.take_for(kind) else {
            return;
        };
        ticket.set_placed();
        match anchor {
            Anchor::BeforeQuery(request) => {
                self.push(Segment::Hidden, ticket);
                self.requested += 1;
                sink(&request);
            }
            Anchor::AfterQuery(request) => {
                self.after_current = Some((request, ticket));
            }
            Anchor::AroundStatement {
                prefix,
                suffix,
                parts,
            } => {
                // The statement's `Z` is the one its own `Sync` will request.
                let segment = Segment::Around {
                    state: Around::Prefix(parts),
                    parts,
                };
                self.push(segment, ticket.clone());
                self.client_executes = 0;
                self.suffix = Some((suffix, ticket));
                sink(&prefix);
            }
        }
    }

    /// After the client's message (of type `out_kind`) went out completely.
    fn out_message_done(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if self.out_kind == b'Q' {
            if let Some((request, ticket)) = self.after_current.take() {
                self.push(Segment::Hidden, ticket);
                self.requested += 1;
                sink(&request);
            }
        }
    }

    /// A segment whose replies start after those of every request written so far (for a statement
    /// splice, its `Z` is the one the statement's own `Sync`, still to come, requests).
    fn push(&mut self, segment: Segment, ticket: Arc<Ticket>) {
        self.pending.push_back(Pending {
            start: self.requested,
            segment,
            ticket,
            outcome: Outcome::default(),
        });
    }

    /// Filters freshly read bytes in place: drops the replies of spliced statements. Returns how
    /// many bytes remain (at the front of `bytes`).
    pub(crate) fn read(&mut self, bytes: &mut [u8]) -> usize {
        let mut kept = 0;
        let mut i = 0;
        while i < bytes.len() {
            if self.inc.rest > 0 {
                let n = self.inc.rest.min(bytes.len() - i);
                if let Some(c) = self.capture.as_mut() {
                    let room = CAPTURE.saturating_sub(c.len());
                    c.extend_from_slice(&bytes[i..i + n.min(room)]);
                }
                if !self.in_drop {
                    if kept != i {
                        bytes.copy_within(i..i + n, kept);
                    }
                    kept += n;
                }
                i += n;
                self.inc.rest -= n;
                if self.inc.rest == 0 {
                    self.in_message_done();
                }
                continue;
            }
            if self.inc.have == 0 {
                self.in_kind = bytes[i];
                self.in_drop = self.decide(self.in_kind);
                self.capture = (self.in_kind == b'E').then(Vec::new);
            }
            let n = (5 - self.inc.have).min(bytes.len() - i);
            self.inc.header[self.inc.have..self.inc.have + n].copy_from_slice(&bytes[i..i + n]);
            self.inc.have += n;
            if !self.in_drop {
                if kept != i {
                    bytes.copy_within(i..i + n, kept);
                }
                kept += n;
            }
            i += n;
            if self.inc.have < 5 {
                break;
            }
            let h = &self.inc.header;
            let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            self.inc.rest = len.saturating_sub(4);
            self.inc.have = 0;
            if self.inc.rest == 0 {
                self.in_message_done();
            }
        }
        kept
    }

    /// Whether the incoming message of type `kind` is dropped, given where the stream is.
    fn decide(&mut self, kind: u8) -> bool {
        // Asynchronous messages (notices, notifications, parameter changes) always pass.
        if matches!(kind, b'N' | b'A' | b'S') {
            return false;
        }
        let Some(p) = self.pending.front() else {
            return false;
        };
        if p.start != self.seen {
            return false;
        }
        match &p.segment {
            Segment::Hidden => true,
            Segment::Around { state, .. } => match state {
                Around::Prefix(_) | Around::Suffix(_) => kind != b'E' && kind != b'Z',
                Around::Statement | Around::Rest => false,
            },
        }
    }

    fn in_message_done(&mut self) {
        let kind = self.in_kind;
        let error = match (kind, self.capture.take()) {
            (b'E', Some(body)) => Some(ServerError::parse(&body)),
            _ => None,
        };
        let seen = self.seen;
        if let Some(p) = self.pending.front_mut().filter(|p| p.start == seen) {
            match &mut p.segment {
                Segment::Hidden => {
                    if let Some(e) = error {
                        p.outcome.first.get_or_insert(e);
                    }
                }
                Segment::Around { state, parts } => match (*state, kind) {
                    (Around::Prefix(_), b'E') => {
                        p.outcome.first = error;
                        *state = Around::Rest;
                    }
                    (Around::Prefix(left), b'C') => {
                        *state = match left {
                            0 | 1 => Around::Statement,
                            n => Around::Prefix(n - 1),
                        }
                    }
                    (Around::Statement, b'C' | b'I' | b's') => *state = Around::Suffix(*parts),
                    (Around::Statement, b'E') => *state = Around::Rest,
                    (Around::Suffix(left), b'E') => {
                        // The assertion's error, or the `COMMIT`'s after it.
                        if left == *parts {
                            p.outcome.second = error;
                        } else {
                            p.outcome.commit = error;
                        }
                        *state = Around::Rest;
                    }
                    (Around::Suffix(left), b'C') => {
                        *state = match left {
                            0 | 1 => Around::Rest,
                            n => Around::Suffix(n - 1),
                        }
                    }
                    _ => {}
                },
            }
        }
        if kind == b'Z' {
            if self.pending.front().is_some_and(|p| p.start == seen) {
                let p = self.pending.pop_front().expect("front");
                p.ticket.resolve(p.outcome);
            }
            self.seen += 1;
        }
    }
}

impl Drop for Splicer {
    fn drop(&mut self) {
        // The connection ended: nothing more will be answered.
        let lost = Outcome {
            lost: true,
            ..Outcome::default()
        };
        for p in self.pending.drain(..) {
            p.ticket.resolve(lost.clone());
        }
        if let Some((_, t)) = self.after_current.take() {
            t.resolve(lost.clone());
        }
        if let Some((_, t)) = self.suffix.take() {
            t.resolve(lost.clone());
        }
        let armed =
            std::mem::take(&mut *self.armed.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, t) in armed {
            t.resolve(lost.clone());
        }
    }
}

#[cfg(test)]
mod tests;
