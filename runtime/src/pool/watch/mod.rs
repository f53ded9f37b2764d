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
mod framer;
#[cfg(test)]
pub(crate) use framer::message;
pub(crate) use framer::Framer;
use framer::{is_statement_lost, sqlstate};

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

#[cfg(test)]
mod tests;
