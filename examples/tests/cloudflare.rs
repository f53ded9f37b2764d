//! The app in `cloudflare` mode against a real local certs server: tokens in the header or the
//! cookie, service tokens, and identities mapped to users.

mod common;

use common::{assert_error, App, LONELY, OWNER, PARTNER};
use tenantry::testing::{CertsServer, TestKey, TokenMinter};

const TEAM: &str = "acme-test.cloudflareaccess.com";
const AUD: &str = "example-aud-tag";

async fn start() -> (App, CertsServer, TokenMinter) {
    let certs = CertsServer::start(&[&TestKey::A])
        .await
        .expect("certs server");
    let url = certs.url();
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        ("TENANTRY_CF_CERTS_URL", &url),
    ])
    .await;
    (app, certs, TokenMinter::new(TEAM, AUD, &TestKey::A))
}

async fn me(app: &App, header: Option<&str>, cookie: Option<&str>) -> (u16, serde_json::Value) {
    let mut r = app.client.get(app.url("/api/me"));
    if let Some(h) = header {
        r = r.header("cf-access-jwt-assertion", h);
    }
    if let Some(c) = cookie {
        r = r.header("cookie", format!("CF_Authorization={c}"));
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_token_in_the_header_or_the_cookie_identifies_the_user() {
    let (app, _certs, mint) = start().await;
    let good = mint.user(PARTNER).sign();
    let (s, b) = me(&app, Some(&good), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["email"], PARTNER);
    let (s, b) = me(&app, None, Some(&good)).await;
    assert_eq!(s, 200, "cookie only: {b}");
    // the header alone decides: a bad header is 401 even with a good cookie
    let bad = mint.user(PARTNER).claim("aud", "someone-else").sign();
    let (s, b) = me(&app, Some(&bad), Some(&good)).await;
    assert_eq!(s, 401);
    assert_error(&b, "unauthenticated");
    let (s, _) = me(&app, None, None).await;
    assert_eq!(s, 401);
    // the unsigned email header means nothing in this mode
    let r = app
        .client
        .get(app.url("/api/me"))
        .header(common::EMAIL_HEADER, OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // a valid token with a different unsigned email header: the token wins
    let r = app
        .client
        .get(app.url("/api/me"))
        .header("cf-access-jwt-assertion", &good)
        .header(common::EMAIL_HEADER, OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["user"]["email"],
        PARTNER
    );
}

#[tokio::test]
async fn service_tokens_map_to_the_user_named_by_common_name() {
    let (app, _certs, mint) = start().await;
    let token = mint.service(OWNER).sign();
    let (s, b) = me(&app, Some(&token), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["is_owner"], true);
    let unknown = mint.service("ci-bot.access").sign();
    let (s, b) = me(&app, Some(&unknown), None).await;
    assert_eq!(s, 403);
    assert_error(&b, "not_provisioned");
}

#[tokio::test]
async fn email_is_the_key_and_a_new_sub_is_recorded() {
    let (app, _certs, mint) = start().await;
    let first = mint
        .user("Partner@Example.com")
        .claim("sub", "sub-1")
        .sign();
    let (s, a) = me(&app, Some(&first), None).await;
    assert_eq!(s, 200);
    let second = mint.user(PARTNER).claim("sub", "sub-2").sign();
    let (_, b) = me(&app, Some(&second), None).await;
    assert_eq!(
        a["user"]["id"], b["user"]["id"],
        "same user after re-provisioning"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM users WHERE email = 'partner@example.com' AND cf_sub = 'sub-2'").await,
        1
    );
}

#[tokio::test]
async fn authorization_failures_are_403_not_401() {
    let (app, _certs, mint) = start().await;
    let lonely = mint.user(LONELY).sign();
    let r = app
        .client
        .get(app.url("/api/invoices"))
        .header("cf-access-jwt-assertion", &lonely)
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let stranger = mint.user("stranger@example.com").sign();
    let (s, b) = me(&app, Some(&stranger), None).await;
    assert_eq!(s, 403);
    assert_error(&b, "not_provisioned");
}

#[tokio::test]
async fn every_token_is_401_while_the_certs_endpoint_never_answered() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        (
            "TENANTRY_CF_CERTS_URL",
            "http://127.0.0.1:9/cdn-cgi/access/certs",
        ),
    ])
    .await;
    let token = TokenMinter::new(TEAM, AUD, &TestKey::A)
        .user(PARTNER)
        .sign();
    let (s, b) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        me(&app, Some(&token), None),
    )
    .await
    .expect("does not hang");
    assert_eq!(s, 401);
    assert_error(&b, "unauthenticated");
}
