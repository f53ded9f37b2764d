//! Requests: where the token is taken from, through a real axum router over HTTP. The handler
//! answers 200 with the verified email, or the `AuthError`'s status and code.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use tenantry::auth::cloudflare::CloudflareVerifier;

use super::{bounded, Env};

async fn whoami(
    State(verifier): State<CloudflareVerifier>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    match verifier.authenticate(&headers).await {
        Ok(identity) => (StatusCode::OK, identity.email().to_owned()),
        Err(error) => (
            StatusCode::from_u16(error.status()).expect("a valid status"),
            format!("{}: {error}", error.code()),
        ),
    }
}

/// The router served on `127.0.0.1`, and a client for it.
struct App {
    env: Env,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl App {
    async fn start() -> App {
        let env = Env::new().await;
        let router = Router::new()
            .route("/whoami", get(whoami))
            .with_state(env.verifier.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        App { env, addr, client }
    }

    /// GET /whoami with `headers` (repeated names are sent as repeated header lines).
    async fn get(&self, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = self.client.get(format!("http://{}/whoami", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = bounded(request.send()).await.expect("the app answers");
        let status = response.status().as_u16();
        (status, bounded(response.text()).await.unwrap())
    }

    fn token(&self, email: &str) -> String {
        self.env.minter.user(email).sign()
    }
}

const HEADER: &str = "Cf-Access-Jwt-Assertion";
const EMAIL_HEADER: &str = "Cf-Access-Authenticated-User-Email";

#[tokio::test]
async fn header_token_is_accepted() {
    let app = App::start().await;
    let token = app.token("ada@example.com");
    assert_eq!(
        app.get(&[(HEADER, &token)]).await,
        (200, "ada@example.com".into())
    );
}

#[tokio::test]
async fn cookie_only_is_accepted() {
    let app = App::start().await;
    let cookie = format!(
        "theme=dark; CF_Authorization={}",
        app.token("ada@example.com")
    );
    assert_eq!(
        app.get(&[("Cookie", &cookie)]).await,
        (200, "ada@example.com".into())
    );
}

#[tokio::test]
async fn no_token_is_401() {
    let app = App::start().await;
    let (status, body) = app.get(&[]).await;
    assert_eq!(status, 401);
    assert!(body.contains("no Cloudflare Access token"), "{body}");
}

#[tokio::test]
async fn header_sent_twice_is_401() {
    let app = App::start().await;
    let token = app.token("ada@example.com");
    let (status, body) = app.get(&[(HEADER, &token), (HEADER, &token)]).await;
    assert_eq!(status, 401, "{body}");
    let other = app.token("bob@example.com");
    assert_eq!(app.get(&[(HEADER, &token), (HEADER, &other)]).await.0, 401);
}

#[tokio::test]
async fn header_alone_decides_when_it_disagrees_with_the_cookie() {
    let app = App::start().await;
    let good_cookie = format!("CF_Authorization={}", app.token("cookie@example.com"));
    let expired = app
        .env
        .minter
        .user("header@example.com")
        .expires_in(-3600)
        .sign();
    // A bad header token is 401 even with a good cookie.
    assert_eq!(
        app.get(&[(HEADER, &expired), ("Cookie", &good_cookie)])
            .await
            .0,
        401
    );
    assert_eq!(
        app.get(&[(HEADER, ""), ("Cookie", &good_cookie)]).await.0,
        401
    );
    // A good header token wins over a different (or bad) cookie.
    let header = app.token("header@example.com");
    let expected = (200, "header@example.com".to_owned());
    assert_eq!(
        app.get(&[(HEADER, &header), ("Cookie", &good_cookie)])
            .await,
        expected
    );
    let bad_cookie = format!("CF_Authorization={expired}");
    assert_eq!(
        app.get(&[(HEADER, &header), ("Cookie", &bad_cookie)]).await,
        expected
    );
}

#[tokio::test]
async fn two_different_cookies_are_401() {
    let app = App::start().await;
    let a = format!("CF_Authorization={}", app.token("a@example.com"));
    let b = format!("CF_Authorization={}", app.token("b@example.com"));
    assert_eq!(app.get(&[("Cookie", &a), ("Cookie", &b)]).await.0, 401);
    assert_eq!(app.get(&[("Cookie", &format!("{a}; {b}"))]).await.0, 401);
    assert_eq!(app.get(&[("Cookie", &a), ("Cookie", &a)]).await.0, 200);
}

#[tokio::test]
async fn unsigned_email_header_alone_is_401() {
    let app = App::start().await;
    let (status, body) = app.get(&[(EMAIL_HEADER, "boss@example.com")]).await;
    assert_eq!(status, 401);
    assert!(!body.contains("boss@example.com"), "{body}");
}

#[tokio::test]
async fn token_wins_over_a_different_unsigned_email_header() {
    let app = App::start().await;
    let token = app.token("ada@example.com");
    let response = app
        .get(&[(EMAIL_HEADER, "boss@example.com"), (HEADER, &token)])
        .await;
    assert_eq!(response, (200, "ada@example.com".into()));
}

#[tokio::test]
async fn bearer_authorization_is_not_accepted() {
    let app = App::start().await;
    let token = app.token("ada@example.com");
    assert_eq!(
        app.get(&[("Authorization", &format!("Bearer {token}"))])
            .await
            .0,
        401
    );
    assert_eq!(
        app.get(&[(HEADER, &format!("Bearer {token}"))]).await.0,
        401
    );
}

#[tokio::test]
async fn header_with_a_forged_token_is_401_with_a_json_code() {
    let app = App::start().await;
    let forged = app
        .env
        .ada()
        .signed_by(&tenantry::testing::TestKey::C)
        .sign();
    let (status, body) = app.get(&[(HEADER, &forged)]).await;
    assert_eq!(status, 401);
    assert!(body.starts_with("unauthenticated: "), "{body}");
}
