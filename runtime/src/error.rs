//! Errors of the database layer and of scoping.

use thiserror::Error;

/// An error from a tenant transaction, a bypass or the pools behind them.
#[derive(Debug, Error)]
pub enum DbError {
    /// A query failed (this includes `NotFound` from `.first`/`.get_result`).
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// No connection could be taken from the pool.
    #[error("database pool: {0}")]
    Pool(String),
    /// A connection could not be established.
    #[error("database connection: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// The role of the tenant pool ignores row-level security.
    #[error(
        "the tenant connection's role `{role}` is a superuser or has BYPASSRLS, so row-level security would not apply; connect with a role like `tenantry_app` (NOSUPERUSER NOBYPASSRLS)"
    )]
    PrivilegedAppRole {
        /// The offending role.
        role: String,
    },
    /// No bypass pool was configured, yet a bypass was opened.
    #[error("no bypass database URL is configured, so audited cross-tenant work cannot run")]
    NoBypassPool,
    /// A settings or URL problem found while building the pools.
    #[error("{0}")]
    Config(String),
}

impl DbError {
    /// Whether this is Diesel's `NotFound` (no row matched, which includes another tenant's row).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
    }
}

/// An error opening an audited bypass.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScopeError {
    /// The bypass reason was empty or only whitespace.
    #[error(
        "a bypass needs a non-empty reason: the audit log records why tenant isolation was lifted"
    )]
    EmptyReason,
}
