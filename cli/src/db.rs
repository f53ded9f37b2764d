//! Opening the connection: a bounded wait and errors that say what to start or fix.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::ConnectionError;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::config::DbTarget;
use crate::error::CliError;

/// How long to wait for the server before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `target`, turning driver errors into a [`CliError`] that names the address.
pub(crate) async fn connect(target: &DbTarget) -> Result<AsyncPgConnection, CliError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tenantry::tls::establish(&target.url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(target, &e).await),
        Err(_) => Err(CliError::Unreachable {
            addr: target.addr(),
            origin: target.origin,
            detail: format!("no answer within {} seconds", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

async fn classify(target: &DbTarget, e: &ConnectionError) -> CliError {
    let (server_answered, detail) = match e {
        // diesel-async reports driver errors as a database error: with a SQLSTATE (any kind
        // but `UnableToSendCommand`) when the server answered, without one for I/O failures.
        ConnectionError::CouldntSetupConfiguration(DieselError::DatabaseError(kind, info)) => (
            !matches!(kind, DatabaseErrorKind::UnableToSendCommand),
            info.message().to_owned(),
        ),
        ConnectionError::InvalidConnectionUrl(m) => {
            return CliError::BadUrl {
                origin: target.origin,
                problem: m.clone(),
            }
        }
        other => (false, other.to_string()),
    };
    if server_answered && detail.contains("does not exist") && detail.starts_with("database ") {
        return CliError::MissingDatabase {
            database: target.database.clone(),
            addr: target.addr(),
            host: target.host.clone(),
            port: target.port,
            origin: target.origin,
        };
    }
    if server_answered {
        CliError::Refused {
            addr: target.addr(),
            origin: target.origin,
            detail,
        }
    } else {
        CliError::Unreachable {
            addr: target.addr(),
            origin: target.origin,
            detail: probe(target).await.unwrap_or(detail),
        }
    }
}

/// The driver's message drops the I/O cause ("error connecting to server"); a plain TCP
/// connection to the same address tells it ("Connection refused", "Network is unreachable").
async fn probe(target: &DbTarget) -> Option<String> {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let attempt = tokio::net::TcpStream::connect((host, target.port));
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 5 seconds".to_owned()),
    }
}

/// Fails with [`CliError::NotMigrated`] unless tenantry's four tables exist.
#[allow(
    clippy::disallowed_methods,
    reason = "a literal probe of the migrations table, outside any tenant transaction"
)]
pub(crate) async fn require_migrated(
    conn: &mut AsyncPgConnection,
    target: &DbTarget,
) -> Result<(), CliError> {
    let s = tenantry::schema::NAME;
    let present: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "to_regclass('{s}.tenants') IS NOT NULL AND to_regclass('{s}.users') IS NOT NULL \
         AND to_regclass('{s}.memberships') IS NOT NULL \
         AND to_regclass('{s}.audit_log') IS NOT NULL",
    )))
    .get_result(conn)
    .await?;
    if present {
        Ok(())
    } else {
        Err(CliError::NotMigrated {
            database: target.database.clone(),
        })
    }
}
