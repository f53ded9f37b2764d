//! `tenantry citus-plan`: the DDL that shards the database with Citus, in dependency order
//! (`tenantry::citus::check`).

use std::io::Write;

use diesel_async::AsyncPgConnection;

use crate::error::CliError;

/// Prints the plan as SQL, or the problems that stand in its way (exit 1).
pub(super) async fn run(
    conn: &mut AsyncPgConnection,
    app_role: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let report = tenantry::citus::check(conn).await?;
    if !report.is_ok() {
        super::doctor::print_citus(&report.findings, out)?;
        return Err(CliError::NotReadyForCitus(report.findings.len()));
    }
    write!(out, "{}", report.script(app_role))?;
    Ok(())
}
