//! `tenantry migrate`: tenantry's own migrations, roles and grants.

use std::io::Write;

use diesel_async::AsyncPgConnection;

use crate::config::DbTarget;
use crate::error::CliError;

/// Applies what is missing and says what was done.
pub(super) async fn run(
    conn: AsyncPgConnection,
    target: &DbTarget,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let roles = crate::config::role_names()?;
    let applied = tenantry::migrations::migrate_roles(conn, &roles)
        .await?
        .applied;
    for version in &applied {
        writeln!(out, "applied {version}")?;
    }
    if applied.is_empty() {
        writeln!(
            out,
            "database {} on {} is already up to date (roles and grants checked)",
            target.database,
            target.addr()
        )?;
    } else {
        writeln!(
            out,
            "database {} on {} is up to date: {} migration(s) applied, roles {}, {} and {} granted",
            target.database,
            target.addr(),
            applied.len(),
            roles.app,
            roles.bypass,
            roles.directory
        )?;
    }
    Ok(())
}
