//! Writing `audit_log` rows (in the same transaction as the work they permit).

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::ctx::Actor;
use crate::schema::audit_log;
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
    /// Inserts the row; the caller's transaction decides whether it (and the work) commits.
    pub(crate) async fn write(&self, mut conn: &AsyncPgConnection) -> diesel::QueryResult<()> {
        use diesel::ExpressionMethods;
        diesel::insert_into(audit_log::table)
            .values((
                audit_log::actor_user_id.eq(self.actor.user_id()),
                audit_log::actor_email.eq(self.actor.email()),
                audit_log::action.eq(self.action),
                audit_log::reason.eq(self.reason),
                audit_log::tenant_id.eq(self.tenant_id),
                audit_log::request_id.eq(self.request_id),
                audit_log::location.eq(self.location),
            ))
            .execute(&mut conn)
            .await
            .map(|_| ())
    }
}
