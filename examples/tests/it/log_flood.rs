//! An outage logs its start and its end once each and a few summaries, not one line per failed
//! request: the binary's own log output during a frozen database path.

use crate::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use tenantry::testing::{FaultProxy, ScratchDatabase};

#[tokio::test]
async fn an_outage_logs_its_start_and_end_once_not_every_failure() {
    let scratch = ScratchDatabase::create("tenantry_logs").await;
    let proxy = FaultProxy::start(common::pg_upstream())
        .await
        .expect("proxy");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry-example"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TENANTRY_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    cmd.env("TENANTRY_AUTH_MODE", "dev")
        .env("TENANTRY_DEV_USER_EMAIL", "dev@example.com")
        .env("DATABASE_URL", scratch.url(None))
        .env(
            "TENANTRY_APP_DATABASE_URL",
            proxy.url(&scratch.url(Some("tenantry_app"))),
        )
        .env(
            "TENANTRY_BYPASS_DATABASE_URL",
            proxy.url(&scratch.url(Some("tenantry_bypass"))),
        )
        .env("TENANTRY_DB_STATEMENT_TIMEOUT", "1s")
        .env("NO_COLOR", "1")
        .stderr(Stdio::null());
    let (mut child, port, started, mut stdout) = common::spawn_example(&mut cmd).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let mut up = false;
    for _ in 0..300 {
        if client.get(url("/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the example did not come up");

    proxy.freeze();
    let mut failed = 0;
    for _round in 0..3 {
        let mut wave = Vec::new();
        for _ in 0..20 {
            wave.push(tokio::spawn(client.get(url("/api/invoices")).send()));
        }
        for r in wave {
            // 503 while the database is frozen, or 429 once this one tenant's share of the
            // pool is held by its own stuck requests: both are answers, neither a hang.
            let status = r.await.unwrap().expect("an answer").status();
            assert!(
                status == 503 || status == 429,
                "a request during the freeze answered {status}"
            );
            failed += 1;
        }
    }
    proxy.pass();
    let mut recovered = false;
    for _ in 0..50 {
        let r = client.get(url("/api/invoices")).send().await.unwrap();
        if r.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the app serves again after the freeze");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut out = started;
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .filter(|l| !l.contains("DEV AUTH MODE"))
        .collect();
    let starts = out.matches("database unavailable").count();
    let ends = out.matches("database available again").count();
    assert_eq!(starts, 1, "the outage's start, once:\n{out}");
    assert_eq!(ends, 1, "the outage's end, once:\n{out}");
    assert!(
        lines.len() <= 10,
        "{failed} failed requests logged {} warnings and errors:\n{}",
        lines.len(),
        lines.join("\n")
    );
}
