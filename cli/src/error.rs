//! The CLI's error type and its exit codes, in one place.

use thiserror::Error;

/// Exit codes of `tenantry`; `tenantry --help` lists them (see [`crate::args::EXIT_CODES`]).
pub(crate) mod exit {
    /// A check failed (`doctor` found problems, `audit --verify` a broken chain).
    pub(crate) const FAILED: u8 = 1;
    /// Bad usage or configuration: a flag, an argument value or a setting is wrong.
    pub(crate) const USAGE: u8 = 2;
    /// The database could not be reached or refused the login.
    pub(crate) const UNAVAILABLE: u8 = 3;
    /// Something the command needs does not exist (a tenant, tenantry's tables).
    pub(crate) const NOT_FOUND: u8 = 4;
    /// A statement or a migration failed in the database.
    pub(crate) const DATABASE: u8 = 5;
}

/// Everything that makes a command fail; each variant prints as one line.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// `DATABASE_URL`, `--database-url` or `TENANTRY_APP_DATABASE_URL` is malformed.
    #[error("{origin} is not a usable PostgreSQL URL: {problem}")]
    BadUrl {
        /// Where the URL came from (the variable or flag).
        origin: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An argument value is malformed (an email, a slug, a name).
    #[error("{flag}: {problem}")]
    Invalid {
        /// The flag at fault, e.g. `--email`.
        flag: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// Nothing answers at the URL's address.
    #[error(
        "cannot reach PostgreSQL at {addr} (from {origin}): {detail}; start PostgreSQL there \
         (e.g. `pg_ctlcluster <version> main start`) or point {origin} at a running server"
    )]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// Where the URL came from.
        origin: &'static str,
        /// The driver's reason.
        detail: String,
    },
    /// The server answers but the database of the URL does not exist.
    #[error(
        "database {database:?} does not exist on {addr}: create it \
         (`createdb -h {host} -p {port} {database}`) or fix {origin}"
    )]
    MissingDatabase {
        /// The database name.
        database: String,
        /// `host:port`.
        addr: String,
        /// The host alone.
        host: String,
        /// The port alone.
        port: u16,
        /// Where the URL came from.
        origin: &'static str,
    },
    /// The server refused the connection (authentication, unknown role, …).
    #[error("PostgreSQL at {addr} refused the connection (from {origin}): {detail}")]
    Refused {
        /// `host:port`.
        addr: String,
        /// Where the URL came from.
        origin: &'static str,
        /// The server's reason.
        detail: String,
    },
    /// tenantry's tables are missing: `tenantry migrate` has not run on this database.
    #[error(
        "tenantry's tables are missing in database {database:?}: run `tenantry migrate` first"
    )]
    NotMigrated {
        /// The database name.
        database: String,
    },
    /// `--tenant SLUG` names no tenant.
    #[error(
        "no tenant with slug {slug:?}; create it first: \
         tenantry seed-tenant --name \"…\" --slug {slug}"
    )]
    TenantNotFound {
        /// The slug given.
        slug: String,
    },
    /// tenantry's migrations failed.
    #[error(transparent)]
    Migrate(#[from] tenantry::MigrateError),
    /// A statement failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// `doctor` found problems (already printed).
    #[error("doctor found {0} problem(s); see above")]
    Findings(usize),
    /// `citus-plan` found rules of Citus the schema breaks (already printed).
    #[error(
        "the schema is not ready for Citus: {0} problem(s), see above (`tenantry doctor --citus`)"
    )]
    NotReadyForCitus(usize),
    /// `audit --verify` found the hash chain broken (every break already printed).
    #[error("the audit chain is broken at {first}{more}")]
    ChainBroken {
        /// The first break, naming its row.
        first: String,
        /// `"; N problems in all, listed above"`, or nothing when there is one.
        more: String,
    },
    /// The metrics endpoint could not be read.
    #[error(
        "cannot read the metrics at {url}: {detail}; point --url (or TENANTRY_METRICS_URL) at a \
         running instance's metrics endpoint (the example app serves it on TENANTRY_METRICS_BIND)"
    )]
    MetricsUnreachable {
        /// The URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The URL answered, but with no tenantry metrics.
    #[error("{url} answered without tenantry's per-tenant metrics: is it an instance's metrics endpoint?")]
    NotMetrics {
        /// The URL.
        url: String,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Findings(_)
            | CliError::NotReadyForCitus(_)
            | CliError::ChainBroken { .. }
            | CliError::Output(_) => exit::FAILED,
            CliError::BadUrl { .. } | CliError::Invalid { .. } => exit::USAGE,
            CliError::Unreachable { .. }
            | CliError::MissingDatabase { .. }
            | CliError::Refused { .. }
            | CliError::MetricsUnreachable { .. } => exit::UNAVAILABLE,
            CliError::NotMigrated { .. }
            | CliError::TenantNotFound { .. }
            | CliError::NotMetrics { .. } => exit::NOT_FOUND,
            CliError::Migrate(_) | CliError::Database(_) => exit::DATABASE,
        }
    }
}
