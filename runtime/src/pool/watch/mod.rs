//! [`Watched`]: the socket of one PostgreSQL connection, wrapped so that the client never waits
//! forever for the server.
//!
//! It reads just enough of the protocol's framing (a type byte and a length per message) to
//! count the replies the server owes: one `ReadyForQuery` (`Z`) for the startup packet and for
//! each simple query (`Q`), `Sync` (`S`) or function call (`F`) sent. While a reply is owed and
//! the server sends nothing for the reply timeout, reads fail with `TimedOut`, which ends the
//! connection: a frozen network or a stalled server becomes an error instead of a hang. The
//! count also tells the pool whether a connection is idle, and [`Link::kill`] closes the socket
//! from outside (see `reap.rs`).
//!
//! It also reads the SQLSTATE of each `ErrorResponse` (`E`), to notice the errors a transaction
//! pooler causes when a connection uses named prepared statements: a statement prepared on one
//! server connection and run on another (`26000`, "prepared statement \"s1\" does not exist"),
//! or one left behind by another client (`42P05`, "… already exists"). See
//! [`Link::statement_lost`].
//! It also counts the `Parse` (`P`) messages written, which tells whether a statement went out
//! without being prepared first (`db/one_rtt.rs`).
//!
//! And it carries tenantry's own statements into the stream and their replies out of it (see
//! `splice.rs`): armed through [`Link::splice`], written at their anchor, answered through their
//! [`Ticket`].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::splice::{Anchor, Armed, Splicer, Ticket};

/// What the pool and the reaper know about one connection's socket.
#[derive(Debug, Default)]
pub(crate) struct Link {
    owed: AtomicUsize,
    killed: AtomicBool,
    statement_lost: AtomicBool,
    waker: AtomicWaker,
    idle: Notify,
    /// `Parse` messages written.
    parses: AtomicU64,
    /// `DataRow` messages read (rows the server returned; per-tenant metrics).
    rows: AtomicU64,
    /// tenantry's statements waiting for their place in the stream.
    armed: Arc<Armed>,
}

/// What the client has written so far (see [`Link::sent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// `Parse` messages written.
    pub(crate) parses: u64,
}

impl Link {
    /// Replies the server still owes (0: the connection is idle).
    pub(crate) fn owed(&self) -> usize {
        self.owed.load(Ordering::Acquire)
    }

    /// Waits until no reply is owed.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.owed() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Closes the socket: the connection's driver sees an error at its next poll, which it is
    /// woken for now.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the server answered a statement of this connection with `26000` (a prepared
    /// statement it does not have) or `42P05` (one it already has): the signature of a
    /// transaction pooler under a per-connection statement cache.
    pub(crate) fn statement_lost(&self) -> bool {
        self.statement_lost.load(Ordering::Acquire)
    }

    /// What has been written so far.
    pub(crate) fn sent(&self) -> Sent {
        Sent {
            parses: self.parses.load(Ordering::Acquire),
        }
    }

    /// `DataRow` messages read so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Arms `anchor`'s statements: the socket writes them when the client's stream reaches the
    /// anchor, and drops their replies (see `splice.rs`).
    pub(crate) fn splice(&self, anchor: Anchor) -> Arc<Ticket> {
        self.armed.arm(anchor)
    }

    /// Withdraws a splice whose anchor has not come; whether it was withdrawn (not written).
    pub(crate) fn unsplice(&self, ticket: &Arc<Ticket>) -> bool {
        self.armed.disarm(ticket)
    }

    fn requested(&self, messages: usize) {
        self.owed.fetch_add(messages, Ordering::AcqRel);
    }

    /// Records one message written.
    fn wrote(&self, kind: u8) {
        if kind == b'P' {
            self.parses.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn answered(&self, replies: usize) {
        let before = self
            .owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(replies))
            })
            .unwrap_or(0);
        if before <= replies {
            self.idle.notify_waiters();
        }
    }
}

/// Splits a byte stream into protocol messages and counts those of interest.
#[derive(Debug)]
pub(crate) struct Framer {
    /// The next message is the startup packet, which has no type byte.
    startup: bool,
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to skip.
    skip: usize,
    /// The type of message whose first [`CAPTURE`] body bytes are kept, if any.
    capture: Option<u8>,
    captured: Vec<u8>,
    /// Body bytes of the current message still to keep.
    keep: usize,
}

/// How much of a captured message is kept: an `ErrorResponse` sends its severity and SQLSTATE
/// first, well within this.
const CAPTURE: usize = 64;

impl Framer {
    pub(crate) fn new(startup: bool) -> Self {
        Framer {
            startup,
            header: [0; 5],
            have: 0,
            skip: 0,
            capture: None,
            captured: Vec::new(),
            keep: 0,
        }
    }

    /// A framer that also hands the first bytes of each `kind` message to `feed`'s `captured`.
    fn capturing(startup: bool, kind: u8) -> Self {
        Framer {
            capture: Some(kind),
            ..Framer::new(startup)
        }
    }

    /// Feeds `bytes`, calling `each` with the type of every complete message header (0 for the
    /// startup packet), and `captured` with the kept start of each captured message.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(u8),
        mut captured: impl FnMut(&[u8]),
    ) {
        while !bytes.is_empty() {
            if self.keep > 0 {
                let n = self.keep.min(bytes.len());
                self.captured.extend_from_slice(&bytes[..n]);
                self.keep -= n;
                bytes = &bytes[n..];
                if self.keep == 0 {
                    captured(&self.captured);
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let header_len = if self.startup { 4 } else { 5 };
            let n = (header_len - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < header_len {
                break;
            }
            let (kind, len) = if self.startup {
                (0, &self.header[..4])
            } else {
                (self.header[0], &self.header[1..5])
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            // The length counts itself (4 bytes) but not the type byte.
            let body = len.saturating_sub(4);
            self.skip = body;
            self.have = 0;
            self.startup = false;
            each(kind);
            if self.capture == Some(kind) {
                self.keep = body.min(CAPTURE);
                self.skip = body - self.keep;
                self.captured.clear();
                if self.keep == 0 {
                    captured(&[]);
                }
            }
        }
    }
}

/// The SQLSTATE (`C` field) of an `ErrorResponse` body, if its kept start holds it.
fn sqlstate(body: &[u8]) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return Some(&tail[..end]);
        }
        rest = &tail[end + 1..];
    }
    None
}

/// SQLSTATEs of a prepared statement missing (`26000`) or already there (`42P05`).
fn is_statement_lost(code: &[u8]) -> bool {
    code == b"26000" || code == b"42P05"
}

/// A socket whose replies are watched (see the module docs).
pub(crate) struct Watched<S> {
    inner: S,
    link: Arc<Link>,
    reply_timeout: Duration,
    out: Framer,
    inc: Framer,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    terminated: bool,
    splicer: Splicer,
    /// Bytes accepted from the client, with tenantry's statements spliced in, not yet written.
    spliced: Vec<u8>,
}

/// How many spliced bytes may wait for the socket before the client's writes wait too.
const SPLICED_LIMIT: usize = 64 * 1024;

/// The `Terminate` message: sent best-effort when a connection is killed, so that the server
/// ends the session quietly.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

impl<S> Watched<S> {
    /// Wraps `inner`; the first message written must be the startup packet.
    pub(crate) fn new(inner: S, link: Arc<Link>, reply_timeout: Duration) -> Self {
        Watched {
            inner,
            splicer: Splicer::new(link.armed.clone()),
            spliced: Vec::new(),
            link,
            reply_timeout,
            out: Framer::new(true),
            inc: Framer::capturing(false, b'E'),
            deadline: Box::pin(tokio::time::sleep(reply_timeout)),
            armed: false,
            terminated: false,
        }
    }

    fn arm(&mut self, cx: &mut Context<'_>) {
        self.armed = true;
        let at = Instant::now() + self.reply_timeout;
        self.deadline.as_mut().reset(at);
        // Register the timer now: the driver may not poll a read again before it fires.
        let _ = self.deadline.as_mut().poll(cx);
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "PostgreSQL sent no reply within {} ms",
                self.reply_timeout.as_millis()
            ),
        )
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn check_killed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.link.waker.register(cx.waker());
        if !self.link.killed.load(Ordering::Acquire) {
            return Ok(());
        }
        if !self.terminated {
            self.terminated = true;
            let _ = Pin::new(&mut self.inner).poll_write(cx, &TERMINATE);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection closed by tenantry",
        ))
    }
}

use std::future::Future as _;

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_killed(cx)?;
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    let read = &buf.filled()[before..];
                    if read.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let link = &this.link;
                    let mut replies = 0;
                    let mut rows = 0;
                    this.inc.feed(
                        read,
                        |kind| {
                            replies += usize::from(kind == b'Z');
                            rows += u64::from(kind == b'D');
                        },
                        |error| {
                            if sqlstate(error).is_some_and(is_statement_lost) {
                                link.statement_lost.store(true, Ordering::Release);
                            }
                        },
                    );
                    this.link.answered(replies);
                    if rows > 0 {
                        this.link.rows.fetch_add(rows, Ordering::Relaxed);
                    }
                    if this.link.owed() > 0 {
                        this.arm(cx);
                    } else {
                        this.armed = false;
                    }
                    // tenantry's own replies stay here.
                    let kept = this.splicer.read(&mut buf.filled_mut()[before..]);
                    buf.set_filled(before + kept);
                    if kept == 0 {
                        continue;
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if this.armed && this.deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(this.timed_out()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Counts `written` bytes that reached the socket: requests owed a reply, `Parse`s and
    /// `Execute`s.
    fn wrote(&mut self, cx: &mut Context<'_>, written: &[u8]) {
        let mut requests = 0;
        let link = &self.link;
        self.out.feed(
            written,
            |kind| {
                requests += usize::from(matches!(kind, 0 | b'Q' | b'S' | b'F'));
                link.wrote(kind);
            },
            |_| {},
        );
        if requests > 0 {
            let was_idle = self.link.owed() == 0;
            self.link.requested(requests);
            if was_idle || !self.armed {
                self.arm(cx);
            }
        }
    }

    /// Writes spliced bytes until none wait or the socket is full.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.spliced.is_empty() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.spliced) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the socket accepted no bytes",
                    )))
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let mut spliced = std::mem::take(&mut self.spliced);
            self.wrote(cx, &spliced[..n]);
            spliced.drain(..n);
            self.spliced = spliced;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_killed(cx)?;
        if this.spliced.is_empty() && !this.splicer.writing() {
            // Nothing to splice: the client's bytes go out as they are.
            let written = match Pin::new(&mut this.inner).poll_write(cx, buf) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            this.splicer.count(&buf[..written]);
            this.wrote(cx, &buf[..written]);
            return Poll::Ready(Ok(written));
        }
        if this.spliced.len() >= SPLICED_LIMIT {
            match this.drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if this.spliced.len() >= SPLICED_LIMIT => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        this.splicer.write(buf, &mut this.spliced);
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_killed(cx)?;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// One protocol message: `kind`, its length, `body` (for the tests of the framers here and in
/// `testing/wire.rs`).
#[cfg(test)]
pub(crate) fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_counts_messages_split_anywhere() {
        let mut stream = (8u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&196608u32.to_be_bytes()); // startup packet
        stream.extend(message(b'Q', b"SELECT 1\0"));
        stream.extend(message(b'P', b"\0SELECT 2\0\0\0"));
        stream.extend(message(b'S', b""));
        stream.extend(message(b'X', b""));
        for chunk in 1..stream.len() {
            let mut framer = Framer::new(true);
            let mut kinds = Vec::new();
            for c in stream.chunks(chunk) {
                framer.feed(c, |kind| kinds.push(kind), |_| {});
            }
            assert_eq!(kinds, [0, b'Q', b'P', b'S', b'X'], "chunks of {chunk}");
        }
    }

    #[test]
    fn error_codes_are_read_across_any_split() {
        let mut stream = message(b'1', b"");
        stream.extend(message(
            b'E',
            b"SERROR\0VERROR\0C26000\0Mprepared statement \"s7\" does not exist\0\0",
        ));
        stream.extend(message(b'E', b"SERROR\0VERROR\0C42P01\0Mno such table\0\0"));
        stream.extend(message(b'Z', b"I"));
        for chunk in 1..stream.len() {
            let mut framer = Framer::capturing(false, b'E');
            let mut codes = Vec::new();
            let mut replies = 0;
            for c in stream.chunks(chunk) {
                framer.feed(
                    c,
                    |k| replies += usize::from(k == b'Z'),
                    |body| codes.push(sqlstate(body).map(<[u8]>::to_vec)),
                );
            }
            assert_eq!(replies, 1, "chunks of {chunk}");
            assert_eq!(
                codes,
                vec![Some(b"26000".to_vec()), Some(b"42P01".to_vec())],
                "chunks of {chunk}"
            );
        }
        assert!(is_statement_lost(b"26000") && is_statement_lost(b"42P05"));
        assert!(!is_statement_lost(b"42P01"));
    }

    #[test]
    fn link_counts_parses() {
        let link = Link::default();
        for kind in [b'Q', b'B', b'E', b'S', b'P', b'D', b'S', b'B', b'E', b'S'] {
            link.wrote(kind);
        }
        assert_eq!(link.sent().parses, 1);
    }

    #[test]
    fn answered_never_goes_below_zero() {
        let link = Link::default();
        link.requested(1);
        link.answered(2);
        assert_eq!(link.owed(), 0);
    }
}
