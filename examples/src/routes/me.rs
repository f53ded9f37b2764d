//! `GET /api/me`.

use axum::Json;
use serde_json::{json, Value};
use tenantry::identity::CurrentUser;

/// The user, its tenants and the active tenant (when `X-Tenant` names one or there is only one).
pub async fn me(user: CurrentUser) -> Json<Value> {
    let p = &user.principal;
    Json(json!({
        "user": { "id": p.user_id(), "email": p.email() },
        "is_owner": p.is_owner(),
        "tenants": p.memberships().iter().map(|m| json!({
            "id": m.tenant_id, "slug": m.slug, "name": m.name, "role": m.role.as_str(),
        })).collect::<Vec<_>>(),
        "active_tenant": user.active_tenant.as_ref().map(|t| json!({
            "id": t.id, "slug": t.slug, "name": t.name,
        })),
    }))
}
