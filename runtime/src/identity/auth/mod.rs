//! Authentication: who makes a request. The [`Authenticator`] of the configured mode (Cloudflare
//! Access in `cloudflare/`, the dev mode in `dev.rs`, the trusted header in `trusted_header.rs`)
//! turns a request into an [`Identity`]; [`AuthError`] is every refusal of authentication and
//! authorization, with its HTTP status, stable JSON code and response (`error.rs`). What an
//! identity may do (principals, tenants, roles, extractors) is `crate::identity`'s.

mod authenticator;
pub mod cloudflare;
pub(crate) mod dev;
mod error;
mod trusted_header;

pub use authenticator::Authenticator;
pub use dev::{mark_dev_mode, DEV_USER_HEADER};
pub use error::AuthError;
pub use trusted_header::TRUSTED_EMAIL_HEADER;

/// A verified identity, before it is mapped to a `users` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A person signed in through Cloudflare Access (or the dev / trusted-header modes).
    User {
        /// The email claim, as sent (compare case-insensitively).
        email: String,
        /// The token's `sub` (Cloudflare changes it when a user is removed and re-added), if any.
        sub: Option<String>,
    },
    /// A Cloudflare Access service token: it maps to the service identity (a `users` row of
    /// kind `service`, made with `tenantry add-user --service-token`) whose key is
    /// `common_name`, `<client id>.access`.
    Service {
        /// The service token's client id.
        common_name: String,
    },
}

impl Identity {
    /// The email the identity maps to (a service token's common name).
    pub fn email(&self) -> &str {
        match self {
            Identity::User { email, .. } => email,
            Identity::Service { common_name } => common_name,
        }
    }

    /// The kind of `users` row the identity maps to: `person` or `service` (`users.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::User { .. } => "person",
            Identity::Service { .. } => "service",
        }
    }
}

/// Whether `name` has the shape of a Cloudflare Access service token's common name,
/// `<client id>.access` (letters, digits, `-` and `_` before `.access`, no `@`): the shape
/// `users.kind = 'service'` requires.
pub fn is_service_common_name(name: &str) -> bool {
    name.len() <= 253
        && name.strip_suffix(".access").is_some_and(|id| {
            id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
