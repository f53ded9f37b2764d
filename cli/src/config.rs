//! Where the database URLs come from (`--database-url`, `DATABASE_URL`,
//! `TENANTRY_APP_DATABASE_URL`) and what is wrong with a malformed one.
//!
//! The rules are `tenantry::settings`' own ([`PgUrl`] parses every URL): an empty variable
//! counts as unset, a URL must be `postgres://` or `postgresql://` with a host and a database,
//! and the app role defaults to `tenantry_app`.

use tenantry::settings::PgUrl;

use crate::error::CliError;

/// A validated PostgreSQL URL and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct DbTarget {
    /// The URL as given (passed to the driver unchanged).
    pub(crate) url: String,
    /// `--database-url`, `DATABASE_URL`, `TENANTRY_APP_DATABASE_URL` or `the default DATABASE_URL`.
    pub(crate) origin: &'static str,
    /// Host name or address (IPv6 in brackets).
    pub(crate) host: String,
    /// Port (5432 when not given).
    pub(crate) port: u16,
    /// Database name.
    pub(crate) database: String,
    /// User name, empty when the URL names none.
    pub(crate) user: String,
}

impl DbTarget {
    /// `host:port`, for messages.
    pub(crate) fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Validates `value`, naming `origin` in the error.
    pub(crate) fn parse(origin: &'static str, value: &str) -> Result<Self, CliError> {
        let url = PgUrl::parse(value).map_err(|e| CliError::BadUrl {
            origin,
            problem: e.to_string(),
        })?;
        Ok(DbTarget {
            url: value.to_owned(),
            origin,
            host: url.host,
            port: url.port,
            database: url.database,
            user: url.user,
        })
    }

    /// The migration/owner URL: `--database-url`, else `DATABASE_URL`; there is no default.
    pub(crate) fn resolve(flag: Option<&str>) -> Result<Self, CliError> {
        if let Some(value) = flag {
            return Self::parse("--database-url", value);
        }
        match env_var("DATABASE_URL")? {
            Some(value) => Self::parse("DATABASE_URL", &value),
            // No default: the command is never pointed at a database nobody named.
            None => Err(CliError::Invalid {
                flag: "DATABASE_URL",
                problem: "not set: pass --database-url or set DATABASE_URL to the PostgreSQL \
                          URL of the role that migrates, e.g. \
                          postgres://postgres@127.0.0.1:5432/myapp"
                    .to_owned(),
            }),
        }
    }
}

/// This deployment's role names, as the application reads them: `TENANTRY_APP_ROLE`,
/// `TENANTRY_BYPASS_ROLE`, `TENANTRY_DIRECTORY_ROLE`, each defaulting to `TENANTRY_ROLE_PREFIX`
/// (default `tenantry_`) followed by `app`, `bypass` or `directory`.
pub(crate) fn role_names() -> Result<tenantry::migrations::RoleNames, CliError> {
    let invalid = |flag: &'static str| {
        move |e: tenantry::migrations::RoleNameError| CliError::Invalid { flag, problem: e.0 }
    };
    let prefix = env_var("TENANTRY_ROLE_PREFIX")?.unwrap_or_else(|| "tenantry_".to_owned());
    let mut roles = tenantry::migrations::RoleNames::with_prefix(&prefix)
        .map_err(invalid("TENANTRY_ROLE_PREFIX"))?;
    for (var, slot) in [
        ("TENANTRY_APP_ROLE", &mut roles.app),
        ("TENANTRY_BYPASS_ROLE", &mut roles.bypass),
        ("TENANTRY_DIRECTORY_ROLE", &mut roles.directory),
    ] {
        if let Some(name) = env_var(var)? {
            *slot = name;
        }
    }
    roles.checked().map_err(invalid("TENANTRY_APP_ROLE"))
}

/// The role the application connects as: the user of `TENANTRY_APP_DATABASE_URL`, else the
/// deployment's app role (`tenantry_app`).
pub(crate) fn app_role() -> Result<String, CliError> {
    role_of("TENANTRY_APP_DATABASE_URL", &role_names()?.app)
}

/// The role audited bypasses connect as: the user of `TENANTRY_BYPASS_DATABASE_URL`, else the
/// deployment's bypass role (`tenantry_bypass`).
pub(crate) fn bypass_role() -> Result<String, CliError> {
    role_of("TENANTRY_BYPASS_DATABASE_URL", &role_names()?.bypass)
}

/// The user of the URL in `var`, else `default`.
fn role_of(var: &'static str, default: &str) -> Result<String, CliError> {
    match env_var(var)? {
        None => Ok(default.to_owned()),
        Some(value) => {
            let target = DbTarget::parse(var, &value)?;
            if target.user.is_empty() {
                return Err(CliError::BadUrl {
                    origin: var,
                    problem: "names no role (postgres://ROLE@host:5432/database)".into(),
                });
            }
            Ok(target.user)
        }
    }
}

/// A variable's trimmed value; unset and blank are the same.
fn env_var(name: &'static str) -> Result<Option<String>, CliError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::BadUrl {
            origin: name,
            problem: "is not valid UTF-8".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_url_is_split() {
        let t = DbTarget::parse("DATABASE_URL", "postgres://bob:pw@db.example:6543/app%20db")
            .expect("valid");
        assert_eq!(t.addr(), "db.example:6543");
        assert_eq!(t.database, "app db");
        assert_eq!(t.user, "bob");
    }

    #[test]
    fn the_port_defaults_to_5432() {
        let t = DbTarget::parse("DATABASE_URL", "postgresql://127.0.0.1/x").expect("valid");
        assert_eq!(t.addr(), "127.0.0.1:5432");
        assert_eq!(t.user, "");
    }

    #[test]
    fn malformed_urls_name_their_origin() {
        for bad in [
            "not a url",
            "mysql://root@localhost/db",
            "postgres://user@localhost",
            "postgres://user@localhost/",
            "postgres://user@localhost:99999/db",
        ] {
            let e = DbTarget::parse("DATABASE_URL", bad).expect_err(bad);
            assert!(e.to_string().starts_with("DATABASE_URL "), "{e}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let e = DbTarget::parse("DATABASE_URL", "postgres://u:secret@h:badport/db")
            .expect_err("bad port");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
