//! The principal: a verified identity mapped to its `users` row and memberships.

use diesel::sql_types::{Bool, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::auth::{AuthError, Identity};
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

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Bool)]
    is_owner: bool,
    #[diesel(sql_type = Nullable<Text>)]
    cf_sub: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    tenant_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    role: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    slug: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

const LOOKUP: &str =
    "SELECT u.id, u.email, u.is_owner, u.cf_sub, m.tenant_id, m.role, t.slug, t.name \
     FROM users u \
     LEFT JOIN memberships m ON m.user_id = u.id \
     LEFT JOIN tenants t ON t.id = m.tenant_id \
     WHERE lower(u.email) = lower($1) \
     ORDER BY t.slug";

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
    let rows: Vec<Row> = diesel::sql_query(LOOKUP)
        .bind::<Text, _>(identity.email())
        .load(&mut *conn)
        .await
        .map_err(|e| unavailable(&e))?;
    let Some(first) = rows.as_slice().first() else {
        return Err(AuthError::NotProvisioned(identity.email().to_owned()));
    };
    let (user_id, email, is_owner, stored_sub) = (
        first.id,
        first.email.clone(),
        first.is_owner,
        first.cf_sub.clone(),
    );
    let memberships = rows
        .into_iter()
        .filter_map(|r| {
            Some(Membership {
                tenant_id: r.tenant_id?,
                slug: r.slug?,
                name: r.name?,
                role: TenantRole::parse(r.role.as_deref()?)?,
            })
        })
        .collect();
    if let Identity::User { sub: Some(sub), .. } = identity {
        if stored_sub.as_deref() != Some(sub.as_str()) {
            let updated = diesel::sql_query("UPDATE users SET cf_sub = $1 WHERE id = $2")
                .bind::<Text, _>(sub)
                .bind::<SqlUuid, _>(user_id)
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
