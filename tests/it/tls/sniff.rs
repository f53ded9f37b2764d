//! Two small TCP servers for the TLS tests: [`Sniffer`], a proxy to the TLS server that records
//! the first 8 bytes each client sends, and [`NoTlsServer`], which answers an `SSLRequest` with
//! `N` (no TLS here) and any startup message with an error naming what it received.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An `SSLRequest`: length 8, code 80877103.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A proxy to `127.0.0.1:<port>` that records what each connection sends first.
pub struct Sniffer {
    port: u16,
    firsts: Arc<Mutex<Vec<[u8; 8]>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sniffer {
    pub async fn start(upstream: u16) -> Sniffer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let seen = firsts.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 8];
                    if client.read_exact(&mut first).await.is_err() {
                        return;
                    }
                    seen.lock().unwrap().push(first);
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    if server.write_all(&first).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Sniffer { port, firsts, task }
    }

    pub fn url(&self, role: &str, database: &str, params: &str) -> String {
        format!(
            "postgres://{role}@127.0.0.1:{}/{database}?{params}",
            self.port
        )
    }

    /// How many connections were opened through the proxy.
    pub fn connections(&self) -> usize {
        self.firsts.lock().unwrap().len()
    }

    /// The first 8 bytes of each connection, in order.
    pub fn first_packets(&self) -> Vec<[u8; 8]> {
        self.firsts.lock().unwrap().clone()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server that offers no TLS (`N`) and fails every startup, saying it got one in plain text.
pub struct NoTlsServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl NoTlsServer {
    pub async fn start() -> NoTlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 4];
                        if client.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let len = u32::from_be_bytes(len) as usize;
                        let mut body = vec![0u8; len.saturating_sub(4)];
                        if client.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        if body[..] == SSL_REQUEST[4..] {
                            let _ = client.write_all(b"N").await;
                            continue;
                        }
                        let mut fields = Vec::new();
                        for (code, text) in [
                            (b'S', "FATAL"),
                            (b'V', "FATAL"),
                            (b'C', "08P01"),
                            (b'M', "plain text startup received"),
                        ] {
                            fields.push(code);
                            fields.extend_from_slice(text.as_bytes());
                            fields.push(0);
                        }
                        fields.push(0);
                        let mut message = vec![b'E'];
                        message.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
                        message.extend_from_slice(&fields);
                        let _ = client.write_all(&message).await;
                        return;
                    }
                });
            }
        });
        NoTlsServer { port, task }
    }

    pub fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{params}",
            self.port
        )
    }
}

impl Drop for NoTlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
