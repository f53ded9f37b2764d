//! The directory listener: a session of its own that `LISTEN`s on channel `tenantry_directory`
//! (notified by migration `0003_directory_notify` on every change to `users`, `memberships` and
//! `tenants`) and keeps the principal cache true (see `identity/cache.rs`).
//!
//! - Once listening, the listener proves it hears the app's database: it sends a notification
//!   carrying a random nonce through the app pool, and trusts its session only once that nonce
//!   comes back on it (within [`PROBE_WITHIN`]). A `TENANTRY_LISTEN_DATABASE_URL` that leads to
//!   another database (easy behind a pooler whose alias differs) answers every heartbeat and
//!   hears nothing; without the proof its cache would never expire. Unheard, the session counts
//!   as down (entries live at most the TTL), one warning names the variable, and the listener
//!   tries again with its growing pause.
//! - Each notification empties the cache, as soon as it is read.
//! - Every third of the cache's TTL the listener makes a round trip on its session; once it is
//!   answered, every change committed before it began has emptied the cache, which may keep
//!   entries beyond the TTL while such confirmations are younger than the TTL.
//! - When the session fails (a lost connection, no answer within the heartbeat, a refused
//!   `LISTEN`), the cache is emptied and its entries live at most the TTL, while the listener
//!   reconnects with a growing pause (up to 5 s). Once listening again it empties the cache once
//!   more: changes made while it was away were not notified.
//!
//! It needs a direct session: a `LISTEN` through a transaction-mode pooler (PgBouncer) stops
//! hearing when the pooler hands the server connection to another client. Its URL is
//! [`DbConfig::listen_url`](crate::db::DbConfig::listen_url) (`TENANTRY_LISTEN_DATABASE_URL`), the
//! app pool's by default. It starts with the first principal lookup, so a `Db` that never
//! authenticates a request (a job runner, the CLI) opens no session for it. In
//! `pg_stat_activity` it is `application_name = 'tenantry listener'`.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use std::sync::Mutex;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::identity::PrincipalCache;
use crate::pool::{Connector, PgPool, Pooled, Session};

/// The channel migration `0003_directory_notify` notifies.
pub(crate) const CHANNEL: &str = "tenantry_directory";

/// The `application_name` of the listener's session.
pub(crate) const APPLICATION_NAME: &str = "tenantry listener";

/// How long the listener waits for its own probe to come back before it distrusts its session.
pub(crate) const PROBE_WITHIN: Duration = Duration::from_secs(5);

/// The payload prefix of a probe (the rest is its nonce); directory changes notify table names.
const PROBE: &str = "probe:";

/// Pauses between two attempts to reconnect: from the first, doubling up to the second.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The principal cache and the listener that keeps it true; one per [`crate::db::Db`] and its
/// clones.
pub(crate) struct Directory {
    cache: PrincipalCache,
    /// `None` when the cache is off: nothing to listen for.
    connector: Option<Connector>,
    /// The app pool, which sends the listener's probe.
    app: PgPool,
    /// The probe awaited: its nonce, and whom to tell when it arrives.
    probe: Mutex<Option<(String, oneshot::Sender<()>)>>,
    listener: OnceLock<AbortOnDrop>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("cache", &self.cache)
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

/// Aborts its task when dropped (with the last clone of the `Db`).
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Directory {
    pub(crate) fn new(cache: PrincipalCache, connector: Option<Connector>, app: PgPool) -> Self {
        let connector = connector.filter(|_| cache.is_enabled());
        Directory {
            cache,
            connector,
            app,
            probe: Mutex::new(None),
            listener: OnceLock::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The principal cache; starts the listener on first use.
    pub(crate) fn principals(self: &Arc<Self>) -> &PrincipalCache {
        if self.listener.get().is_none() && !self.closed.load(Ordering::Acquire) {
            if let Some(connector) = &self.connector {
                self.listener.get_or_init(|| {
                    let connector = connector.clone();
                    AbortOnDrop(tokio::spawn(listen(Arc::downgrade(self), connector)))
                });
            }
        }
        &self.cache
    }

    /// Whether a listener keeps the cache true (else entries live by the TTL alone).
    pub(crate) fn listens(&self) -> bool {
        self.connector.is_some()
    }

    /// The cache without starting the listener (for its status).
    pub(crate) fn cache(&self) -> &PrincipalCache {
        &self.cache
    }

    /// Stops the listener for good (at shutdown); cached entries then live at most the TTL.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(listener) = self.listener.get() {
            listener.0.abort();
        }
        self.cache.listener_down();
    }
}

/// Why a listening session ended.
enum Ended {
    /// The `Db` is gone: stop.
    Gone,
    /// The session failed: reconnect.
    Failed {
        reason: String,
        /// Whether it had been listening.
        listened: bool,
    },
}

fn failed(reason: impl Into<String>, listened: bool) -> Ended {
    Ended::Failed {
        reason: reason.into(),
        listened,
    }
}

async fn listen(directory: Weak<Directory>, connector: Connector) {
    let ttl = match directory.upgrade() {
        Some(d) => d.cache.ttl(),
        None => return,
    };
    let heartbeat = (ttl / 3).max(Duration::from_millis(10));
    let mut backoff = MIN_BACKOFF;
    let mut down_since_logged = false;
    loop {
        let (reason, listened) = match session(&directory, &connector, ttl, heartbeat).await {
            Ended::Gone => return,
            Ended::Failed { reason, listened } => (reason, listened),
        };
        let Some(d) = directory.upgrade() else { return };
        d.cache.listener_down();
        drop(d);
        if listened {
            backoff = MIN_BACKOFF;
            down_since_logged = false;
        }
        // One warning when it goes down (or cannot start); further failures at debug level.
        if down_since_logged {
            tracing::debug!(error = %reason, "directory listener still down");
        } else {
            down_since_logged = true;
            tracing::warn!(
                error = %reason,
                ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                "directory listener down: cached principals live at most the TTL until it is back"
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening session: connect, `LISTEN`, then heartbeats until it fails. Notifications are
/// handled by [`drive`] as they are read.
async fn session(
    directory: &Weak<Directory>,
    connector: &Connector,
    ttl: Duration,
    heartbeat: Duration,
) -> Ended {
    let (client, connection) = match connector.connect_session(APPLICATION_NAME).await {
        Ok(pair) => pair,
        Err(e) => return failed(e.to_string(), false),
    };
    let mut driver = AbortOnDrop(tokio::spawn(drive(connection, directory.clone())));
    // A heartbeat may take up to the TTL: entries outlive the TTL only while confirmations are
    // younger than it, so a slow answer shortens nothing that matters, and a lost one ends the
    // session.
    let answer_within = ttl.max(Duration::from_secs(1));

    let sent = Instant::now();
    let listen_sql = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&listen_sql);
    match tokio::time::timeout(answer_within, listen).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed(format!("LISTEN failed: {e}"), false),
        Err(_) => return failed("LISTEN was not answered in time", false),
    }
    if let Err(reason) = prove(directory, &mut driver).await {
        return reason;
    }
    {
        let Some(d) = directory.upgrade() else {
            return Ended::Gone;
        };
        // Changes committed before the LISTEN took effect were not notified.
        d.cache.invalidate();
        d.cache.confirmed(sent);
    }
    tracing::info!("directory listener up: cached principals live until the directory changes");

    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut driver.0 => return failed("the connection closed", true),
            _ = tick.tick() => {}
        }
        let sent = Instant::now();
        match tokio::time::timeout(answer_within, client.batch_execute("")).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return failed(e.to_string(), true),
            Err(_) => {
                return failed(
                    format!("no answer within {} ms", answer_within.as_millis()),
                    true,
                )
            }
        }
        let Some(d) = directory.upgrade() else {
            return Ended::Gone;
        };
        // PostgreSQL sends a pending notification before the answer to a later command, and
        // `drive` empties the cache as it reads one: every change committed before `sent` has
        // emptied it by now.
        d.cache.confirmed(sent);
    }
}

/// Sends a notification with a fresh nonce through the app pool and waits (at most
/// [`PROBE_WITHIN`]) for it to come back on the listener's session: proof that the session
/// listens on the app's database.
async fn prove(directory: &Weak<Directory>, driver: &mut AbortOnDrop) -> Result<(), Ended> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let (heard, wait) = oneshot::channel();
    let app = {
        let Some(d) = directory.upgrade() else {
            return Err(Ended::Gone);
        };
        *d.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((nonce.clone(), heard));
        d.app.clone()
    };
    let send = async {
        let obj = app.get().await.map_err(|e| format!("the app pool: {e}"))?;
        let conn = Pooled::new(obj);
        let mut c: &diesel_async::AsyncPgConnection = &conn;
        // The nonce is 32 hex digits: nothing to quote.
        diesel_async::SimpleAsyncConnection::batch_execute(
            &mut c,
            &format!("NOTIFY {CHANNEL}, '{PROBE}{nonce}'"),
        )
        .await
        .map_err(|e| format!("the probe could not be sent through the app pool: {e}"))
    };
    let outcome = tokio::time::timeout(PROBE_WITHIN, async {
        send.await?;
        tokio::select! {
            r = wait => r.map_err(|_| "the listener stopped".to_owned()),
            _ = &mut driver.0 => Err("the connection closed".to_owned()),
        }
    })
    .await;
    if let Some(d) = directory.upgrade() {
        d.probe.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(failed(reason, false)),
        Err(_) => Err(failed(
            format!(
                "the listener did not hear its own probe, sent through the app pool, within {} s: \
                 TENANTRY_LISTEN_DATABASE_URL leads to another database than \
                 TENANTRY_APP_DATABASE_URL (or through a transaction pooler); point it at the app's \
                 database",
                PROBE_WITHIN.as_secs()
            ),
            false,
        )),
    }
}

/// Polls the session's connection, emptying the cache at each notification of [`CHANNEL`]
/// as it is read (before any later answer is handed to the client); returns when the
/// connection ends.
async fn drive(mut connection: Session, directory: Weak<Directory>) {
    loop {
        match poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                let Some(d) = directory.upgrade() else { return };
                if let Some(nonce) = n.payload().strip_prefix(PROBE) {
                    // A probe (this listener's, or another instance's): not a change.
                    let mut waiting = d.probe.lock().unwrap_or_else(|e| e.into_inner());
                    if waiting.as_ref().is_some_and(|(mine, _)| mine == nonce) {
                        if let Some((_, heard)) = waiting.take() {
                            let _ = heard.send(());
                        }
                    }
                    continue;
                }
                d.cache.invalidate();
                tracing::debug!(
                    table = n.payload(),
                    "directory changed: principal cache emptied"
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "directory listener connection ended");
                return;
            }
            None => return,
        }
    }
}
