//! [`CertsServer`]: a real HTTP server on `127.0.0.1` serving a Cloudflare-shaped certs document,
//! which a test can rotate, take down, slow down or break while a verifier uses it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::serve::Listener;
use axum::Router;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{certs_document, TestKey};

/// How a [`CertsServer`] answers. Every answer carries `Connection: close`, so a client never
/// reuses a connection opened under an earlier behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertsBehaviour {
    /// 200 with the current document.
    Serve,
    /// Accepts each connection and closes it without answering.
    Down,
    /// 503 with the current document as body (a client must not use it).
    Unavailable,
    /// 500 with the current document as body (a client must not use it).
    ServerError,
    /// Waits this long, then serves the document (longer than the fetch timeout: a hang).
    Slow(Duration),
    /// 200 with a truncated JSON document.
    BadJson,
    /// 200 with the current document padded to at least this many bytes, `Content-Length` set.
    Oversized(usize),
    /// Like `Oversized`, streamed in chunks without `Content-Length`.
    OversizedChunked(usize),
}

#[derive(Debug)]
struct Shared {
    state: Mutex<(CertsBehaviour, Value)>,
    requests: AtomicU64,
}

impl Shared {
    fn get(&self) -> (CertsBehaviour, Value) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut (CertsBehaviour, Value))) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A local certs endpoint for tests, on `127.0.0.1` with a free port; stopped when dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use tenantry_runtime::identity::auth::cloudflare::{CloudflareConfig, CloudflareVerifier};
/// use tenantry_runtime::testing::{CertsBehaviour, CertsServer, TestKey, TokenMinter};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let server = CertsServer::start(&[&TestKey::A]).await?;
/// let config = CloudflareConfig::new("acme.cloudflareaccess.com", "aud")?
///     .with_certs_url(server.url())?;
/// let verifier = CloudflareVerifier::new(config.clone())?;
/// let token = TokenMinter::for_config(&config, &TestKey::A).user("ada@example.com").sign();
/// assert_eq!(verifier.verify(&token).await?.email(), "ada@example.com");
///
/// server.serve_keys(&[&TestKey::A, &TestKey::B]); // rotation
/// server.set_behaviour(CertsBehaviour::Slow(Duration::from_secs(60)));
/// assert_eq!(server.request_count(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CertsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl CertsServer {
    /// Starts serving `keys` (see [`certs_document`]) with [`CertsBehaviour::Serve`].
    pub async fn start(keys: &[&TestKey]) -> std::io::Result<CertsServer> {
        Self::start_with_document(certs_document(keys)).await
    }

    /// Starts serving `document` as is (e.g. a set with non-RSA keys).
    pub async fn start_with_document(document: Value) -> std::io::Result<CertsServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new((CertsBehaviour::Serve, document)),
            requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&shared));
        let listener = DroppingListener {
            inner: listener,
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(async move {
            // Runs until the task is aborted on drop; an error here only ends the test server.
            let _ = axum::serve(listener, app).await;
        });
        Ok(CertsServer { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>/cdn-cgi/access/certs` (any path is answered the same way).
    pub fn url(&self) -> String {
        format!("http://{}/cdn-cgi/access/certs", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `keys` from now on (a rotation).
    pub fn serve_keys(&self, keys: &[&TestKey]) {
        self.serve_document(certs_document(keys));
    }

    /// Serves `document` from now on.
    pub fn serve_document(&self, document: Value) {
        self.shared.update(|state| state.1 = document);
    }

    /// Answers as `behaviour` from now on.
    pub fn set_behaviour(&self, behaviour: CertsBehaviour) {
        self.shared.update(|state| state.0 = behaviour);
    }

    /// How many requests arrived (connections closed while [`CertsBehaviour::Down`] count too).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for CertsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections, dropping them unanswered while the behaviour is `Down`.
struct DroppingListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl Listener for DroppingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let (io, addr) = Listener::accept(&mut self.inner).await;
            if self.shared.get().0 == CertsBehaviour::Down {
                self.shared.requests.fetch_add(1, Ordering::SeqCst);
                drop(io);
                continue;
            }
            return (io, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

async fn answer(State(shared): State<Arc<Shared>>) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let (behaviour, document) = shared.get();
    let json = document.to_string();
    match behaviour {
        CertsBehaviour::Serve => respond(StatusCode::OK, Body::from(json)),
        // A connection accepted just before the switch: answer like a dead upstream would.
        CertsBehaviour::Down | CertsBehaviour::Unavailable => {
            respond(StatusCode::SERVICE_UNAVAILABLE, Body::from(json))
        }
        CertsBehaviour::ServerError => respond(StatusCode::INTERNAL_SERVER_ERROR, Body::from(json)),
        CertsBehaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            respond(StatusCode::OK, Body::from(json))
        }
        CertsBehaviour::BadJson => {
            let cut = json.len() / 2;
            respond(StatusCode::OK, Body::from(json[..cut].to_owned()))
        }
        CertsBehaviour::Oversized(size) => {
            respond(StatusCode::OK, Body::from(padded(&document, size)))
        }
        CertsBehaviour::OversizedChunked(size) => {
            let body = padded(&document, size).into_bytes();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                body.chunks(1024).map(|c| Ok(c.to_vec())).collect();
            respond(
                StatusCode::OK,
                Body::from_stream(futures_util::stream::iter(chunks)),
            )
        }
    }
}

/// `document` with a `padding` member making it at least `size` bytes: still a valid key set,
/// so only a body size cap keeps a client from using it.
fn padded(document: &Value, size: usize) -> String {
    let mut document = document.clone();
    if let Value::Object(map) = &mut document {
        map.insert("padding".to_owned(), Value::from("x".repeat(size)));
    }
    document.to_string()
}

fn respond(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}
