//! Splitting one direction of a PostgreSQL connection's byte stream into protocol messages, for
//! the tests' and benches' own proxies that count what crosses them (`one_round_trip`'s wire,
//! `benches/support/pg_proxy.rs`). A message is a type byte and a 4-byte big-endian length that
//! counts itself; the client's first packet (startup) has no type byte.

/// See the module docs. Reports each message's type as soon as its header is complete, however
/// the bytes are split.
#[derive(Debug)]
pub struct MessageFramer {
    /// The next message is the untyped startup packet.
    startup: bool,
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to skip.
    skip: usize,
}

impl MessageFramer {
    /// The client's side: an untyped startup packet (reported as type 0), then typed messages.
    /// Without TLS (no `SSLRequest` first).
    pub fn client() -> Self {
        MessageFramer::new(true)
    }

    /// The server's side: typed messages only.
    pub fn server() -> Self {
        MessageFramer::new(false)
    }

    fn new(startup: bool) -> Self {
        MessageFramer {
            startup,
            header: [0; 5],
            have: 0,
            skip: 0,
        }
    }

    /// Feeds the next bytes; calls `each` with the type of every message whose header is
    /// complete.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(u8)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let header_len = if self.startup { 4 } else { 5 };
            let n = (header_len - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < header_len {
                break;
            }
            let (kind, len) = if self.startup {
                (
                    0,
                    [
                        self.header[0],
                        self.header[1],
                        self.header[2],
                        self.header[3],
                    ],
                )
            } else {
                (
                    self.header[0],
                    [
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ],
                )
            };
            self.skip = (u32::from_be_bytes(len) as usize).saturating_sub(4);
            self.have = 0;
            self.startup = false;
            each(kind);
        }
    }
}

#[test]
fn messages_are_found_however_the_bytes_are_split() {
    let mut stream = vec![0, 0, 0, 8, 0, 3, 0, 0]; // startup
    stream.extend_from_slice(&[b'Q', 0, 0, 0, 10]);
    stream.extend_from_slice(b"BEGIN\0");
    stream.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    for chunk in 1..stream.len() {
        let mut framer = MessageFramer::client();
        let mut kinds = Vec::new();
        for c in stream.chunks(chunk) {
            framer.feed(c, |kind| kinds.push(kind));
        }
        assert_eq!(kinds, [0, b'Q', b'S'], "chunks of {chunk}");
    }
}
