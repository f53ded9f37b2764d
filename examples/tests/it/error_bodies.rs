//! Every error the server emits carries the contract's JSON body, with the right status: bad
//! input in bodies and tokens, and the errors axum and hyper produce by themselves.

use crate::common;

use common::{assert_error, App, PARTNER};
use reqwest::Method;
use serde_json::json;
use tenantry::testing::{CertsServer, TestKey, TokenMinter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_nul_in_any_json_string_is_422_naming_the_field() {
    let app = App::start().await;
    let p = app.projects["acme"];
    for (path, body, field) in [
        (
            "/api/invoices",
            json!({"project_id": p, "number": "N\u{0}1", "amount_cents": 1, "currency": "EUR"}),
            "number",
        ),
        (
            "/api/invoices",
            json!({"project_id": p, "number": "N-1", "amount_cents": 1, "currency": "EU\u{0}"}),
            "currency",
        ),
        ("/api/projects", json!({"name": "Web\u{0}site"}), "name"),
    ] {
        let (s, b) = app
            .send_json(Method::POST, path, PARTNER, Some("acme"), body)
            .await;
        assert_eq!(s, 422, "{path} {field}: {b}");
        assert_error(&b, "invalid");
        assert!(
            b["message"].as_str().unwrap().starts_with(field),
            "{field}: {b}"
        );
    }
    let id = app.invoice_of("acme").await;
    let (s, b) = app
        .send_json(
            Method::PATCH,
            &format!("/api/invoices/{id}"),
            PARTNER,
            Some("acme"),
            json!({"status": "pa\u{0}id"}),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert!(b["message"].as_str().unwrap().starts_with("status"), "{b}");
}

#[tokio::test]
async fn a_ten_megabyte_body_is_413() {
    let app = App::start().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let r = app
        .req(Method::POST, "/api/projects", Some(PARTNER), Some("acme"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 413);
    assert_error(&r.json().await.unwrap(), "too_large");
}

#[tokio::test]
async fn a_method_the_route_does_not_take_is_405_with_the_error_json() {
    let app = App::start().await;
    let r = app
        .req(Method::PUT, "/api/projects", Some(PARTNER), Some("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
    assert_error(&r.json().await.unwrap(), "method_not_allowed");
}

/// Sends `request` as raw bytes and returns the status and the JSON body of the answer.
async fn raw(app: &App, request: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect(&answer);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let status = head[9..12].parse().expect(head);
    (status, serde_json::from_str(body).expect(&answer))
}

#[tokio::test]
async fn hypers_own_errors_carry_the_error_json() {
    let app = App::start().await;
    let (s, b) = raw(&app, b"NOT A REQUEST\r\n\r\n").await;
    assert_eq!(s, 400);
    assert_error(&b, "bad_request");

    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let (s, b) = raw(&app, long_uri.as_bytes()).await;
    assert_eq!(s, 414);
    assert_error(&b, "too_large");

    let mut many_headers = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many_headers.push_str(&format!("X-Header-{i}: {}\r\n", "v".repeat(100)));
    }
    many_headers.push_str("\r\n");
    let (s, b) = raw(&app, many_headers.as_bytes()).await;
    assert_eq!(s, 431);
    assert_error(&b, "too_large");
}

#[tokio::test]
async fn a_token_claim_with_a_nul_is_401() {
    const TEAM: &str = "acme-test.cloudflareaccess.com";
    const AUD: &str = "example-aud-tag";
    let certs = CertsServer::start(&[&TestKey::A]).await.expect("certs");
    let url = certs.url();
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        ("TENANTRY_CF_CERTS_URL", &url),
    ])
    .await;
    let minter = TokenMinter::new(TEAM, AUD, &TestKey::A);
    for token in [
        minter.user("partner\u{0}@example.com").sign(),
        minter.service("svc\u{0}.access").sign(),
    ] {
        let r = app
            .client
            .get(app.url("/api/me"))
            .header("cf-access-jwt-assertion", token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_error(&r.json().await.unwrap(), "unauthenticated");
    }
}
