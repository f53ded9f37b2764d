//! [`Connector`]: opens one PostgreSQL connection with every wait bounded, and the session
//! timeouts sent in the startup packet.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::Host;
use tokio_postgres::{CancelToken, NoTls};

use super::watch::{Link, Watched};
use super::{PgConn, Timeouts};

/// Opens connections to one database URL.
#[derive(Debug)]
pub(crate) struct Connector {
    config: tokio_postgres::Config,
    timeouts: Timeouts,
}

/// The server's socket: TCP, or a Unix socket when the URL names a directory as host.
pub(crate) enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

fn bad(message: impl Into<String>) -> ConnectionError {
    ConnectionError::BadConnection(message.into())
}

impl Connector {
    /// Parses `url` and adds the session timeouts to its `options` (the URL's own options come
    /// last, so a value given there wins).
    pub(crate) fn new(url: &str, timeouts: Timeouts) -> Result<Self, ConnectionError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| ConnectionError::InvalidConnectionUrl(format!("{e}")))?;
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
        Ok(Connector { config, timeouts })
    }

    /// The timeouts this connector applies.
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Opens a socket to the first host that accepts, within the connect timeout.
    async fn socket(&self) -> io::Result<Socket> {
        let hosts = self.config.get_hosts();
        let ports = self.config.get_ports();
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
            match tokio::time::timeout(self.timeouts.connect, attempt).await {
                Ok(Ok(socket)) => return Ok(socket),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no connection within {} ms",
                            self.timeouts.connect.as_millis()
                        ),
                    )
                }
            }
        }
        Err(last)
    }

    /// Opens a connection: socket, startup and diesel-async's session setup, all within the
    /// connect timeout.
    pub(crate) async fn connect(self: &Arc<Self>) -> Result<PgConn, ConnectionError> {
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

    async fn connect_unbounded(self: &Arc<Self>) -> Result<PgConn, ConnectionError> {
        let socket = self
            .socket()
            .await
            .map_err(|e| bad(format!("cannot reach PostgreSQL: {e}")))?;
        let link = Arc::new(Link::default());
        let stream = Watched::new(socket, link.clone(), self.timeouts.reply());
        let (client, connection) = self
            .config
            .connect_raw(stream, NoTls)
            .await
            .map_err(|e| bad(format!("the connection startup failed: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        let cancel = client.cancel_token();
        let conn = AsyncPgConnection::try_from(client).await?;
        Ok(PgConn {
            conn,
            link,
            driver,
            cancel,
            connector: self.clone(),
        })
    }

    /// Asks the server to cancel whatever `token`'s session is running, over a new socket.
    pub(crate) async fn cancel(&self, token: &CancelToken) -> Result<(), String> {
        let socket = self.socket().await.map_err(|e| e.to_string())?;
        let limit = self.timeouts.connect;
        match tokio::time::timeout(limit, token.cancel_query_raw(socket, NoTls)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
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
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_go_first_so_the_url_wins() {
        let connector = Connector::new(
            "postgres://u@h:5432/db?options=-c%20lock_timeout%3D9s",
            Timeouts::default(),
        )
        .unwrap();
        let options = connector.config.get_options().unwrap();
        assert!(
            options.starts_with("-c statement_timeout=5000 -c lock_timeout=2000"),
            "{options}"
        );
        assert!(options.ends_with("-c lock_timeout=9s"), "{options}");
    }
}
