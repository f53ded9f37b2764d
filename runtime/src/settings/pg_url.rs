//! [`PgUrl`]: the one parser of PostgreSQL URLs (for the settings, the `tenantry` command and
//! the example app), and [`redact`], which hides a URL's password in every message.

use percent_encoding::percent_decode_str;
use thiserror::Error;

/// A validated `postgres://` or `postgresql://` URL with a host and a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    url: url::Url,
    /// Host name or address (IPv6 in brackets).
    pub host: String,
    /// Port (5432 when the URL gives none).
    pub port: u16,
    /// Database name, percent-decoded.
    pub database: String,
    /// User name, percent-decoded; empty when the URL names none.
    pub user: String,
}

/// Why a URL is not a usable PostgreSQL URL; messages never show a password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PgUrlError {
    /// It does not parse as a URL.
    #[error("not a URL ({reason}): {redacted}")]
    NotAUrl {
        /// The parser's reason.
        reason: String,
        /// The value, password hidden.
        redacted: String,
    },
    /// The scheme is not `postgres` or `postgresql`.
    #[error("must start with postgres:// or postgresql:// (got {0:?})")]
    Scheme(String),
    /// No host.
    #[error("names no host (postgres://user@HOST:5432/database)")]
    NoHost,
    /// No database.
    #[error("names no database (postgres://user@host:5432/DATABASE)")]
    NoDatabase,
    /// The path is not one database name.
    #[error("{0:?} is not a database name")]
    BadDatabase(String),
}

impl PgUrl {
    /// Parses and checks `value`.
    pub fn parse(value: &str) -> Result<Self, PgUrlError> {
        let url = url::Url::parse(value).map_err(|e| PgUrlError::NotAUrl {
            reason: e.to_string(),
            redacted: redact(value),
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(PgUrlError::Scheme(redact(value)));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err(PgUrlError::NoHost),
        };
        let database = decode(url.path().trim_start_matches('/'));
        if database.is_empty() {
            return Err(PgUrlError::NoDatabase);
        }
        if database.contains('/') {
            return Err(PgUrlError::BadDatabase(database));
        }
        Ok(PgUrl {
            port: url.port().unwrap_or(5432),
            user: decode(url.username()),
            host,
            database,
            url,
        })
    }

    /// The URL as parsed.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The same server and database as `role`, without a password (trust or peer logins).
    pub fn with_role(&self, role: &str) -> String {
        let mut u = self.url.clone();
        let _ = u.set_username(role);
        let _ = u.set_password(None);
        u.to_string()
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `value` with any password replaced by `***`, even when it does not parse as a URL.
pub fn redact(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => value.to_owned(),
        },
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_url_is_split() {
        let t = PgUrl::parse("postgres://bob:pw@db.example:6543/app%20db").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("db.example", 6543));
        assert_eq!(t.database, "app db");
        assert_eq!(t.user, "bob");
        assert_eq!(
            t.with_role("tenantry_app"),
            "postgres://tenantry_app@db.example:6543/app%20db"
        );
    }

    #[test]
    fn malformed_urls_say_why_without_the_password() {
        for (bad, needle) in [
            ("not a url", "not a URL"),
            ("mysql://root@localhost/db", "postgres://"),
            ("postgres://user@localhost", "no database"),
            ("postgres://user@localhost/a/b", "not a database name"),
            ("postgres://u:secret@h:badport/db", "not a URL"),
        ] {
            let e = PgUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:x/db"),
            "postgres://u:***@h:x/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("garbage"), "garbage");
    }
}
