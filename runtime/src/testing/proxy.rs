//! [`FaultProxy`]: a TCP proxy to put between an application and PostgreSQL (or any server),
//! which can freeze, cut or delay the traffic on command, so that tests see what users see when
//! the network fails.
//!
//! ```no_run
//! use std::time::Duration;
//! use tenantry_runtime::testing::FaultProxy;
//!
//! # async fn run() -> std::io::Result<()> {
//! let proxy = FaultProxy::start("127.0.0.1:5432").await?;
//! let url = proxy.url("postgres://tenantry_app@127.0.0.1:5432/app"); // through the proxy
//! proxy.freeze();                         // bytes stop flowing; connections stay open
//! proxy.delay(Duration::from_millis(50)); // every chunk arrives 50 ms late
//! proxy.cut();                            // every connection is closed, new ones too
//! proxy.pass();                           // back to normal
//! proxy.record();                         // keep what clients execute from now on
//! let statements = proxy.executed();      // each statement's SQL and bound values
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use super::wire::{Decoder, Executed, Recorder};

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Accept connections and bytes but forward nothing, in either direction: a network path
    /// that neither refuses nor answers. Bytes held back flow again after [`FaultProxy::pass`].
    Freeze,
    /// Close every connection, and each new one as soon as it is accepted.
    Cut,
    /// Forward each chunk after this delay.
    Delay(Duration),
}

/// A fault-injection TCP proxy on 127.0.0.1 (see the module docs). Dropping it closes the
/// listener and every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Fault>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    recorder: Arc<Recorder>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (e.g. `127.0.0.1:5432`).
    pub async fn start(upstream: impl Into<String>) -> io::Result<Self> {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Fault::Pass);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::new(Recorder::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            mode.clone(),
            connections.clone(),
            recorder.clone(),
        ));
        Ok(FaultProxy {
            addr,
            mode,
            accept,
            connections,
            recorder,
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the proxy's. The proxy reads (and records) the
    /// protocol in plain text, so the URL asks for no TLS (`sslmode=disable`) unless it names an
    /// `sslmode` of its own.
    pub fn url(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("not a URL ({e}): {url}"));
        let _ = u.set_host(Some(&self.addr.ip().to_string()));
        let _ = u.set_port(Some(self.addr.port()));
        if !u.query_pairs().any(|(k, _)| k == "sslmode") {
            u.query_pairs_mut().append_pair("sslmode", "disable");
        }
        u.to_string()
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.mode.borrow()
    }

    /// Forwards everything again.
    pub fn pass(&self) {
        self.set(Fault::Pass);
    }

    /// Stops forwarding, keeping connections open (see [`Fault::Freeze`]).
    pub fn freeze(&self) {
        self.set(Fault::Freeze);
    }

    /// Closes every connection, and new ones as they come (see [`Fault::Cut`]).
    pub fn cut(&self) {
        self.set(Fault::Cut);
        for handle in self.lock().drain(..) {
            handle.abort();
        }
    }

    /// Delays every chunk by `delay`.
    pub fn delay(&self, delay: Duration) {
        self.set(Fault::Delay(delay));
    }

    /// Keeps, from now on, every statement clients execute through the proxy (see
    /// [`FaultProxy::executed`]).
    pub fn record(&self) {
        self.recorder.start();
    }

    /// The statements executed through the proxy since [`FaultProxy::record`], in the order the
    /// proxy forwarded them: the SQL of each simple query, and of each bound prepared statement
    /// with its values. (A PostgreSQL client speaks the frontend protocol; a proxy to another
    /// kind of server records nothing.)
    pub fn executed(&self) -> Vec<Executed> {
        self.recorder.executed()
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        let mut connections = self.lock();
        connections.retain(|h| !h.is_finished());
        connections.len()
    }

    fn set(&self, fault: Fault) {
        self.mode.send_replace(fault);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AbortHandle>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for handle in self.lock().drain(..) {
            handle.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    mode: watch::Sender<Fault>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    recorder: Arc<Recorder>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == Fault::Cut {
            drop(client);
            continue;
        }
        let decoder = recorder.decoder();
        let task = tokio::spawn(relay(
            client,
            upstream.clone(),
            mode.subscribe(),
            (decoder, recorder.clone()),
        ));
        let mut list = connections.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|h| !h.is_finished());
        list.push(task.abort_handle());
    }
}

async fn relay(
    client: TcpStream,
    upstream: String,
    mode: watch::Receiver<Fault>,
    record: (Decoder, Arc<Recorder>),
) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, mode.clone(), Some(record)) => {}
        _ = pump(server_read, client_write, mode, None) => {}
    }
}

/// Copies `from` to `to` chunk by chunk, obeying the current fault before each write, and feeds
/// what a client sends to its decoder.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Fault>,
    mut record: Option<(Decoder, Arc<Recorder>)>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = mode.wait_for(|f| *f == Fault::Cut) => {
                let _ = changed;
                return;
            }
        };
        let fault = match mode.wait_for(|f| *f != Fault::Freeze).await {
            Ok(f) => *f,
            Err(_) => return,
        };
        match fault {
            Fault::Cut => return,
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Pass | Fault::Freeze => {}
        }
        if let Some((decoder, recorder)) = &mut record {
            decoder.feed(&buf[..n], recorder);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
