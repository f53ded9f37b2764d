//! Identity: who makes a request (Cloudflare Access, dev mode, trusted header), and the errors
//! of authentication and authorization with their HTTP status and stable JSON code.

pub mod cloudflare;
mod error;

pub use error::AuthError;

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
    /// A Cloudflare Access service token: it maps to the user whose email equals `common_name`.
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
}
