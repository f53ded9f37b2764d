//! A PostgreSQL protocol-aware TCP proxy that counts the messages crossing it, by type and
//! direction, and the table of those counts per operation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::framer::MessageFramer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type Counts = [AtomicU64; 256];

/// PostgreSQL protocol messages that crossed the proxy, by type byte, in each direction.
pub struct Wire {
    to_server: Counts,
    to_client: Counts,
}

impl Wire {
    pub fn new() -> Self {
        Wire {
            to_server: std::array::from_fn(|_| AtomicU64::new(0)),
            to_client: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The counts once the wire has been quiet for a while: a statement's `Close` + `Sync` is
    /// sent when the statement is dropped and nobody waits for its answer, so its
    /// `ReadyForQuery` can arrive after the request that caused it has finished.
    pub async fn quiet_snapshot(&self) -> ([u64; 256], [u64; 256]) {
        let mut last = self.snapshot();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.snapshot();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    pub fn snapshot(&self) -> ([u64; 256], [u64; 256]) {
        let read = |c: &Counts| std::array::from_fn(|i| c[i].load(Ordering::SeqCst));
        (read(&self.to_server), read(&self.to_client))
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut framer: MessageFramer,
    wire: Arc<Wire>,
    to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let counts = if to_server {
            &wire.to_server
        } else {
            &wire.to_client
        };
        framer.feed(&buf[..n], |kind| {
            // 0: the client's untyped startup packet, not counted.
            if kind != 0 {
                counts[usize::from(kind)].fetch_add(1, Ordering::SeqCst);
            }
        });
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that counts the messages it forwards.
pub async fn start_proxy(upstream: String, wire: Arc<Wire>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream)
                .await
                .expect("upstream");
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(
                cr,
                sw,
                MessageFramer::client(),
                Arc::clone(&wire),
                true,
            ));
            tokio::spawn(pump(
                sr,
                cw,
                MessageFramer::server(),
                Arc::clone(&wire),
                false,
            ));
        }
    });
    addr
}

/// Per-operation protocol traffic: what the client sent and what the server answered.
pub struct Traffic {
    pub label: &'static str,
    pub ops: u64,
    pub diff: ([u64; 256], [u64; 256]),
    pub xact_commit: Option<i64>,
}

impl Traffic {
    fn to_server(&self, t: u8) -> f64 {
        self.diff.0[usize::from(t)] as f64 / self.ops as f64
    }
    fn to_client(&self, t: u8) -> f64 {
        self.diff.1[usize::from(t)] as f64 / self.ops as f64
    }
}

pub fn diff(
    after: &([u64; 256], [u64; 256]),
    before: &([u64; 256], [u64; 256]),
) -> ([u64; 256], [u64; 256]) {
    (
        std::array::from_fn(|i| after.0[i] - before.0[i]),
        std::array::from_fn(|i| after.1[i] - before.1[i]),
    )
}

pub fn print_traffic(title: &str, rows: &[Traffic]) {
    println!("\n{title}");
    println!(
        "| {:<47} | {:>5} | {:>5} | {:>5} | {:>5} | {:>5} | {:>5} | {:>9} | {:>8} | {:>6} |",
        "per operation", "Q", "Parse", "Bind", "Exec", "Close", "Sync", "RFQ (Z)", "xact", "ops"
    );
    println!(
        "|{:-<49}|{:->7}|{:->7}|{:->7}|{:->7}|{:->7}|{:->7}|{:->11}|{:->10}|{:->8}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for t in rows {
        // Every simple query (`Q`) and every `Sync` is answered by exactly one ReadyForQuery.
        let (syncs, rfq) = (
            t.diff.0[usize::from(b'Q')] + t.diff.0[usize::from(b'S')],
            t.diff.1[usize::from(b'Z')],
        );
        assert_eq!(
            syncs, rfq,
            "{}: sync points and ReadyForQuery differ",
            t.label
        );
        println!(
            "| {:<47} | {:>5.2} | {:>5.2} | {:>5.2} | {:>5.2} | {:>5.2} | {:>5.2} | {:>9.2} | {:>8} | {:>6} |",
            t.label,
            t.to_server(b'Q'),
            t.to_server(b'P'),
            t.to_server(b'B'),
            t.to_server(b'E'),
            t.to_server(b'C'),
            t.to_server(b'S'),
            t.to_client(b'Z'),
            t.xact_commit
                .map(|x| format!("{:.2}", x as f64 / t.ops as f64))
                .unwrap_or_else(|| "-".into()),
            t.ops,
        );
    }
}
