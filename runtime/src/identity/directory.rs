//! The narrow path into the directory: calls of the `SECURITY DEFINER` functions of migrations
//! `0002_directory` and `0004_service_identities` (the app role cannot read `users`, `tenants`
//! or `memberships` whole).
//!
//! Each call is its own query type with a static query id, so its prepared statement is cached
//! per connection: one round trip, no planning per request.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryResult;
use uuid::Uuid;

/// `tenantry_principal($key, $kind)`: the user of this kind (`person` by email, `service` by
/// the service token's common name) and one row per membership.
#[derive(Debug, QueryId)]
pub(crate) struct PrincipalRows {
    pub(crate) email: String,
    pub(crate) kind: &'static str,
}

/// A row of [`PrincipalRows`]: user id, email, is_owner, stored sub, and the membership's
/// tenant id, role, slug and name (all `None` for a user without memberships).
pub(crate) type PrincipalRow = (
    Uuid,
    String,
    bool,
    Option<String>,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Query for PrincipalRows {
    type SqlType = (
        SqlUuid,
        Text,
        Bool,
        Nullable<Text>,
        Nullable<SqlUuid>,
        Nullable<Text>,
        Nullable<Text>,
        Nullable<Text>,
    );
}

impl QueryFragment<Pg> for PrincipalRows {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(concat!(
            "SELECT user_id, email, is_owner, cf_sub, tenant_id, role, slug, name FROM ",
            schema_name!(),
            ".tenantry_principal(",
        ));
        out.push_bind_param::<Text, _>(&self.email)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.kind)?;
        out.push_sql(")");
        Ok(())
    }
}

/// `tenantry_owner_tenant($owner, $id, $slug)`: the tenant an Owner names by id or, when `id`
/// is `None`, by slug.
#[derive(Debug, QueryId)]
pub(crate) struct OwnerTenant {
    pub(crate) owner: Uuid,
    pub(crate) id: Option<Uuid>,
    pub(crate) slug: Option<String>,
}

impl Query for OwnerTenant {
    type SqlType = (SqlUuid, Text, Text);
}

impl QueryFragment<Pg> for OwnerTenant {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(concat!(
            "SELECT id, slug, name FROM ",
            schema_name!(),
            ".tenantry_owner_tenant("
        ));
        out.push_bind_param::<SqlUuid, _>(&self.owner)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.slug)?;
        out.push_sql(")");
        Ok(())
    }
}

/// `tenantry_record_sub($user, $sub)`: records the token's `sub` beside a user that has none
/// yet; returns the stored one.
#[derive(Debug, QueryId)]
pub(crate) struct RecordSub {
    pub(crate) user: Uuid,
    pub(crate) sub: String,
}

impl Query for RecordSub {
    type SqlType = Nullable<Text>;
}

impl QueryFragment<Pg> for RecordSub {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(concat!("SELECT ", schema_name!(), ".tenantry_record_sub("));
        out.push_bind_param::<SqlUuid, _>(&self.user)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.sub)?;
        out.push_sql(")");
        Ok(())
    }
}
