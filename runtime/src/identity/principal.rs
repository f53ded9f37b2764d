//! The principal: a verified identity mapped to its `users` row and memberships.

use diesel::{ExpressionMethods, NullableExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::auth::{AuthError, Identity};
use crate::schema::{memberships, tenants, users};
use crate::Db;

/// A role inside one tenant, as stored in `memberships.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    /// Read only.
    ClientViewer,
    /// Read and write.
    Partner,
    /// The global Owner acting inside a tenant (never stored in `memberships`).
    Owner,
}

impl TenantRole {
    /// The stored / JSON name (`client_viewer`, `partner`, `owner`).
    pub fn as_str(self) -> &'static str {
        match self {
            TenantRole::ClientViewer => "client_viewer",
            TenantRole::Partner => "partner",
            TenantRole::Owner => "owner",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "client_viewer" => Some(TenantRole::ClientViewer),
            "partner" => Some(TenantRole::Partner),
            _ => None,
        }
    }
}

/// One tenant a principal belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The tenant's id.
    pub tenant_id: Uuid,
    /// The tenant's slug.
    pub slug: String,
    /// The tenant's name.
    pub name: String,
    /// The principal's role there.
    pub role: TenantRole,
}

/// A provisioned user making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `users.id`.
    pub user_id: Uuid,
    /// `users.email` as stored.
    pub email: String,
    /// `users.is_owner`: the global Owner role.
    pub is_owner: bool,
    /// Memberships, by tenant slug.
    pub memberships: Vec<Membership>,
}

impl Principal {
    /// The membership in `tenant_id`, if any.
    pub fn membership(&self, tenant_id: Uuid) -> Option<&Membership> {
        self.memberships.iter().find(|m| m.tenant_id == tenant_id)
    }

    /// The actor recorded in audit rows.
    pub fn actor(&self) -> crate::Actor {
        crate::Actor::user(self.user_id, self.email.clone())
    }
}

diesel::define_sql_function! {
    /// SQL `lower(text)`.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A user row with one of its memberships (if any) and that membership's tenant.
type Row = (
    Uuid,
    String,
    bool,
    Option<String>,
    Option<(Uuid, String, String, String)>,
);

/// Maps `identity` to its principal in one round trip: the user by case-insensitive email (a
/// service token by its common name) and its memberships. Unknown identity → `NotProvisioned`.
///
/// When the token's `sub` differs from the stored one (Cloudflare issues a new `sub` when a user
/// is removed and re-added), the stored `sub` is updated; the email stays the key.
pub async fn load_principal(db: &Db, identity: &Identity) -> Result<Principal, AuthError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "principal lookup failed");
        AuthError::Unavailable("the user directory is unavailable".into())
    };
    let mut conn = db.global_conn().await.map_err(|e| unavailable(&e))?;
    // Built with the query builder (not `sql_query`) so that the prepared statement is cached
    // per connection: one round trip, no planning per request.
    let rows: Vec<Row> = users::table
        .left_join(memberships::table.inner_join(tenants::table))
        .filter(lower(users::email).eq(lower(identity.email())))
        .select((
            users::id,
            users::email,
            users::is_owner,
            users::cf_sub,
            (
                memberships::tenant_id,
                memberships::role,
                tenants::slug,
                tenants::name,
            )
                .nullable(),
        ))
        .order(tenants::slug.nullable().asc())
        .load(&mut *conn)
        .await
        .map_err(|e| unavailable(&e))?;
    let Some(first) = rows.as_slice().first() else {
        return Err(AuthError::NotProvisioned(identity.email().to_owned()));
    };
    let (user_id, email, is_owner, stored_sub) =
        (first.0, first.1.clone(), first.2, first.3.clone());
    let memberships = rows
        .into_iter()
        .filter_map(|(.., m)| {
            let (tenant_id, role, slug, name) = m?;
            Some(Membership {
                tenant_id,
                slug,
                name,
                role: TenantRole::parse(&role)?,
            })
        })
        .collect();
    if let Identity::User { sub: Some(sub), .. } = identity {
        if stored_sub.as_deref() != Some(sub.as_str()) {
            let updated = diesel::update(users::table.find(user_id))
                .set(users::cf_sub.eq(sub))
                .execute(&mut *conn)
                .await;
            if let Err(e) = updated {
                tracing::warn!(error = %e, %user_id, "could not record the token's new sub");
            }
        }
    }
    Ok(Principal {
        user_id,
        email,
        is_owner,
        memberships,
    })
}
