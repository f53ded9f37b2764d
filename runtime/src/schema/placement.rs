//! Where a database holds tenantry's objects: in this build's schema ([`NAME`]), or in another
//! one, which a `tenantry` CLI or an application built with another `TENANTRY_SCHEMA` migrated
//! (or `public`, where tenantry's migrations before `00000000000013` left them). The start of an
//! application, `tenantry migrate` and `tenantry doctor` each stop on the second with
//! [`mismatch`]'s message.

use diesel::sql_types::{Bool, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::tables::NAME;

/// The schemas that hold tenantry's bookkeeping of declarations (`tenantry_declared_tables`,
/// made by its first migration), this build's first. Readable by any role (the catalog).
const SCHEMAS_SQL: &str = "SELECT n.nspname::text AS schema FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relname = 'tenantry_declared_tables' AND c.relkind = 'r' \
     ORDER BY n.nspname = $1 DESC, n.nspname";

#[derive(QueryableByName)]
struct Schema {
    #[diesel(sql_type = Text)]
    schema: String,
}

/// The schema that holds tenantry's objects when this build's does not, if one does.
#[allow(
    clippy::disallowed_methods,
    reason = "a literal catalog probe, outside any tenant transaction"
)]
pub(crate) async fn elsewhere(conn: &AsyncPgConnection) -> diesel::QueryResult<Option<String>> {
    let mut conn = conn;
    let found: Vec<Schema> = diesel::sql_query(SCHEMAS_SQL)
        .bind::<Text, _>(NAME)
        .load(&mut conn)
        .await?;
    Ok(match found.into_iter().next() {
        Some(s) if s.schema != NAME => Some(s.schema),
        _ => None,
    })
}

/// The schema that holds tenantry's objects when a build with another `TENANTRY_SCHEMA` migrated
/// the database: they are elsewhere, and migration `00000000000013` (which moves the objects of
/// an earlier layout into this build's schema) is already recorded, so nothing would move them.
#[allow(
    clippy::disallowed_methods,
    reason = "a literal probe of Diesel's bookkeeping on the migration connection"
)]
pub(crate) async fn migrated_elsewhere(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Option<String>> {
    let Some(found) = elsewhere(conn).await? else {
        return Ok(None);
    };
    let moved: bool = diesel::select(diesel::dsl::sql::<Bool>(
        "EXISTS (SELECT 1 FROM __diesel_schema_migrations WHERE version = '00000000000013')",
    ))
    .get_result(conn)
    .await?;
    Ok(moved.then_some(found))
}

/// Why this build cannot use a database whose tenantry objects are in the schema `found`, and
/// what to do: it names `TENANTRY_SCHEMA` and both schemas.
pub(crate) fn mismatch(found: &str) -> String {
    if found == "public" {
        format!(
            "tenantry's tables are in the schema `public`, where its migrations before \
             00000000000013 left them, and this build of tenantry uses the schema `{NAME}` \
             (TENANTRY_SCHEMA when it was built): run `tenantry migrate` with a CLI built with \
             TENANTRY_SCHEMA={NAME}, which moves them"
        )
    } else {
        format!(
            "tenantry's tables are in the schema `{found}`, but this build of tenantry uses the \
             schema `{NAME}` (TENANTRY_SCHEMA when it was built): the application and the \
             `tenantry` CLI that migrates its database must be built with the same \
             TENANTRY_SCHEMA; build both with TENANTRY_SCHEMA={found}"
        )
    }
}
