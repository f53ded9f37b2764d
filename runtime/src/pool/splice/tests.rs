use super::*;
use crate::pool::message;

fn startup() -> Vec<u8> {
    let mut s = 8u32.to_be_bytes().to_vec();
    s.extend_from_slice(&196608u32.to_be_bytes());
    s
}

/// Runs `client` through the writer in chunks of `chunk`, returning the wire bytes.
fn write(s: &mut Splicer, client: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in client.chunks(chunk) {
        s.write(c, &mut out);
    }
    out
}

fn read(s: &mut Splicer, server: &[u8], chunk: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    for c in server.chunks(chunk) {
        let mut c = c.to_vec();
        let n = s.read(&mut c);
        kept.extend_from_slice(&c[..n]);
    }
    kept
}

fn kinds(mut bytes: &[u8]) -> Vec<u8> {
    let mut k = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        k.push(bytes[0]);
        bytes = &bytes[1 + len..];
    }
    k
}

/// A splicer past the startup packet and its reply.
fn connected(armed: &Arc<Armed>) -> Splicer {
    let mut s = Splicer::new(armed.clone());
    s.write(&startup(), &mut Vec::new());
    let reply = [message(b'R', &[0, 0, 0, 0]), message(b'Z', b"I")].concat();
    assert_eq!(kinds(&read(&mut s, &reply, 1000)), b"RZ");
    s
}

fn error(code: &str, constraint: Option<&str>) -> Vec<u8> {
    let mut body = format!("SERROR\0C{code}\0Mboom\0").into_bytes();
    if let Some(c) = constraint {
        body.extend_from_slice(format!("n{c}\0").as_bytes());
    }
    body.push(0);
    message(b'E', &body)
}

#[test]
fn a_request_after_begin_is_written_there_and_its_replies_dropped() {
    for chunk in [1, 2, 3, 7, 1000] {
        let armed = Arc::new(Armed::default());
        let mut s = Splicer::new(armed.clone());
        let mut client = startup();
        s.write(&client, &mut Vec::new());
        // The startup's reply.
        let mut server = message(b'R', &[0, 0, 0, 0]);
        server.extend(message(b'Z', b"I"));
        assert_eq!(kinds(&read(&mut s, &server, chunk)), b"RZ");

        let enter = [message(b'B', b"x"), message(b'E', b"y"), message(b'S', b"")].concat();
        let ticket = armed.arm(Anchor::AfterQuery(enter.clone()));
        client = message(b'Q', b"BEGIN\0");
        client.extend(message(b'B', b"stmt"));
        client.extend(message(b'E', b""));
        client.extend(message(b'S', b""));
        let wire = write(&mut s, &client, chunk);
        assert_eq!(kinds(&wire), b"QBESBES", "chunks of {chunk}");
        assert!(ticket.placed());

        let mut server = message(b'C', b"BEGIN\0");
        server.extend(message(b'Z', b"T"));
        // The entry's replies.
        server.extend(message(b'2', b""));
        server.extend(message(b'D', b"\0\0"));
        server.extend(message(b'C', b"SELECT 1\0"));
        server.extend(message(b'N', b"notice"));
        server.extend(message(b'Z', b"T"));
        // The statement's.
        server.extend(message(b'2', b""));
        server.extend(message(b'C', b"SELECT 0\0"));
        server.extend(message(b'Z', b"T"));
        let passed = read(&mut s, &server, chunk);
        assert_eq!(kinds(&passed), b"CZN2CZ", "chunks of {chunk}");
        assert_eq!(ticket.outcome(), Some(Outcome::default()));
    }
}

#[test]
fn a_failed_hidden_request_is_recorded_and_dropped() {
    let armed = Arc::new(Armed::default());
    let mut s = connected(&armed);
    let ticket = armed.arm(Anchor::BeforeQuery(
        [message(b'B', b""), message(b'E', b""), message(b'S', b"")].concat(),
    ));
    let wire = write(&mut s, &message(b'Q', b"COMMIT\0"), 4);
    assert_eq!(kinds(&wire), b"BESQ");
    let mut server = error("23514", Some("tenantry_tenant_moved"));
    server.extend(message(b'Z', b"E"));
    server.extend(message(b'C', b"ROLLBACK\0"));
    server.extend(message(b'Z', b"I"));
    assert_eq!(kinds(&read(&mut s, &server, 3)), b"CZ");
    let o = ticket.outcome().expect("answered");
    let e = o.first.expect("the error");
    assert_eq!(e.code, "23514");
    assert_eq!(e.constraint.as_deref(), Some("tenantry_tenant_moved"));
}

#[test]
fn a_statement_is_wrapped_in_one_implicit_transaction() {
    for chunk in [1, 5, 1000] {
        let armed = Arc::new(Armed::default());
        let mut s = connected(&armed);
        let ticket = armed.arm(Anchor::AroundStatement {
            prefix: [message(b'B', b"enter"), message(b'E', b"")].concat(),
            suffix: [message(b'B', b"assert"), message(b'E', b"")].concat(),
            parts: 1,
        });
        let client = [
            message(b'B', b"stmt"),
            message(b'E', b""),
            message(b'S', b""),
        ]
        .concat();
        let wire = write(&mut s, &client, chunk);
        assert_eq!(kinds(&wire), b"BEBEBES");
        let server = [
            message(b'2', b""),
            message(b'D', b""),
            message(b'C', b"SELECT 1\0"),
            message(b'2', b""),
            message(b'D', b"row1"),
            message(b'D', b"row2"),
            message(b'C', b"SELECT 2\0"),
            message(b'2', b""),
            message(b'D', b""),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat();
        assert_eq!(kinds(&read(&mut s, &server, chunk)), b"2DDCZ");
        let o = ticket.outcome().expect("answered");
        assert_eq!(o.error(), None);
        assert_eq!(o.client_executes, 1);
    }
}

/// The replies to one statement of a splice: `BindComplete`, `rows` data rows and `tag`'s
/// `CommandComplete` (a `ParseComplete` first when `parsed`).
fn answered(parsed: bool, rows: usize, tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if parsed {
        out.extend(message(b'1', b""));
    }
    out.extend(message(b'2', b""));
    for _ in 0..rows {
        out.extend(message(b'D', b""));
    }
    out.extend(message(b'C', tag));
    out
}

/// `Parse` (when `parsed`), `Bind` and `Execute` of `what`.
fn sent(parsed: bool, what: &[u8]) -> Vec<u8> {
    let parse = if parsed {
        message(b'P', what)
    } else {
        Vec::new()
    };
    [parse, message(b'B', what), message(b'E', b"")].concat()
}

#[test]
fn a_statement_is_wrapped_in_one_transaction_block_before_one_sync() {
    // On Citus: BEGIN and the entry before, the assertion and COMMIT after, one Sync.
    let armed = Arc::new(Armed::default());
    let mut s = connected(&armed);
    let block = |parsed: bool| Anchor::AroundStatement {
        prefix: [sent(parsed, b"begin"), sent(false, b"enter")].concat(),
        suffix: [sent(false, b"assert"), sent(parsed, b"commit")].concat(),
        parts: 2,
    };
    let ticket = armed.arm(block(true));
    let client = [sent(false, b"stmt"), message(b'S', b"")].concat();
    assert_eq!(kinds(&write(&mut s, &client, 3)), b"PBEBEBEBEPBES");
    let server = [
        answered(true, 0, b"BEGIN\0"),
        answered(false, 1, b"SELECT 1\0"),
        answered(false, 1, b"SELECT 1\0"),
        answered(false, 1, b"SELECT 1\0"),
        answered(true, 0, b"COMMIT\0"),
        message(b'Z', b"I"),
    ]
    .concat();
    assert_eq!(kinds(&read(&mut s, &server, 4)), b"2DCZ");
    let o = ticket.outcome().expect("answered");
    assert_eq!((o.error(), &o.commit, o.client_executes), (None, &None, 1));

    // A COMMIT that fails is told apart from the assertion's failure.
    let ticket = armed.arm(block(false));
    write(&mut s, &client, 1000);
    let server = [
        answered(false, 0, b"BEGIN\0"),
        answered(false, 0, b"SELECT 1\0"),
        answered(false, 0, b"DELETE 1\0"),
        answered(false, 0, b"SELECT 1\0"),
        message(b'2', b""),
        error("40001", None),
        message(b'Z', b"I"),
    ]
    .concat();
    assert_eq!(kinds(&read(&mut s, &server, 1000)), b"2CEZ");
    let o = ticket.outcome().expect("answered");
    assert_eq!(o.second, None);
    assert_eq!(o.commit.expect("the commit's error").code, "40001");
}

#[test]
fn an_entry_that_fails_becomes_the_statements_error() {
    let armed = Arc::new(Armed::default());
    let mut s = connected(&armed);
    let ticket = armed.arm(Anchor::AroundStatement {
        prefix: [message(b'B', b"enter"), message(b'E', b"")].concat(),
        suffix: [message(b'B', b"assert"), message(b'E', b"")].concat(),
        parts: 1,
    });
    write(
        &mut s,
        &[message(b'B', b""), message(b'E', b""), message(b'S', b"")].concat(),
        1000,
    );
    let server = [error("28000", None), message(b'Z', b"I")].concat();
    assert_eq!(kinds(&read(&mut s, &server, 2)), b"EZ");
    let o = ticket.outcome().unwrap();
    assert_eq!(o.first.unwrap().code, "28000");
    assert_eq!(o.second, None);
}

#[test]
fn an_assertion_that_fails_is_passed_on_and_recorded() {
    let armed = Arc::new(Armed::default());
    let mut s = connected(&armed);
    let ticket = armed.arm(Anchor::AroundStatement {
        prefix: [message(b'B', b"enter"), message(b'E', b"")].concat(),
        suffix: [message(b'B', b"assert"), message(b'E', b"")].concat(),
        parts: 1,
    });
    write(
        &mut s,
        &[message(b'B', b""), message(b'E', b""), message(b'S', b"")].concat(),
        1000,
    );
    let server = [
        message(b'2', b""),
        message(b'D', b""),
        message(b'C', b"SELECT 1\0"),
        message(b'2', b""),
        message(b'C', b"DELETE 1\0"),
        message(b'2', b""),
        error("23514", Some("tenantry_tenant_moved")),
        message(b'Z', b"I"),
    ]
    .concat();
    assert_eq!(kinds(&read(&mut s, &server, 1000)), b"2CEZ");
    let o = ticket.outcome().unwrap();
    assert_eq!(
        o.second.unwrap().constraint.as_deref(),
        Some("tenantry_tenant_moved")
    );
}

#[test]
fn replies_to_earlier_requests_pass_before_a_splice() {
    let armed = Arc::new(Armed::default());
    let mut s = connected(&armed);
    // An earlier request is still owed its reply when the splice goes out.
    write(
        &mut s,
        &[message(b'P', b""), message(b'S', b"")].concat(),
        1000,
    );
    let ticket = armed.arm(Anchor::BeforeQuery(message(b'S', b"")));
    write(&mut s, &message(b'Q', b"COMMIT\0"), 1000);
    let server = [
        message(b'1', b""),
        message(b'Z', b"I"),
        message(b'Z', b"I"),
        message(b'C', b"COMMIT\0"),
        message(b'Z', b"I"),
    ]
    .concat();
    assert_eq!(kinds(&read(&mut s, &server, 1)), b"1ZCZ");
    assert_eq!(ticket.outcome(), Some(Outcome::default()));
}

#[test]
fn a_dropped_socket_resolves_every_ticket() {
    let armed = Arc::new(Armed::default());
    let s = connected(&armed);
    let t = armed.arm(Anchor::BeforeQuery(Vec::new()));
    drop(s);
    assert!(t.outcome().unwrap().lost);
}

#[test]
fn a_withdrawn_splice_is_never_written() {
    let armed = Arc::new(Armed::default());
    let mut s = connected(&armed);
    let t = armed.arm(Anchor::BeforeQuery(message(b'S', b"")));
    assert!(armed.disarm(&t));
    assert!(!s.writing());
    assert_eq!(kinds(&write(&mut s, &message(b'Q', b"x\0"), 1000)), b"Q");
}
