use super::*;

#[test]
fn framer_counts_messages_split_anywhere() {
    let mut stream = (8u32).to_be_bytes().to_vec();
    stream.extend_from_slice(&196608u32.to_be_bytes()); // startup packet
    stream.extend(message(b'Q', b"SELECT 1\0"));
    stream.extend(message(b'P', b"\0SELECT 2\0\0\0"));
    stream.extend(message(b'S', b""));
    stream.extend(message(b'X', b""));
    for chunk in 1..stream.len() {
        let mut framer = Framer::new(true);
        let mut kinds = Vec::new();
        for c in stream.chunks(chunk) {
            framer.feed(c, |kind| kinds.push(kind), |_| {});
        }
        assert_eq!(kinds, [0, b'Q', b'P', b'S', b'X'], "chunks of {chunk}");
    }
}

#[test]
fn error_codes_are_read_across_any_split() {
    let mut stream = message(b'1', b"");
    stream.extend(message(
        b'E',
        b"SERROR\0VERROR\0C26000\0Mprepared statement \"s7\" does not exist\0\0",
    ));
    stream.extend(message(b'E', b"SERROR\0VERROR\0C42P01\0Mno such table\0\0"));
    stream.extend(message(b'Z', b"I"));
    for chunk in 1..stream.len() {
        let mut framer = Framer::capturing(false, b'E');
        let mut codes = Vec::new();
        let mut replies = 0;
        for c in stream.chunks(chunk) {
            framer.feed(
                c,
                |k| replies += usize::from(k == b'Z'),
                |body| codes.push(sqlstate(body).map(<[u8]>::to_vec)),
            );
        }
        assert_eq!(replies, 1, "chunks of {chunk}");
        assert_eq!(
            codes,
            vec![Some(b"26000".to_vec()), Some(b"42P01".to_vec())],
            "chunks of {chunk}"
        );
    }
    assert!(is_statement_lost(b"26000") && is_statement_lost(b"42P05"));
    assert!(!is_statement_lost(b"42P01"));
}

#[test]
fn link_counts_parses() {
    let link = Link::default();
    for kind in [b'Q', b'B', b'E', b'S', b'P', b'D', b'S', b'B', b'E', b'S'] {
        link.wrote(kind);
    }
    assert_eq!(link.sent().parses, 1);
}

#[test]
fn answered_never_goes_below_zero() {
    let link = Link::default();
    link.requested(1);
    link.answered(2);
    assert_eq!(link.owed(), 0);
}
