//! What clients execute through a [`FaultProxy`](super::FaultProxy): each statement's SQL and
//! the parameters it was bound with, read off the wire (PostgreSQL's frontend protocol), so that
//! a test can check every statement an application sends, whatever built it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// One statement a client executed through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The client connection that ran it, numbered from 0 in the order connections arrived.
    pub connection: u64,
    /// Its SQL text (for a simple query, every statement of the message).
    pub sql: String,
    /// The values it was bound with, as sent (`None` for NULL; tokio-postgres sends binary:
    /// a `uuid` is its 16 bytes); empty for a simple query.
    pub params: Vec<Option<Vec<u8>>>,
    /// Sent as a simple query (`Q`), not prepared and bound.
    pub simple: bool,
}

/// The statements of all connections, kept while recording is on.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    on: AtomicBool,
    connections: AtomicU64,
    executed: Mutex<Vec<Executed>>,
}

impl Recorder {
    pub(super) fn start(&self) {
        self.on.store(true, Ordering::SeqCst);
    }

    pub(super) fn executed(&self) -> Vec<Executed> {
        self.executed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A decoder for the next client connection.
    pub(super) fn decoder(&self) -> Decoder {
        Decoder {
            connection: self.connections.fetch_add(1, Ordering::SeqCst),
            first: true,
            buf: Vec::new(),
            statements: HashMap::new(),
        }
    }

    fn push(&self, executed: Executed) {
        if self.on.load(Ordering::SeqCst) {
            self.executed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(executed);
        }
    }
}

/// Splits one client's byte stream into messages and remembers its prepared statements (always,
/// so that a statement prepared before recording started is known when it is bound later).
#[derive(Debug)]
pub(super) struct Decoder {
    connection: u64,
    /// The next message is the untyped startup packet (or a cancel request).
    first: bool,
    buf: Vec<u8>,
    /// Prepared statement name → SQL.
    statements: HashMap<String, String>,
}

impl Decoder {
    /// Feeds bytes the client sent; records what it executes into `recorder`.
    pub(super) fn feed(&mut self, bytes: &[u8], recorder: &Recorder) {
        self.buf.extend_from_slice(bytes);
        loop {
            let header = if self.first { 4 } else { 5 };
            if self.buf.len() < header {
                return;
            }
            let at = header - 4;
            let len = u32::from_be_bytes([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ]) as usize;
            let total = at + len.max(4);
            if self.buf.len() < total {
                return;
            }
            let message: Vec<u8> = self.buf.drain(..total).collect();
            if self.first {
                self.first = false;
                continue;
            }
            self.message(message[0], &message[5..], recorder);
        }
    }

    fn message(&mut self, kind: u8, body: &[u8], recorder: &Recorder) {
        let mut r = Reader(body);
        match kind {
            b'Q' => {
                if let Some(sql) = r.cstr() {
                    recorder.push(Executed {
                        connection: self.connection,
                        sql,
                        params: Vec::new(),
                        simple: true,
                    });
                }
            }
            b'P' => {
                if let (Some(name), Some(sql)) = (r.cstr(), r.cstr()) {
                    self.statements.insert(name, sql);
                }
            }
            // Close of a statement ('S'; 'P' would be a portal), then its name.
            b'C' if r.u8() == Some(b'S') => {
                if let Some(name) = r.cstr() {
                    self.statements.remove(&name);
                }
            }
            b'B' => {
                let (Some(_portal), Some(name)) = (r.cstr(), r.cstr()) else {
                    return;
                };
                let Some(params) = r.bind_values() else {
                    return;
                };
                let sql = self.statements.get(&name).cloned().unwrap_or_default();
                recorder.push(Executed {
                    connection: self.connection,
                    sql,
                    params,
                    simple: false,
                });
            }
            _ => {}
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Option<String> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Some(s)
    }

    /// A `Bind` message's parameter formats and values.
    fn bind_values(&mut self) -> Option<Vec<Option<Vec<u8>>>> {
        let formats = self.i16()?;
        self.take(2 * usize::try_from(formats).ok()?)?;
        let count = self.i16()?;
        let mut values = Vec::new();
        for _ in 0..count {
            let len = self.i32()?;
            values.push(match usize::try_from(len) {
                Ok(n) => Some(self.take(n)?.to_vec()),
                Err(_) => None,
            });
        }
        Some(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::message;

    #[test]
    fn binds_are_matched_with_their_statements_across_any_split() {
        let mut stream = 8u32.to_be_bytes().to_vec();
        stream.extend_from_slice(&196608u32.to_be_bytes());
        stream.extend(message(b'Q', b"BEGIN\0"));
        stream.extend(message(b'P', b"s1\0SELECT $1\0\0\0"));
        // portal "", statement s1, one binary format, one 2-byte value, no result formats
        let mut bind = b"\0s1\0\0\x01\0\x01".to_vec();
        bind.extend_from_slice(&[0, 1, 0, 0, 0, 2, 0xab, 0xcd]);
        bind.extend_from_slice(&[0, 0]);
        stream.extend(message(b'B', &bind));
        stream.extend(message(b'C', b"Ss1\0"));
        for chunk in 1..stream.len() {
            let recorder = Recorder::default();
            recorder.start();
            let mut decoder = recorder.decoder();
            for c in stream.chunks(chunk) {
                decoder.feed(c, &recorder);
            }
            let executed = recorder.executed();
            assert_eq!(executed.len(), 2, "chunks of {chunk}");
            assert_eq!(executed[0].sql, "BEGIN");
            assert!(executed[0].simple);
            assert_eq!(executed[1].sql, "SELECT $1");
            assert_eq!(executed[1].params, vec![Some(vec![0xab, 0xcd])]);
            assert!(decoder.statements.is_empty(), "closed");
        }
    }
}
