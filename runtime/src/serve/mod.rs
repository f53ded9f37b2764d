//! Serving an axum router in production: every client wait bounded, a cap on connections and
//! on each tenant's requests in progress, the contract's JSON body on every error, a request id
//! and a `request` span per request, and a graceful shutdown that drains in-flight requests.
//!
//! ```no_run
//! use tenantry_runtime::serve::{serve, shutdown_signal, ServeConfig};
//!
//! # async fn run(router: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! serve(listener, router, ServeConfig::default(), shutdown_signal()).await?;
//! // here every request has been answered (or the drain timeout passed): close the pools
//! # Ok(()) }
//! ```
//!
//! - `errors.rs`: the error body and the status → code table.
//! - `limits.rs`: body and request deadlines.
//! - `client_io.rs`: the idle timeout, and JSON bodies for hyper's own error responses.
//! - `shutdown.rs`: SIGTERM and Ctrl-C.

mod client_io;
mod errors;
mod limits;
mod shutdown;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

pub use errors::{
    error_code, error_json, error_message, error_response, json_errors, no_framing,
    RETRY_AFTER_SECS,
};
pub use limits::BodyTimeout;
pub use shutdown::shutdown_signal;

use client_io::ClientIo;

use crate::ctx::life::RequestTask;

/// The bounds of [`serve`]. [`ServeConfig::default`] holds the defaults listed per field; every
/// duration and count must be greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeConfig {
    /// Time a client has to send a complete request head, from the connection's opening or
    /// from the end of its previous response; so also how long an idle keep-alive connection
    /// stays open (default 10 s). Past it the connection is closed.
    pub header_timeout: Duration,
    /// Time the whole request body has to arrive once the head has (default 10 s); past it the
    /// request is answered 408 `timeout`.
    pub body_timeout: Duration,
    /// Time a request has to be answered, body included (default 30 s); past it the request is
    /// answered 503 `unavailable` and its handler dropped.
    pub request_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (default
    /// 60 s): a client that stops reading its response. Must exceed `request_timeout`.
    pub idle_timeout: Duration,
    /// Connections served at once (default 512); beyond them a new connection is answered 503
    /// `unavailable` and closed.
    pub max_connections: usize,
    /// Largest request body in bytes (default 1 MiB); a larger one is 413 `too_large`.
    pub body_limit: usize,
    /// After the shutdown signal, how long in-flight requests have to finish (default 15 s);
    /// connections still open then are closed.
    pub drain_timeout: Duration,
    /// Requests of one tenant in progress at once (default 256, half the default connections);
    /// beyond it a request is answered 429 `too_many_requests` with `Retry-After` as soon as
    /// tenantry's extractors know its tenant. Per server (instance).
    pub max_requests_per_tenant: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            body_limit: 1024 * 1024,
            drain_timeout: Duration::from_secs(15),
            max_requests_per_tenant: 256,
        }
    }
}

/// Adds the request bounds of `config` and the JSON error bodies to `router`: what [`serve`]
/// does before serving it.
pub fn with_limits(router: Router, config: &ServeConfig) -> Router {
    let bounds = Bounds {
        cap: crate::extract::fair::RequestCap::new(config.max_requests_per_tenant),
        body_timeout: config.body_timeout,
        request_timeout: config.request_timeout,
    };
    router
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(bounds, bounded))
}

/// What [`bounded`] needs.
#[derive(Clone)]
struct Bounds {
    cap: Arc<crate::extract::fair::RequestCap>,
    body_timeout: Duration,
    request_timeout: Duration,
}

/// The middlewares of [`with_limits`] as one, from the outermost: the request id, span and
/// per-tenant cap (`extract/fair.rs`), [`no_framing`], [`json_errors`], the request deadline and
/// the body deadline (`limits.rs`). One layer rather than five: axum wraps every route in each
/// layer, and each layer clones and boxes the ones inside it on every request.
async fn bounded(State(bounds): State<Bounds>, request: Request, next: Next) -> Response {
    let Bounds {
        cap,
        body_timeout,
        request_timeout,
    } = bounds;
    crate::extract::fair::tenant_requests(cap, request, |request| async move {
        let answer = limits::within(request_timeout, async move {
            let (request, expired) = limits::deadline_body(body_timeout, request);
            limits::body_checked(body_timeout, &expired, next.run(request).await)
        })
        .await;
        errors::framing_denied(errors::json_error_body(answer))
    })
    .await
}

impl ServeConfig {
    /// Checks the rules of the field docs: nothing zero, and an idle timeout longer than the
    /// request timeout (else a slow request's connection would be closed under it).
    pub fn validate(&self) -> Result<(), String> {
        let durations = [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("drain_timeout", self.drain_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("ServeConfig::{name} must be greater than zero"));
        }
        if self.max_connections == 0 || self.body_limit == 0 || self.max_requests_per_tenant == 0 {
            return Err(
                "ServeConfig::max_connections, body_limit and max_requests_per_tenant \
                        must be greater than zero"
                    .into(),
            );
        }
        if self.idle_timeout <= self.request_timeout {
            return Err("ServeConfig::idle_timeout must be longer than request_timeout".into());
        }
        Ok(())
    }
}

/// Serves `router` on `listener` (HTTP/1.1) within the bounds of `config` until `shutdown`
/// completes; then stops accepting, lets in-flight requests finish within the drain timeout,
/// and returns. Handlers see the peer address as `ConnectInfo<SocketAddr>`. A `config` that
/// breaks [`ServeConfig::validate`] is an `InvalidInput` error.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let router = with_limits(router, &config);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |request: Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(
                TokioIo::new(ClientIo::new(stream, config.idle_timeout)),
                TowerToHyperService::new(service),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Every handler of this connection runs in this task: no system job starts here.
            let _request_task = RequestTask::enter();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        drain_ms = config.drain_timeout.as_millis() as u64,
        "stopped accepting; draining in-flight requests"
    );
    match tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("drain timeout passed; closing the remaining connections"),
    }
    Ok(())
}

/// Answers a connection over the limit with 503 and closes it: reads its request head (a
/// client that has not sent one would take an early answer for a broken connection), answers,
/// and reads what else arrives so that closing does not reset the connection under the answer;
/// two seconds at most in all.
async fn refuse(mut stream: TcpStream) {
    let body = error_json(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "too many connections; retry shortly",
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: {}\r\nconnection: close\r\n\r\n",
        body.len(),
        RETRY_AFTER_SECS
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_head = async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read_head).await;
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}
