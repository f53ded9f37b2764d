//! SIGTERM and Ctrl-C: the binary stops accepting, lets in-flight requests finish, closes its
//! pools and exits 0.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use tenantry::testing::ScratchDatabase;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary in dev mode on its own scratch database, up and healthy, and its port.
async fn start(scratch: &ScratchDatabase) -> (Running, u16) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry-example"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TENANTRY_")) {
        cmd.env_remove(k);
    }
    cmd.env("TENANTRY_AUTH_MODE", "dev")
        .env("TENANTRY_DEV_USER_EMAIL", "dev@example.com")
        .env("DATABASE_URL", scratch.url(None))
        .env("TENANTRY_DB_LOCK_TIMEOUT", "20s")
        .env("TENANTRY_DB_STATEMENT_TIMEOUT", "20s")
        // Every request of the one tenant gets a connection (16) rather than its fair share
        // (8), so that each in-flight request shows as a session waiting for the lock.
        .env("TENANTRY_TENANT_SHARE", "off")
        .stderr(Stdio::null());
    let (child, port, _, stdout) = common::spawn_example(&mut cmd).await;
    common::drain(stdout);
    let app = Running(child);
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return (app, port);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the example did not come up on {port}");
}

fn signal(app: &Running, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(app.0.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits (bounded) for the process to exit and returns its exit code.
async fn exit_code(app: &mut Running, within: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = app.0.try_wait().expect("wait") {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the process did not exit within {within:?}");
}

#[tokio::test]
async fn sigterm_under_load_drains_every_in_flight_request_and_exits_0() {
    let scratch = ScratchDatabase::create("tenantry_shutdown").await;
    let (mut app, port) = start(&scratch).await;
    // Hold the invoices so that requests are in flight when SIGTERM arrives.
    let mut locker = scratch.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let mut in_flight = Vec::new();
    for _ in 0..12 {
        let r = client
            .get(format!("http://127.0.0.1:{port}/api/invoices"))
            .send();
        in_flight.push(tokio::spawn(r));
    }
    // Every request has reached its handler: each one's session waits for the lock.
    common::until_waiting_for_a_lock(scratch.name(), "tenantry_app", 12).await;
    signal(&app, "TERM");
    // No longer accepting: polled (the process announces nothing), bounded.
    let closed_by = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < closed_by,
            "the listener is still open 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.0.try_wait().unwrap().is_none(), "still draining");
    locker.batch_execute("ROLLBACK").await.unwrap();
    for r in in_flight {
        let r = r
            .await
            .unwrap()
            .expect("an in-flight request is answered, not dropped");
        assert_eq!(r.status(), 200);
        let invoices: serde_json::Value = r.json().await.expect("a complete body");
        assert!(invoices.as_array().is_some_and(|a| !a.is_empty()));
    }
    assert_eq!(exit_code(&mut app, Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn ctrl_c_stops_an_idle_server_with_exit_0() {
    let scratch = ScratchDatabase::create("tenantry_shutdown").await;
    let (mut app, _) = start(&scratch).await;
    signal(&app, "INT");
    assert_eq!(exit_code(&mut app, Duration::from_secs(10)).await, Some(0));
}
