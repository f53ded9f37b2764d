//! Writing `audit_log` rows (in the same transaction as the work they permit), through
//! `tenantry_audit_write`, the only way tenantry's roles write one: the server assigns the row's
//! id and time, and links it into the hash chain when the transaction commits
//! (see [`crate::schema::audit_chain`]).

use diesel::pg::Pg;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::ctx::Actor;
use uuid::Uuid;

mod sql {
    //! The SQL function that writes a row.
    #![allow(missing_docs, unreachable_pub)]
    use diesel::sql_types::{Nullable, Text, Uuid};

    #[diesel::declare_sql_function]
    extern "SQL" {
        /// Appends one `audit_log` row and returns its id (migration `00000000000007`).
        #[sql_name = "tenantry.tenantry_audit_write"]
        fn tenantry_audit_write(
            actor_user_id: Nullable<Uuid>,
            actor_email: Text,
            action: Text,
            reason: Text,
            tenant_id: Nullable<Uuid>,
            request_id: Nullable<Text>,
            location: Nullable<Text>,
        ) -> BigInt;
    }
}

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
        diesel::select(sql::tenantry_audit_write(
            self.actor.user_id(),
            self.actor.email(),
            self.action,
            self.reason,
            self.tenant_id,
            self.request_id,
            self.location,
        ))
    }

    /// Writes the row (one round trip); the caller's transaction decides whether it (and the
    /// work) commits.
    pub(crate) async fn write(&self, mut conn: &AsyncPgConnection) -> diesel::QueryResult<()> {
        self.statement().execute(&mut conn).await.map(|_| ())
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
            sql.starts_with("SELECT tenantry.tenantry_audit_write($1, $2, $3, $4, $5, $6, $7)"),
            "{sql}"
        );
    }
}
