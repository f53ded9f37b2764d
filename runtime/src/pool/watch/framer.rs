//! Splitting the protocol stream into messages: the framer that counts replies owed, and the
//! SQLSTATE of an error message.

/// Splits a byte stream into protocol messages and counts those of interest.
#[derive(Debug)]
pub(crate) struct Framer {
    /// The next message is the startup packet, which has no type byte.
    startup: bool,
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to skip.
    skip: usize,
    /// The type of message whose first [`CAPTURE`] body bytes are kept, if any.
    capture: Option<u8>,
    captured: Vec<u8>,
    /// Body bytes of the current message still to keep.
    keep: usize,
}

/// How much of a captured message is kept: an `ErrorResponse` sends its severity and SQLSTATE
/// first, well within this.
pub(super) const CAPTURE: usize = 64;

impl Framer {
    pub(crate) fn new(startup: bool) -> Self {
        Framer {
            startup,
            header: [0; 5],
            have: 0,
            skip: 0,
            capture: None,
            captured: Vec::new(),
            keep: 0,
        }
    }

    /// A framer that also hands the first bytes of each `kind` message to `feed`'s `captured`.
    pub(super) fn capturing(startup: bool, kind: u8) -> Self {
        Framer {
            capture: Some(kind),
            ..Framer::new(startup)
        }
    }

    /// Feeds `bytes`, calling `each` with the type of every complete message header (0 for the
    /// startup packet), and `captured` with the kept start of each captured message.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(u8),
        mut captured: impl FnMut(&[u8]),
    ) {
        while !bytes.is_empty() {
            if self.keep > 0 {
                let n = self.keep.min(bytes.len());
                self.captured.extend_from_slice(&bytes[..n]);
                self.keep -= n;
                bytes = &bytes[n..];
                if self.keep == 0 {
                    captured(&self.captured);
                }
                continue;
            }
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
                (0, &self.header[..4])
            } else {
                (self.header[0], &self.header[1..5])
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            // The length counts itself (4 bytes) but not the type byte.
            let body = len.saturating_sub(4);
            self.skip = body;
            self.have = 0;
            self.startup = false;
            each(kind);
            if self.capture == Some(kind) {
                self.keep = body.min(CAPTURE);
                self.skip = body - self.keep;
                self.captured.clear();
                if self.keep == 0 {
                    captured(&[]);
                }
            }
        }
    }
}

/// The SQLSTATE (`C` field) of an `ErrorResponse` body, if its kept start holds it.
pub(super) fn sqlstate(body: &[u8]) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return Some(&tail[..end]);
        }
        rest = &tail[end + 1..];
    }
    None
}

/// SQLSTATEs of a prepared statement missing (`26000`) or already there (`42P05`).
pub(super) fn is_statement_lost(code: &[u8]) -> bool {
    code == b"26000" || code == b"42P05"
}

/// One protocol message: `kind`, its length, `body` (for the tests of the framers here and in
/// `testing/wire.rs`).
#[cfg(test)]
pub(crate) fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}
