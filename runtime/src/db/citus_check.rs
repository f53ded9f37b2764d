//! At start, on Citus: the app role must propagate `SET LOCAL` to the workers
//! (`citus.propagate_set_commands = 'local'`), or the tenant seal, which `tenantry_enter` writes
//! with `SET LOCAL`, never reaches them, and every tenant silently sees nothing of its
//! distributed tables (and its writes fail). Checked only where Citus already places tables;
//! a database without citus, or not sharded yet, passes.

use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::{in_read_only_tx, DbError};
use crate::pool::Pooled;

/// Whether the database has citus; refuses the start when the app role's session would not send
/// the seal to the workers, naming the setting and the statement that fixes it.
#[allow(
    clippy::disallowed_methods,
    reason = "literal catalog probes at start, outside any tenant transaction"
)]
pub(super) async fn check_set_commands(
    conn: &Pooled,
    role: &str,
    setting: &str,
) -> Result<bool, DbError> {
    let (citus, value): (bool, Option<String>) = in_read_only_tx(conn, async |c| {
        let citus: bool = diesel::select(diesel::dsl::sql::<Bool>(
            "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
        ))
        .get_result(c)
        .await?;
        if !citus {
            return Ok((false, Some("local".to_owned())));
        }
        let value = diesel::select(diesel::dsl::sql::<Nullable<Text>>(
            "CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition) \
             THEN current_setting('citus.propagate_set_commands', true) ELSE 'local' END",
        ))
        .get_result(c)
        .await?;
        Ok((true, value))
    })
    .await?;
    match value.as_deref() {
        Some("local") => Ok(citus),
        other => Err(DbError::Config(format!(
            "{setting}: role {role} has citus.propagate_set_commands = {} on this Citus database, \
             so the tenant seal would not reach the workers and every tenant would see nothing \
             there: ALTER ROLE {role} SET citus.propagate_set_commands = 'local' (the script of \
             `tenantry citus-plan` does)",
            other.unwrap_or("(unset)")
        ))),
    }
}
