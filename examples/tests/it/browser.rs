//! The Owner dashboard in headless Chromium (Debian's `chromium` and `chromium-driver`), driven
//! through WebDriver with fantoccini. The browser carries the Cloudflare Access cookie, as it
//! would behind Access.
//!
//! `TENANTRY_UPDATE_SCREENSHOT=1` also writes `docs/admin-dashboard.png` (shown in the README).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{App, OWNER, PARTNER};
use fantoccini::cookies::Cookie;
use fantoccini::{ClientBuilder, Locator};
use tenantry::testing::{CertsServer, TestKey, TokenMinter};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TEAM: &str = "browser-test.cloudflareaccess.com";
const AUD: &str = "browser-aud";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> (Driver, String) {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: install Debian's browser with `apt-get install chromium chromium-driver` (.ci/run does)"
        );
    }
    let port = free_port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (driver, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {url}");
}

#[tokio::test]
async fn the_owner_sees_tenants_and_audit_rows_a_partner_gets_403() {
    let certs = CertsServer::start(&[&TestKey::A])
        .await
        .expect("certs server");
    let certs_url = certs.url();
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        ("TENANTRY_CF_CERTS_URL", &certs_url),
    ])
    .await;
    let mint = TokenMinter::new(TEAM, AUD, &TestKey::A);
    let (_driver, driver_url) = start_driver().await;
    let profile = std::env::temp_dir().join(format!("tenantry-chromium-{}", uuid::Uuid::new_v4()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                     "--window-size=1280,860", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a WebDriver session in headless Chromium");

    // Cookies belong to an origin: visit it first, then sign in as the Owner.
    browser.goto(&app.url("/healthz")).await.unwrap();
    let mut cookie = Cookie::new("CF_Authorization", mint.user(OWNER).sign());
    cookie.set_path("/");
    cookie.set_domain("127.0.0.1");
    cookie.set_same_site(Some(cookie::SameSite::Lax));
    browser.add_cookie(cookie).await.unwrap();
    // The first visit writes the first audit row, linked when its bypass commits: the chain
    // was empty when the page was made.
    browser.goto(&app.url("/admin")).await.unwrap();
    let empty = browser
        .find(Locator::Css("#chain-head"))
        .await
        .expect("the chain's head")
        .text()
        .await
        .unwrap();
    assert!(empty.contains("empty"), "{empty}");
    // Some load in two tenants (the partner's token), for the "load by tenant" panel.
    let partner = mint.user(PARTNER).sign();
    for (tenant, n) in [("acme", 5), ("globex", 2)] {
        for _ in 0..n {
            let r = app
                .client
                .get(app.url("/api/invoices"))
                .header("cf-access-jwt-assertion", &partner)
                .header("x-tenant", tenant)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    browser.goto(&app.url("/admin")).await.unwrap();
    // Load by tenant: a bar per tenant with its database time; the busier first.
    let load = browser
        .find(Locator::Css("#load"))
        .await
        .expect("the load section")
        .text()
        .await
        .unwrap();
    assert!(load.starts_with("Load by tenant"), "{load}");
    assert!(load.contains("of 16 connections in use now"), "{load}");
    let bars = browser
        .find_all(Locator::Css("#load-chart g.tenant-load"))
        .await
        .unwrap();
    let mut drawn = vec![];
    for bar in &bars {
        let tenant = bar.attr("data-tenant").await.unwrap().unwrap_or_default();
        let seconds: f64 = bar
            .attr("data-db-seconds")
            .await
            .unwrap()
            .unwrap_or_default()
            .parse()
            .unwrap();
        assert!(seconds > 0.0, "{tenant} has database time");
        drawn.push(tenant);
    }
    drawn.sort();
    assert_eq!(drawn, ["acme", "globex"], "{load}");
    let acme_text = browser
        .find(Locator::Css(
            "#load-chart g.tenant-load[data-tenant='acme']",
        ))
        .await
        .expect("acme's bar")
        .text()
        .await
        .unwrap();
    assert!(
        acme_text.contains("5 tx") && acme_text.contains("0 shed"),
        "{acme_text}"
    );
    let tenants = browser
        .find(Locator::Css("#tenants"))
        .await
        .expect("tenant section")
        .text()
        .await
        .unwrap();
    for name in ["acme inc", "globex inc", "initech inc"] {
        assert!(tenants.contains(name), "{tenants}");
    }
    let audit = browser
        .find(Locator::Css("#audit"))
        .await
        .expect("audit section")
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains("admin.dashboard") && audit.contains(OWNER),
        "{audit}"
    );
    // The audit chain's head: a row id and the first 12 hex digits of its hash, full on hover.
    let head = browser
        .find(Locator::Css("#chain-head"))
        .await
        .expect("the chain's head")
        .text()
        .await
        .unwrap();
    assert!(head.starts_with("Chain head: "), "{head}");
    let hash = browser
        .find(Locator::Css("#chain-head-hash"))
        .await
        .expect("the head's hash");
    let short = hash.text().await.unwrap();
    let full = hash.attr("title").await.unwrap().unwrap_or_default();
    assert_eq!(short.len(), 12, "{head}");
    assert!(short.chars().all(|c| c.is_ascii_hexdigit()), "{head}");
    assert!(
        full.len() == 64 && full.starts_with(&short),
        "{full} {head}"
    );
    let row: i64 = browser
        .find(Locator::Css("#chain-head-row"))
        .await
        .expect("the head's row")
        .text()
        .await
        .unwrap()
        .parse()
        .expect("a row id");
    assert_eq!(row, 1, "the first visit's row: {head}");
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let target =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/admin-dashboard.png");
    std::fs::write(&target, &png).unwrap();
    if std::env::var_os("TENANTRY_UPDATE_SCREENSHOT").is_some() {
        let docs =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-dashboard.png");
        std::fs::write(docs, &png).unwrap();
    }

    // A partner's cookie: 403 with the error JSON, no dashboard.
    browser.delete_all_cookies().await.unwrap();
    let mut cookie = Cookie::new("CF_Authorization", mint.user(PARTNER).sign());
    cookie.set_path("/");
    cookie.set_domain("127.0.0.1");
    cookie.set_same_site(Some(cookie::SameSite::Lax));
    browser.add_cookie(cookie).await.unwrap();
    browser.goto(&app.url("/admin")).await.unwrap();
    let source = browser.source().await.unwrap();
    assert!(source.contains("\"error\":\"forbidden\""), "{source}");
    assert!(!source.contains("Owner dashboard"));
    browser.close().await.unwrap();
    let _ = std::fs::remove_dir_all(profile);
}
