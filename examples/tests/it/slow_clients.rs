//! Slow and greedy clients: a half-sent head, an idle keep-alive connection and a trickled body
//! are cut off after their timeouts, and connections beyond the cap are answered 503 at once.

use crate::common;

use std::time::{Duration, Instant};

use common::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app(vars: &[(&str, &str)]) -> App {
    let mut all = vec![
        ("TENANTRY_AUTH_MODE", "trusted_header"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    all.extend_from_slice(vars);
    App::start_with(&all).await
}

/// Reads a response's head (through the blank line), failing the test after 10 s.
async fn read_head(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed before a response: {seen:?}"),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no response within 10 s"),
        }
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {within:?}; it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    (
        String::from_utf8_lossy(&seen).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_half_sent_head_is_closed_after_the_header_timeout() {
    let app = app(&[("TENANTRY_HTTP_HEADER_TIMEOUT", "1s")]).await;
    let mut loris = TcpStream::connect(app.addr).await.unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .await
        .unwrap();
    let (_, closed_after) = read_until_closed(&mut loris, Duration::from_secs(5)).await;
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
    // The server still serves others.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = app(&[("TENANTRY_HTTP_HEADER_TIMEOUT", "1s")]).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (seen, _) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
}

#[tokio::test]
async fn a_trickled_body_is_408_after_the_body_timeout() {
    let app = app(&[("TENANTRY_HTTP_BODY_TIMEOUT", "1s")]).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /api/projects HTTP/1.1\r\nHost: x\r\n{}: {}\r\nX-Tenant: acme\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
            common::EMAIL_HEADER,
            common::PARTNER
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("an answer within the body timeout")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).expect(&answer);
    common::assert_error(&json, "timeout");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_answered_503_at_once() {
    let app = app(&[("TENANTRY_HTTP_MAX_CONNECTIONS", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        // Answered once: the server has accepted this connection and counts it (the event
        // waited on, instead of a pause).
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_head(&mut s).await;
        // A started request keeps its connection busy.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    common::assert_error(&r.json().await.unwrap(), "unavailable");
    drop(held);
    let mut ok = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = app
            .client
            .get(app.url("/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            ok = true;
            break;
        }
    }
    assert!(ok, "closed connections free their slots");
}
