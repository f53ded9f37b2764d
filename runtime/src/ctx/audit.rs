//! Writing `audit_log` rows (in the same transaction as the work they permit), through
//! `tenantry_audit_write`, the only way tenantry's roles write one: the server assigns the row's
//! id and time, and links it into the hash chain when the transaction commits
//! (see [`crate::schema::audit_chain`]).

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::ctx::Actor;
use uuid::Uuid;

/// One audit row to write.
pub(crate) struct AuditEntry<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) action: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) tenant_id: Option<Uuid>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) location: Option<&'a str>,
}

impl AuditEntry<'_> {
    /// `SELECT tenantry_audit_write($1, .., $7)`: one statement with bind parameters and a
    /// static query id, so Diesel prepares it once per connection.
    fn statement(&self) -> impl QueryFragment<Pg> + QueryId + Send + '_ {
        AuditWrite {
            entry: self,
            user_id: self.actor.user_id(),
        }
    }

    /// Writes the row (one round trip); the caller's transaction decides whether it (and the
    /// work) commits.
    pub(crate) async fn write(&self, mut conn: &AsyncPgConnection) -> diesel::QueryResult<()> {
        self.statement().execute(&mut conn).await.map(|_| ())
    }
}

/// `SELECT <schema>.tenantry_audit_write($1, .., $7)` (migration `00000000000007`): appends one
/// `audit_log` row and returns its id. Written out rather than declared with Diesel's
/// `declare_sql_function`, whose `sql_name` must be a literal: the schema is `TENANTRY_SCHEMA`.
struct AuditWrite<'a> {
    entry: &'a AuditEntry<'a>,
    user_id: Option<Uuid>,
}

impl QueryId for AuditWrite<'_> {
    type QueryId = AuditWrite<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for AuditWrite<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
        let e = self.entry;
        out.push_sql(concat!("SELECT ", schema_name!(), ".tenantry_audit_write("));
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(e.actor.email())?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(e.action)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(e.reason)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&e.tenant_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&e.request_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&e.location)?;
        out.push_sql(")");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_is_a_cached_prepared_call() {
        let actor = Actor::job("nightly");
        let entry = AuditEntry {
            actor: &actor,
            action: "job",
            reason: "send reminders",
            tenant_id: None,
            request_id: None,
            location: None,
        };
        fn static_id<Q: QueryId>(_: &Q) -> Option<std::any::TypeId> {
            Q::query_id()
        }
        let query = entry.statement();
        assert!(
            static_id(&query).is_some(),
            "a static query id: Diesel caches the prepared statement"
        );
        assert!(QueryFragment::<Pg>::is_safe_to_cache_prepared(&query, &Pg).unwrap());
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with(concat!(
                "SELECT ",
                schema_name!(),
                ".tenantry_audit_write($1, $2, $3, $4, $5, $6, $7)"
            )),
            "{sql}"
        );
    }
}
