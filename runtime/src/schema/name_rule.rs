//! The rule for the name of tenantry's schema (`TENANTRY_SCHEMA`), shared by the build script,
//! which refuses a build with a name that breaks it, and by the unit tests.

/// The build-time setting that names the schema of tenantry's own objects.
pub(crate) const SETTING: &str = "TENANTRY_SCHEMA";

/// The schema's name when `TENANTRY_SCHEMA` is not set.
pub(crate) const DEFAULT: &str = "tenantry";

/// Why `name` cannot be tenantry's schema, if it cannot: a lowercase SQL identifier
/// (`[a-z_][a-z0-9_]*`, at most 63 bytes, so it needs no quoting), and none of PostgreSQL's own
/// schemas (`public`, `information_schema`, `pg_*`).
pub(crate) fn check(name: &str) -> Result<(), String> {
    const ALLOWED: &str = "a lowercase SQL identifier ([a-z_][a-z0-9_]*, at most 63 bytes), not \
                           `public`, `information_schema` or a name starting with `pg_`";
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let problem = if name.is_empty() {
        Some("is empty".to_owned())
    } else if !first_ok || !rest_ok {
        Some("is not a lowercase SQL identifier".to_owned())
    } else if name.len() > 63 {
        Some(format!("is {} bytes long", name.len()))
    } else if name == "public" || name == "information_schema" {
        Some("is one of PostgreSQL's own schemas".to_owned())
    } else if name.starts_with("pg_") {
        Some("starts with `pg_`, which PostgreSQL reserves".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{SETTING}={name:?} {problem}: the schema of tenantry's own tables must be {ALLOWED} \
             (unset, it is `{DEFAULT}`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn lowercase_identifiers_pass() {
        for name in ["tenantry", "app_tenantry", "_t", "t9", &"a".repeat(63)] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn other_names_are_refused_with_the_setting_and_the_rule() {
        for name in [
            "",
            "Tenantry",
            "9t",
            "app-tenantry",
            "app.t",
            "\"x\"",
            "public",
            "information_schema",
            "pg_tenantry",
            &"a".repeat(64),
        ] {
            let message = check(name).expect_err(name);
            assert!(message.starts_with("TENANTRY_SCHEMA="), "{message}");
            assert!(message.contains("[a-z_][a-z0-9_]*"), "{message}");
        }
    }
}
