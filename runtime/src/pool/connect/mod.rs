//! [`Connector`]: opens one PostgreSQL connection with every wait bounded, and the session
//! timeouts sent in the startup packet (straight to PostgreSQL) or none at all (behind a
//! transaction pooler, which refuses them: see [`Pooler`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use diesel::connection::CacheSize;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{CancelToken, NoTls};

use super::watch::{Link, Watched};
use super::{PgConn, Timeouts};
use crate::pool::pooler::Pooler;
use crate::pool::seal;
use crate::pool::tls::{self, MaybeTls, PgTls};

/// A connection's stream: the socket, encrypted or not as the URL's `sslmode` says (under
/// [`Watched`], which frames the protocol in plain text).
pub(crate) type PgStream = MaybeTls<Socket>;

/// The connection half of a session opened by [`Connector::connect_session`]: poll it for the
/// server's messages and notifications.
pub(crate) type Session = tokio_postgres::Connection<Watched<PgStream>, NoTlsStream>;

/// Opens connections to one database URL.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    /// The URL without its TLS parameters, `sslmode` disabled: tenantry makes the handshake.
    config: tokio_postgres::Config,
    tls: PgTls,
    timeouts: Timeouts,
    pooler: Pooler,
    /// The connections run tenant transactions: prepare the tenant seal's statements (straight
    /// to PostgreSQL; behind a transaction pooler they are parsed with each use).
    seal: bool,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The URL cannot be parsed.
    Url(String),
    /// Nothing answered in time, or the connection broke: the database is unavailable.
    Unreachable(String),
    /// The server, or a pooler in front of it, answered the startup with an error: a role or
    /// database that does not exist, a failed authentication, a refused startup parameter.
    Refused {
        /// The server's message.
        message: String,
        /// It refused the startup packet's `options` (PgBouncer: "unsupported startup
        /// parameter: options").
        options: bool,
    },
    /// diesel-async's session setup failed.
    Setup(diesel::ConnectionError),
    /// The session setup's prepared statements were lost between their two round trips: a
    /// transaction pooler is in the way (see `watch.rs`).
    StatementLost(String),
    /// The tenant seal's statements could not be prepared: the database lacks tenantry's
    /// migrations, or the role their grants.
    Seal(String),
    /// TLS as the URL asks could not be had: the server offers none, or its certificate is
    /// refused.
    Tls(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Url(m) => write!(f, "invalid database URL: {m}"),
            ConnectError::Unreachable(m) => f.write_str(m),
            ConnectError::Refused { message, .. } => {
                write!(f, "the connection startup failed: {message}")
            }
            ConnectError::Setup(e) => write!(f, "the session setup failed: {e}"),
            ConnectError::StatementLost(m) => write!(f, "the session setup failed: {m}"),
            ConnectError::Seal(m) => f.write_str(m),
            ConnectError::Tls(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConnectError {}

fn bad(message: impl Into<String>) -> ConnectError {
    ConnectError::Unreachable(message.into())
}

/// Opens a socket to the first host of `config` that accepts (each within `limit`, if any):
/// the socket and the host name a TLS handshake checks (`None` for a Unix socket).
pub(crate) async fn open_socket(
    config: &tokio_postgres::Config,
    limit: Option<Duration>,
) -> io::Result<(Socket, Option<String>)> {
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "the URL names no host");
    for (i, host) in hosts.iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let attempt = async {
            match host {
                Host::Tcp(name) => {
                    let stream = TcpStream::connect((name.as_str(), port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(Socket::Tcp(stream))
                }
                #[cfg(unix)]
                Host::Unix(dir) => {
                    let path = dir.join(format!(".s.PGSQL.{port}"));
                    Ok(Socket::Unix(tokio::net::UnixStream::connect(path).await?))
                }
                #[cfg(not(unix))]
                Host::Unix(_) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "Unix sockets are not supported on this platform",
                )),
            }
        };
        let outcome = match limit {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {} ms", limit.as_millis()),
                    ))
                }),
            None => attempt.await,
        };
        match outcome {
            Ok(socket) => return Ok((socket, tls::tls_host(host).map(str::to_owned))),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The server's socket: TCP, or a Unix socket when the URL names a directory as host.
pub(crate) enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Connector {
    /// Parses `url` and, straight to PostgreSQL, adds the session timeouts to its `options` (the
    /// URL's own options come last, so a value given there wins). Behind a transaction pooler
    /// the timeouts are set in each transaction instead (see `Db`), and the URL is left as is.
    pub(crate) fn new(url: &str, timeouts: Timeouts, pooler: Pooler) -> Result<Self, ConnectError> {
        let (mut config, tls) = tls::parse(url).map_err(ConnectError::Url)?;
        if pooler == Pooler::Transaction {
            return Ok(Connector {
                config,
                tls,
                timeouts,
                pooler,
                seal: false,
            });
        }
        let ms = |d: Duration| d.as_millis();
        let mut options = format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
            ms(timeouts.statement),
            ms(timeouts.lock),
            ms(timeouts.idle_in_transaction),
        );
        if let Some(own) = config.get_options() {
            options.push(' ');
            options.push_str(own);
        }
        config.options(options);
        Ok(Connector {
            config,
            tls,
            timeouts,
            pooler,
            seal: false,
        })
    }

    /// Connections of this connector run tenant transactions (see [`Connector::seal`]).
    pub(crate) fn for_tenant_transactions(mut self) -> Self {
        self.seal = true;
        self
    }

    /// The timeouts this connector applies.
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// How this connector reaches PostgreSQL.
    pub(crate) fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// Opens a socket to the first host that accepts, within the connect timeout, and makes
    /// the TLS handshake the URL asks for.
    async fn stream(&self) -> Result<PgStream, ConnectError> {
        let (socket, host) = open_socket(&self.config, Some(self.timeouts.connect))
            .await
            .map_err(|e| bad(format!("cannot reach PostgreSQL: {e}")))?;
        self.tls
            .negotiate(socket, host.as_deref())
            .await
            .map_err(ConnectError::Tls)
    }

    /// Opens a connection: socket, startup and diesel-async's session setup, all within the
    /// connect timeout.
    pub(crate) async fn connect(self: &Arc<Self>) -> Result<PgConn, ConnectError> {
        let limit = self.timeouts.connect;
        tokio::time::timeout(limit, self.connect_unbounded())
            .await
            .unwrap_or_else(|_| {
                Err(bad(format!(
                    "PostgreSQL did not complete the connection within {} ms",
                    limit.as_millis()
                )))
            })
    }

    async fn connect_unbounded(self: &Arc<Self>) -> Result<PgConn, ConnectError> {
        let stream = self.stream().await?;
        let link = Arc::new(Link::default());
        let stream = Watched::new(stream, link.clone(), self.timeouts.reply());
        let (client, connection) =
            self.config
                .connect_raw(stream, NoTls)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(db) => ConnectError::Refused {
                        message: db.message().to_owned(),
                        options: db
                            .message()
                            .contains("unsupported startup parameter: options"),
                    },
                    None => bad(format!("the connection startup failed: {e}")),
                })?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        let cancel = client.cancel_token();
        let seal = match (self.seal, self.pooler) {
            (true, Pooler::Direct) => {
                prepare_seal(&client, &link).await?;
                seal::SealStatements::Named
            }
            _ => seal::SealStatements::Unnamed,
        };
        let conn = match self.pooler {
            Pooler::Direct => AsyncPgConnection::try_from(client)
                .await
                .map_err(|e| match link.statement_lost() {
                    true => ConnectError::StatementLost(e.to_string()),
                    false => ConnectError::Setup(e),
                })?,
            Pooler::Transaction => {
                // diesel-async's setup (`SET TIME ZONE`, `SET CLIENT_ENCODING`) runs named
                // prepared statements, each prepared in one round trip and run in the next: a
                // transaction keeps the pooler from handing the two to different servers.
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| bad(format!("the session setup failed: {e}")))?;
                let mut conn = AsyncPgConnection::try_from(client)
                    .await
                    .map_err(ConnectError::Setup)?;
                conn.batch_execute("COMMIT")
                    .await
                    .map_err(|e| bad(format!("the session setup failed: {e}")))?;
                // Each statement is prepared, run and closed inside its transaction: nothing
                // named outlives it on a server that the pooler hands to another client next.
                conn.set_prepared_statement_cache_size(CacheSize::Disabled);
                conn
            }
        };
        Ok(PgConn {
            conn,
            link,
            driver,
            cancel,
            connector: self.clone(),
            prepared: Default::default(),
            seal,
        })
    }

    /// Opens a plain session (no pool, no diesel-async), named `application_name` in
    /// `pg_stat_activity`, within the connect timeout: for the directory listener, which must
    /// poll the connection itself to receive notifications.
    pub(crate) async fn connect_session(
        &self,
        application_name: &str,
    ) -> Result<(tokio_postgres::Client, Session), ConnectError> {
        let limit = self.timeouts.connect;
        let mut config = self.config.clone();
        config.application_name(application_name);
        let connect = async {
            let stream = self.stream().await?;
            let stream = Watched::new(stream, Arc::new(Link::default()), self.timeouts.reply());
            config
                .connect_raw(stream, NoTls)
                .await
                .map_err(|e| bad(format!("the connection startup failed: {e}")))
        };
        tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| {
                Err(bad(format!(
                    "PostgreSQL did not complete the connection within {} ms",
                    limit.as_millis()
                )))
            })
    }

    /// Asks the server to cancel whatever `token`'s session is running, over a new socket.
    ///
    /// Like libpq, it waits (bounded) for the other side to close the socket once it has handled
    /// the request, rather than closing first: PgBouncer 1.18 crashes when the client of a
    /// cancel request goes away before the request was forwarded (PgBouncer issue #801).
    pub(crate) async fn cancel(&self, token: &CancelToken) -> Result<(), String> {
        let limit = self.timeouts.connect;
        let cancel = async {
            // The same TLS as the session's: a cancel request in plain text would cross the
            // network the session's URL says must be encrypted.
            let socket = CancelSocket(self.stream().await.map_err(|e| e.to_string())?);
            token
                .cancel_query_raw(socket, NoTls)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(limit, cancel).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        }
    }
}

/// Prepares the tenant seal's entry and assertion on a new connection, under tenantry's own
/// statement names (see `seal.rs`): spliced in before an empty simple query.
async fn prepare_seal(client: &tokio_postgres::Client, link: &Link) -> Result<(), ConnectError> {
    let ticket = link.splice(seal::prepare_request());
    client
        .batch_execute("")
        .await
        .map_err(|e| bad(format!("the session setup failed: {e}")))?;
    if link.statement_lost() {
        // "prepared statement \"tenantry_enter\" already exists": another client prepared it
        // on this server session, so a transaction pooler shares it (see `watch.rs`).
        return Err(ConnectError::StatementLost(
            "the tenant seal's prepared statements already exist on this session".into(),
        ));
    }
    match ticket.outcome() {
        Some(o) if o.lost => Err(bad("the connection ended during the session setup")),
        Some(o) => match o.first {
            None => Ok(()),
            Some(e) => Err(ConnectError::Seal(format!(
                "the tenant seal cannot be prepared ({}): the database lacks tenantry's \
                 migrations (00000000000005_tenant_seal) or the app role their grants; run them \
                 with `tenantry migrate` (or tenantry::migrate) as the tables' owner",
                e.message
            ))),
        },
        None => {
            link.unsplice(&ticket);
            Err(bad("the session setup's tenant seal was not answered"))
        }
    }
}

/// The socket of a cancel request: closing it waits until the server (or pooler) has closed its
/// side, which it does once the request is handled.
struct CancelSocket(PgStream);

impl AsyncRead for CancelSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CancelSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    /// Reads until the other side closes (it sends nothing else), without closing ours.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().0;
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                // Closed by a reset: handled all the same.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;
