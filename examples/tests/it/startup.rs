//! A missing or malformed setting stops the binary at start: one line naming the variable, a
//! non-zero exit; dev mode refuses production and non-loopback binds; a pooler or a role the
//! app cannot use is refused at start the same way.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry-example"));
    for var in [
        "DATABASE_URL",
        "TENANTRY_AUTH_MODE",
        "TENANTRY_ENV",
        "TENANTRY_BIND",
        "TENANTRY_DEV_USER_EMAIL",
        "TENANTRY_CF_TEAM_DOMAIN",
        "TENANTRY_CF_AUDIENCE",
        "TENANTRY_TRUSTED_PROXIES",
        "TENANTRY_DB_STATEMENT_TIMEOUT",
        "TENANTRY_HTTP_IDLE_TIMEOUT",
        "TENANTRY_APP_DATABASE_URL",
        "TENANTRY_BYPASS_DATABASE_URL",
        "TENANTRY_DB_POOLER",
        "TENANTRY_LISTEN_DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("runs");
    let mut pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        pipe.read_to_string(&mut stderr).map(|_| stderr)
    });
    // Each case must stop at start; one that serves instead would run until killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("{env:?}: still running after 30 s: it started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().expect("reader").expect("stderr");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_settings_exit_with_one_line_naming_the_variable() {
    for (env, variable) in [
        (vec![], "TENANTRY_CF_TEAM_DOMAIN"),
        (vec![("TENANTRY_AUTH_MODE", "magic")], "TENANTRY_AUTH_MODE"),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "dev"),
                ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
                ("TENANTRY_ENV", "production"),
            ],
            "TENANTRY_AUTH_MODE",
        ),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "dev"),
                ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
                ("TENANTRY_BIND", "0.0.0.0:3999"),
            ],
            "TENANTRY_BIND",
        ),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "trusted_header"),
                ("TENANTRY_TRUSTED_PROXIES", "0.0.0.0/0"),
            ],
            "TENANTRY_TRUSTED_PROXIES",
        ),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "dev"),
                ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
                ("DATABASE_URL", "not a url"),
            ],
            "DATABASE_URL",
        ),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "dev"),
                ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
                ("TENANTRY_DB_STATEMENT_TIMEOUT", "soon"),
            ],
            "TENANTRY_DB_STATEMENT_TIMEOUT",
        ),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "dev"),
                ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
                ("TENANTRY_HTTP_IDLE_TIMEOUT", "1s"),
            ],
            "TENANTRY_HTTP_IDLE_TIMEOUT",
        ),
        (
            vec![
                ("TENANTRY_AUTH_MODE", "dev"),
                ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
                ("TENANTRY_DB_POOLER", "pgbouncer"),
            ],
            "TENANTRY_DB_POOLER",
        ),
    ] {
        let (code, stderr) = run(&env);
        assert_ne!(code, 0, "{env:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{env:?}: {stderr}");
    }
}

/// A pooler that breaks what the app needs, or a server without its roles, stops the start with
/// one line naming the setting, never a failure at the first request under load.
#[tokio::test]
async fn a_pooler_or_role_the_app_cannot_use_stops_the_start_naming_the_setting() {
    let scratch = tenantry::testing::ScratchDatabase::create("tenantry_start").await;
    let bouncer = tenantry::testing::PgBouncer::shared().await;
    let direct = scratch.url(None);
    let pooled = |role: &str| bouncer.url(scratch.name(), role);
    let dev = [
        ("TENANTRY_AUTH_MODE", "dev"),
        ("TENANTRY_DEV_USER_EMAIL", "d@example.com"),
        ("TENANTRY_BIND", "127.0.0.1:0"),
    ];
    type Case<'a> = (Vec<(&'a str, String)>, &'a [&'a str]);
    let cases: [Case; 5] = [
        // The request path through PgBouncer, as if it were PostgreSQL itself.
        (
            vec![
                ("DATABASE_URL", direct.clone()),
                ("TENANTRY_APP_DATABASE_URL", pooled("tenantry_app")),
                ("TENANTRY_BYPASS_DATABASE_URL", pooled("tenantry_bypass")),
            ],
            &[
                "TENANTRY_APP_DATABASE_URL",
                "TENANTRY_DB_POOLER=transaction",
            ],
        ),
        // Migrations (advisory locks) through the pooler.
        (
            vec![
                ("DATABASE_URL", pooled("postgres")),
                ("TENANTRY_APP_DATABASE_URL", pooled("tenantry_app")),
                ("TENANTRY_BYPASS_DATABASE_URL", pooled("tenantry_bypass")),
                ("TENANTRY_DB_POOLER", "transaction".to_owned()),
            ],
            &["DATABASE_URL", "transaction pooler"],
        ),
        // The directory listener's LISTEN through the pooler, where it would stop hearing.
        (
            vec![
                ("DATABASE_URL", direct.clone()),
                ("TENANTRY_APP_DATABASE_URL", pooled("tenantry_app")),
                ("TENANTRY_BYPASS_DATABASE_URL", pooled("tenantry_bypass")),
                ("TENANTRY_DB_POOLER", "transaction".to_owned()),
                ("TENANTRY_LISTEN_DATABASE_URL", pooled("tenantry_app")),
            ],
            &["TENANTRY_LISTEN_DATABASE_URL", "transaction pooler"],
        ),
        // A role the server does not have.
        (
            vec![
                ("DATABASE_URL", direct.clone()),
                (
                    "TENANTRY_APP_DATABASE_URL",
                    scratch.url(Some("tenantry_nobody")),
                ),
            ],
            &["TENANTRY_APP_DATABASE_URL", "tenantry_nobody"],
        ),
        // A bypass role that does not bypass row-level security.
        (
            vec![
                ("DATABASE_URL", direct.clone()),
                (
                    "TENANTRY_BYPASS_DATABASE_URL",
                    scratch.url(Some("tenantry_app")),
                ),
            ],
            &["TENANTRY_BYPASS_DATABASE_URL", "BYPASSRLS"],
        ),
    ];
    for (vars, needles) in cases {
        let mut env: Vec<(&str, &str)> = dev.to_vec();
        env.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
        let (code, stderr) = run(&env);
        assert_ne!(code, 0, "{env:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{env:?}: {stderr}");
        }
    }
}
