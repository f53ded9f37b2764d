//! A PostgreSQL proxy for counting round trips: it records the type of every message the client
//! sends, and can hold back every byte the server sends (the client then reads no reply at all).
//! A transaction is one round trip when the client sends all of it while the replies are held;
//! a message sent only once a reply can be read shows after a `|` (`Wire::release_replies`).
//! It also counts the server's notices (`NoticeResponse`: a `WARNING` or `NOTICE` sent to the
//! client).
#![allow(unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::framer::MessageFramer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// See the module docs. One client connection at a time (the tests use a pool of one).
pub struct Wire {
    addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

struct State {
    /// Types of the messages the client sent, in order (0 for the untyped startup packet), and
    /// a `|` where replies were released.
    sent: Mutex<Vec<u8>>,
    sent_more: Notify,
    /// `NoticeResponse` messages the server sent.
    notices: std::sync::atomic::AtomicUsize,
    /// Whether the server's bytes reach the client.
    replies: watch::Sender<bool>,
}

impl Wire {
    /// Listens on 127.0.0.1 and forwards to `upstream`, replies flowing.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(State {
            sent: Mutex::new(Vec::new()),
            sent_more: Notify::new(),
            notices: Default::default(),
            replies: watch::channel(true).0,
        });
        let upstream = upstream.to_owned();
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(relay(client, upstream.clone(), state.clone()));
                }
            }
        });
        Wire {
            addr,
            state,
            accept,
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("a URL");
        u.set_host(Some(&self.addr.ip().to_string())).expect("host");
        u.set_port(Some(self.addr.port())).expect("port");
        // The wire is read in plain text.
        u.query_pairs_mut().append_pair("sslmode", "disable");
        u.to_string()
    }

    /// Holds back every byte from the server from now on.
    pub fn hold_replies(&self) {
        self.state.replies.send_replace(false);
    }

    /// Lets the server's bytes through again (those held back first), and records the moment
    /// as a `|` among the client's messages ([`Wire::sent_since`]): whatever the client sent
    /// before it could read a reply shows before the `|`, what it sent once it could, after.
    /// That is the event a test of "nothing more is sent before the reply" waits on, rather
    /// than a pause: it covers everything sent up to the release, however late.
    ///
    /// The client's bytes written before this call are already in the proxy's socket (loopback
    /// delivers on write); yielding once lets the runtime poll its I/O driver and the relay
    /// (on this runtime) read and record them before the `|`.
    pub async fn release_replies(&self) {
        tokio::task::yield_now().await;
        self.state.sent.lock().unwrap().push(b'|');
        self.state.sent_more.notify_waiters();
        self.state.replies.send_replace(true);
    }

    /// How many notices (`WARNING`, `NOTICE`, ..) the server has sent so far.
    pub fn notices(&self) -> usize {
        self.state.notices.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many messages the client has sent so far.
    pub fn mark(&self) -> usize {
        self.state.sent.lock().unwrap().len()
    }

    /// The types of the messages sent since `mark`, as text (`"Q B E S Q"`).
    pub fn sent_since(&self, mark: usize) -> String {
        kinds(&self.state.sent.lock().unwrap()[mark..])
    }

    /// Waits until the messages sent since `mark` read `expected` (as [`Wire::sent_since`]
    /// writes them), and panics with what was sent if they do not within 5 s.
    pub async fn wait_for(&self, mark: usize, expected: &str) {
        let wait = async {
            loop {
                let notified = self.state.sent_more.notified();
                if self.sent_since(mark) == expected {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            panic!(
                "the client sent `{}`, expected `{expected}`",
                self.sent_since(mark)
            );
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn kinds(kinds: &[u8]) -> String {
    kinds
        .iter()
        .map(|&k| if k == 0 { '0' } else { k as char }.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn relay(client: TcpStream, upstream: String, state: Arc<State>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let to_server = {
        let state = state.clone();
        async move {
            let mut framer = MessageFramer::client();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut seen = Vec::new();
                framer.feed(&buf[..n], |kind| seen.push(kind));
                state.sent.lock().unwrap().extend(seen);
                state.sent_more.notify_waiters();
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let to_client = async move {
        let mut replies = state.replies.subscribe();
        let mut framer = MessageFramer::server();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.feed(&buf[..n], |kind| {
                if kind == b'N' {
                    state
                        .notices
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
            if replies.wait_for(|flowing| *flowing).await.is_err() {
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
    }
}
