//! TLS to PostgreSQL, on every connection tenantry opens: the pools, the directory listener,
//! cancel requests, migrations ([`establish`]), the `tenantry` command and the test kit.
//!
//! A database URL says what it wants as libpq does, with `sslmode` and `sslrootcert`:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it, else plain text | not checked, unless `sslrootcert` names a file (then as `verify-ca`) |
//! | `require` | always; a server without TLS is refused | not checked, unless `sslrootcert` names a file (then as `verify-ca`) |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and naming the URL's host (a DNS name or an IP address) |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for Mozilla's root program as
//! compiled into tenantry (webpki-roots: the same roots in every container, including images
//! without a CA store; a private CA goes in a file). As in libpq 16, `sslrootcert=system` makes
//! `verify-full` the default and refuses a weaker mode. Unlike libpq, no
//! `~/.postgresql/root.crt` is read: `verify-ca` and `verify-full` need `sslrootcert`. Unix-socket
//! hosts never use TLS (libpq's rule). `sslmode=allow`, `sslnegotiation=direct` and client
//! certificates (`sslcert`, `sslkey`) are refused with a message rather than ignored.
//!
//! TLS sits *under* tenantry's own framing of the protocol (`pool/watch.rs` counts replies and
//! splices statements into the plain protocol stream): tenantry sends the `SSLRequest`, makes
//! the handshake with rustls on ring, and hands tokio-postgres the decrypted stream with its
//! own `sslmode` set to `disable`.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_postgres::config::{Host, SslNegotiation};

mod stream;
mod verify;

pub(crate) use stream::MaybeTls;
use verify::client_config;

/// How a URL asks for TLS (`sslmode`), as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// `disable`: plain text.
    Disable,
    /// `prefer`: TLS when the server offers it (the default).
    Prefer,
    /// `require`: TLS or no connection.
    Require,
    /// `verify-ca`: TLS with a certificate signed by a CA of `sslrootcert`.
    VerifyCa,
    /// `verify-full`: as `verify-ca`, and the certificate names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (it tries plain text first): use \
                            sslmode=prefer, require, verify-ca or verify-full"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ))
            }
        })
    }

    /// The name libpq gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted CAs come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// What a URL asks of TLS, with the rustls configuration made from it.
#[derive(Clone)]
pub(crate) struct PgTls {
    mode: SslMode,
    roots: Option<Roots>,
    /// `None` for `disable`.
    client: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls")
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// The TLS parameters of a URL, without building anything: for the production check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRequest {
    /// The effective mode.
    pub mode: SslMode,
    /// Whether `sslmode` was written.
    pub explicit: bool,
}

/// Splits tenantry's TLS parameters off `url` (a `postgres://` URL or libpq's `key=value` form)
/// and parses the rest for tokio-postgres, whose own `sslmode` is set to `disable`: tenantry
/// makes the handshake itself (see the module docs).
pub(crate) fn parse(url: &str) -> Result<(tokio_postgres::Config, PgTls), String> {
    let (rest, params) = split(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    if config.get_ssl_negotiation() == SslNegotiation::Direct {
        return Err(
            "sslnegotiation=direct is not supported: remove it (tenantry asks for TLS \
                    with an SSLRequest, which every PostgreSQL accepts)"
                .into(),
        );
    }
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let tls = PgTls::new(&params)?;
    Ok((config, tls))
}

/// What `url` asks of TLS (its `sslmode`, effective and whether written), checking its values.
pub fn request(url: &str) -> Result<TlsRequest, String> {
    let (_, params) = split(url)?;
    let (mode, explicit, _) = params.resolve()?;
    Ok(TlsRequest { mode, explicit })
}

#[derive(Debug, Default)]
struct Params {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl Params {
    fn resolve(&self) -> Result<(SslMode, bool, Option<Roots>), String> {
        let roots = self.sslrootcert.as_deref().map(|r| match r {
            "system" => Roots::System,
            path => Roots::File(PathBuf::from(path)),
        });
        let explicit = self.sslmode.is_some();
        let mode = match (&self.sslmode, &roots) {
            (Some(m), _) => SslMode::parse(m)?,
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if roots == Some(Roots::System) && mode != SslMode::VerifyFull {
            return Err(format!(
                "weak sslmode={} may not be used with sslrootcert=system (use verify-full)",
                mode.as_str()
            ));
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && roots.is_none() {
            return Err(format!(
                "sslmode={} needs sslrootcert: the CA certificates' PEM file, or `system` for \
                 the public roots",
                mode.as_str()
            ));
        }
        Ok((mode, explicit, roots))
    }
}

/// `url` without its TLS parameters, and those parameters.
fn split(url: &str) -> Result<(String, Params), String> {
    let mut params = Params::default();
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => params.sslmode = Some(value),
            "sslrootcert" => params.sslrootcert = Some(value),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{key}: client certificates are not supported; authenticate with a password \
                     (over TLS) instead"
                ))
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The other parameters stay exactly as written (re-encoding would turn `%20` into `+`,
        // which tokio-postgres reads as a plus sign).
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => return Ok((url.to_owned(), params)),
        };
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            if !take(&decode(k), decode(v))? {
                kept.push(pair);
            }
        }
        let mut rest = base.to_owned();
        if !kept.is_empty() {
            rest.push('?');
            rest.push_str(&kept.join("&"));
        }
        if let Some(f) = fragment {
            rest.push('#');
            rest.push_str(f);
        }
        return Ok((rest, params));
    }
    // libpq's `key=value` form: values may be quoted with '…' and escape with a backslash.
    let mut kept = String::new();
    let mut chars = url.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("missing `=` after {key:?}"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quoted value of {key:?}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !take(&key, value.clone())? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push_str(&format!("{key}='{quoted}' "));
        }
    }
    Ok((kept, params))
}

impl PgTls {
    fn new(params: &Params) -> Result<Self, String> {
        let (mode, _, roots) = params.resolve()?;
        let client = match mode {
            SslMode::Disable => None,
            _ => Some(client_config(mode, roots.as_ref())?),
        };
        Ok(PgTls {
            mode,
            roots,
            client,
        })
    }

    /// Asks the server on `stream` for TLS as the mode says and makes the handshake: the stream
    /// to speak the protocol on. `host` is the name the certificate must carry (`verify-full`)
    /// and the SNI; a Unix socket (`None`) never uses TLS.
    pub(crate) async fn negotiate<S>(
        &self,
        mut stream: S,
        host: Option<&str>,
    ) -> Result<MaybeTls<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (Some(client), Some(host)) = (&self.client, host) else {
            return Ok(MaybeTls::Plain(stream));
        };
        let name = server_name(host)?;
        // SSLRequest: length 8, code 80877103.
        stream
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(|e| format!("cannot ask for TLS: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("cannot ask for TLS: {e}"))?;
        let mut answer = [0u8; 1];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| format!("the server did not answer the TLS request: {e}"))?;
        match answer[0] {
            b'S' => {}
            b'N' if self.mode == SslMode::Prefer => return Ok(MaybeTls::Plain(stream)),
            b'N' => {
                return Err(format!(
                    "the server at {host} does not accept TLS connections (sslmode={}): turn \
                     on `ssl` in its postgresql.conf (or the pooler's client_tls_sslmode), or \
                     write sslmode=prefer or sslmode=disable in the URL to connect in plain text",
                    self.mode.as_str()
                ))
            }
            other => {
                return Err(format!(
                    "the server at {host} answered the TLS request with {other:#04x}: not a \
                     PostgreSQL server?"
                ))
            }
        }
        let connector = tokio_rustls::TlsConnector::from(client.clone());
        match connector.connect(name, stream).await {
            Ok(tls) => Ok(MaybeTls::Tls(Box::new(tls))),
            Err(e) => Err(self.explain(host, &e)),
        }
    }

    /// A handshake failure in the operator's terms.
    fn explain(&self, host: &str, e: &io::Error) -> String {
        let cert = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|t| match t {
                rustls::Error::InvalidCertificate(c) => Some(c),
                _ => None,
            });
        let roots = match &self.roots {
            Some(Roots::File(p)) => format!("sslrootcert={}", p.display()),
            Some(Roots::System) => "sslrootcert=system (the public roots)".to_owned(),
            None => "sslrootcert".to_owned(),
        };
        match cert {
            Some(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => format!(
                "TLS: the server's certificate does not name the host {host} (sslmode=verify-full): \
                 connect with a host name the certificate carries, or use sslmode=verify-ca to \
                 check the CA alone ({e})"
            ),
            Some(CertificateError::UnknownIssuer | CertificateError::BadSignature) => format!(
                "TLS: the server's certificate at {host} is not signed by a CA of {roots}: name \
                 the CA that signed it in sslrootcert ({e})"
            ),
            Some(_) => format!("TLS: the server's certificate at {host} is refused ({e})"),
            None => format!("TLS handshake with {host} failed: {e}"),
        }
    }
}

/// The name to check the certificate against (and to send as SNI, for DNS names).
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_owned())
        .map_err(|_| format!("{host:?} is not a host name TLS can check"))
}

/// The host a TLS handshake names, `None` for a Unix socket.
pub(crate) fn tls_host(host: &Host) -> Option<&str> {
    match host {
        Host::Tcp(name) => Some(name),
        #[cfg(unix)]
        Host::Unix(_) => None,
    }
}

/// A non-loopback TCP host in `url` reached without TLS (`sslmode` unset or `prefer`), for the
/// production check of the settings: `Err` says what to write. `sslmode=disable` written in the
/// URL is the operator's explicit choice, and passes.
pub fn require_tls_in_production(url: &str) -> Result<(), String> {
    let request = request(url)?;
    if request.mode != SslMode::Prefer {
        return Ok(());
    }
    let (rest, _) = split(url)?;
    let config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    for host in config.get_hosts() {
        if let Some(name) = tls_host(host) {
            if !is_loopback(name) {
                return Err(format!(
                    "in production the connection to {name} must use TLS: add \
                     sslmode=verify-full&sslrootcert=<the CA's PEM file, or system> (or at least \
                     sslmode=require) to the URL, or write sslmode=disable to send it in plain \
                     text on purpose"
                ));
            }
        }
    }
    Ok(())
}

/// `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Connects to `url` as [`diesel_async::AsyncConnection::establish`] does, but with TLS as the
/// URL's `sslmode` and `sslrootcert` say (diesel-async's own connects in plain text). For
/// migrations ([`crate::schema::migrate`]), the `tenantry` command and tests: no pool, no session
/// timeouts.
pub async fn establish(
    url: &str,
) -> Result<diesel_async::AsyncPgConnection, diesel::ConnectionError> {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    use diesel::ConnectionError;

    let refused = |message: String| {
        ConnectionError::CouldntSetupConfiguration(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(message),
        ))
    };
    let (config, tls) = parse(url).map_err(ConnectionError::InvalidConnectionUrl)?;
    let (socket, host) = crate::pool::open_socket(&config, None)
        .await
        .map_err(|e| ConnectionError::BadConnection(format!("cannot reach PostgreSQL: {e}")))?;
    let stream = tls
        .negotiate(socket, host.as_deref())
        .await
        .map_err(refused)?;
    let (client, connection) = config
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => refused(db.message().to_owned()),
            None => ConnectionError::BadConnection(format!("the connection startup failed: {e}")),
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    diesel_async::AsyncPgConnection::try_from(client).await
}

#[cfg(test)]
mod tests;
