//! `tenantry rotate-tenant-key`: a new key of the tenant seal, the older ones expiring after a
//! grace period.

use std::io::Write;

use diesel::sql_types::{Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::CliError;

#[derive(diesel::QueryableByName)]
struct Rotated {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    grace: String,
}

/// Adds the key and says which it is and until when the older ones hold.
#[allow(
    clippy::disallowed_methods,
    reason = "the owner's call of tenantry's rotation function, the grace as a bind parameter"
)]
pub(super) async fn run(
    conn: &mut AsyncPgConnection,
    grace: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let rotated: Rotated = diesel::sql_query(format!(
        "SELECT {}.tenantry_rotate_tenant_key($1::interval) AS id, $1::interval::text AS grace",
        tenantry::schema::NAME
    ))
    .bind::<Text, _>(grace)
    .get_result(conn)
    .await
    .map_err(|e| match &e {
        diesel::result::Error::DatabaseError(_, info)
            if info
                .message()
                .contains("invalid input syntax for type interval") =>
        {
            CliError::Invalid {
                flag: "--grace",
                problem: format!(
                    "not a duration PostgreSQL reads ({grace:?}); write e.g. 1h, 30min, 0s"
                ),
            }
        }
        _ => CliError::from(e),
    })?;
    writeln!(
        out,
        "tenant key {} added; older keys expire after {} (instances switch within 30 s)",
        rotated.id, rotated.grace
    )?;
    Ok(())
}
