//! [`RoleNames`]: the names of tenantry's three database roles in one deployment.
//!
//! By default every tenantry database of a server shares `tenantry_app`, `tenantry_bypass` and
//! `tenantry_directory`, so one leaked password opens all of them. A deployment may name its
//! own (`TENANTRY_APP_ROLE`, `TENANTRY_BYPASS_ROLE`, `TENANTRY_DIRECTORY_ROLE`, or
//! `TENANTRY_ROLE_PREFIX=acme_` for `acme_app`, `acme_bypass`, `acme_directory`). The migrations
//! create and grant those roles (`roles.sql` and `grants.sql` are written with the default names
//! and rewritten with these), record them in the table `tenantry_roles`, which
//! `tenantry_declare_tenant_table` and `tenantry doctor` read.

use std::fmt;

/// The three roles of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleNames {
    /// The request path's role (row-level security applies): default `tenantry_app`.
    pub app: String,
    /// Audited cross-tenant work (`BYPASSRLS`): default `tenantry_bypass`.
    pub bypass: String,
    /// Principal lookups and the tenant keys: default `tenantry_directory`.
    pub directory: String,
}

/// The default names, as tenantry's SQL files spell them.
const DEFAULTS: [&str; 3] = ["tenantry_app", "tenantry_bypass", "tenantry_directory"];

impl Default for RoleNames {
    fn default() -> Self {
        RoleNames {
            app: DEFAULTS[0].into(),
            bypass: DEFAULTS[1].into(),
            directory: DEFAULTS[2].into(),
        }
    }
}

/// A role name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNameError(pub String);

impl fmt::Display for RoleNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RoleNameError {}

impl RoleNames {
    /// `<prefix>app`, `<prefix>bypass` and `<prefix>directory`.
    pub fn with_prefix(prefix: &str) -> Result<Self, RoleNameError> {
        RoleNames {
            app: format!("{prefix}app"),
            bypass: format!("{prefix}bypass"),
            directory: format!("{prefix}directory"),
        }
        .checked()
    }

    /// Checks that each name is a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63
    /// bytes, not `pg_*`) and that the three differ.
    pub fn checked(self) -> Result<Self, RoleNameError> {
        for name in [&self.app, &self.bypass, &self.directory] {
            let mut chars = name.chars();
            let plain = chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain || name.len() > 63 || name.starts_with("pg_") {
                return Err(RoleNameError(format!(
                    "{name:?} is not a usable role name: lowercase letters, digits and _, not \
                     starting with a digit or pg_, at most 63 characters"
                )));
            }
        }
        if self.app == self.bypass || self.app == self.directory || self.bypass == self.directory {
            return Err(RoleNameError(format!(
                "the app, bypass and directory roles must differ (got {}, {}, {})",
                self.app, self.bypass, self.directory
            )));
        }
        Ok(self)
    }

    /// The three names, app first.
    pub fn all(&self) -> [&str; 3] {
        [&self.app, &self.bypass, &self.directory]
    }

    /// `sql` (written with the default names) with each default role name, as a whole word,
    /// replaced by this deployment's.
    pub(crate) fn rewrite(&self, sql: &str) -> String {
        let names = self.all();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut out = String::with_capacity(sql.len());
        let mut rest = sql;
        'scan: while !rest.is_empty() {
            for (default, name) in DEFAULTS.iter().zip(names) {
                if let Some(after) = rest.strip_prefix(default) {
                    let before_ok = !out.chars().next_back().is_some_and(word);
                    let after_ok = !after.chars().next().is_some_and(word);
                    if before_ok && after_ok {
                        out.push_str(name);
                        rest = after;
                        continue 'scan;
                    }
                }
            }
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    /// The default name that `role` stands for in this deployment (`tenantry_app` for the app
    /// role), or `role` itself.
    pub(crate) fn canonical<'a>(&self, role: &'a str) -> &'a str {
        match self.all().iter().position(|n| *n == role) {
            Some(i) => DEFAULTS[i],
            None => role,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_rewritten_word_by_word() {
        let roles = RoleNames::with_prefix("acme_").unwrap();
        assert_eq!(
            roles.rewrite(
                "GRANT x TO tenantry_app, tenantry_bypass; REVOKE y FROM tenantry_directory;\n\
                 SELECT tenantry_directory_changed(), tenantry_application, 'tenantry_app'"
            ),
            "GRANT x TO acme_app, acme_bypass; REVOKE y FROM acme_directory;\n\
             SELECT tenantry_directory_changed(), tenantry_application, 'acme_app'"
        );
        assert_eq!(RoleNames::default().rewrite("tenantry_app"), "tenantry_app");
        assert_eq!(roles.canonical("acme_bypass"), "tenantry_bypass");
        assert_eq!(roles.canonical("postgres"), "postgres");
    }

    #[test]
    fn names_are_plain_and_distinct() {
        assert!(RoleNames::with_prefix("Acme").is_err());
        assert!(RoleNames::with_prefix("a-b_").is_err());
        assert!(RoleNames::with_prefix("pg_").is_err());
        assert!(RoleNames::with_prefix(&"x".repeat(60)).is_err());
        let same = RoleNames {
            app: "a".into(),
            bypass: "a".into(),
            directory: "d".into(),
        };
        assert!(same.checked().is_err());
    }
}
