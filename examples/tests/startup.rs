//! A missing or malformed setting stops the binary at start: one line naming the variable, a
//! non-zero exit; dev mode refuses production and non-loopback binds.

use std::process::Command;

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
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    ] {
        let (code, stderr) = run(&env);
        assert_ne!(code, 0, "{env:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{env:?}: {stderr}");
    }
}
