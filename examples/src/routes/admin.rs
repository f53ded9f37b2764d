//! Owner-only, cross-tenant routes. Each call opens one audited bypass: one `audit_log` row.

use axum::extract::State;
use axum::response::Html;
use axum::Json;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry::audit_chain::{self, ChainHead};
use tenantry::identity::OwnerProof;
use tenantry::prelude::*;
use tenantry::schema::audit_log;
use tenantry::{no_tenant_scope, requires_role, BypassConn};

use crate::admin_page;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{limit, ApiQuery};

/// One tenant of the cross-tenant summary.
#[derive(Serialize, QueryableByName)]
pub struct TenantSummary {
    #[diesel(sql_type = SqlUuid)]
    pub id: uuid::Uuid,
    #[diesel(sql_type = Text)]
    pub slug: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = BigInt)]
    pub invoice_count: i64,
    #[diesel(sql_type = Text)]
    #[serde(serialize_with = "raw_json")]
    pub totals: String,
}

fn raw_json<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    serde_json::from_str::<Value>(text)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// `invoice_count` counts all invoices; `totals` sums non-void invoices per currency. Aggregated
/// per tenant first, then joined with `tenants`: on Citus the aggregate runs on each shard (grouped
/// by the distribution column) and the join with the reference table on the coordinator.
const SUMMARY_SQL: &str = "
WITH per AS MATERIALIZED (
    SELECT i.tenant_id, i.currency, count(*) AS n,
           sum(i.amount_cents) FILTER (WHERE i.status <> 'void')::bigint AS total
    FROM invoices i GROUP BY i.tenant_id, i.currency),
agg AS MATERIALIZED (
    SELECT p.tenant_id, sum(p.n)::bigint AS invoice_count,
           jsonb_object_agg(p.currency, p.total) FILTER (WHERE p.total IS NOT NULL) AS totals
    FROM per p GROUP BY p.tenant_id)
SELECT t.id, t.slug, t.name, COALESCE(a.invoice_count, 0) AS invoice_count,
       COALESCE(a.totals, '{}'::jsonb)::text AS totals
FROM tenantry.tenants t LEFT JOIN agg a ON a.tenant_id = t.id
ORDER BY t.slug";

/// One audit row.
#[derive(Serialize, Queryable)]
pub struct AuditRow {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor_email: String,
    pub action: String,
    pub reason: String,
    pub tenant_id: Option<uuid::Uuid>,
}

/// The audit chain's head: how many rows it links, the last one and its hash.
#[derive(Serialize)]
pub struct AuditHead {
    /// Rows linked into the chain.
    pub rows: i64,
    /// The last linked row's id (`null` while the log is empty).
    pub id: Option<i64>,
    /// Its SHA-256 in hex (`null` while the log is empty).
    pub hash: Option<String>,
}

impl From<ChainHead> for AuditHead {
    fn from(head: ChainHead) -> Self {
        AuditHead {
            rows: head.rows,
            id: head.audit_id,
            hash: head.audit_id.map(|_| head.hex()),
        }
    }
}

/// The head before this bypass: its own audit row is linked when it commits.
async fn chain_head(conn: &mut BypassConn<'_>) -> Result<ChainHead, ApiError> {
    audit_chain::head(conn.diesel()).await?.ok_or_else(|| {
        tracing::error!("audit_log_chain_head has no row: run `tenantry audit --verify`");
        ApiError::Internal
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "raw SQL on purpose: the cross-tenant summary runs on an Owner's audited bypass"
)]
async fn summary(conn: &mut BypassConn<'_>) -> Result<Vec<TenantSummary>, ApiError> {
    Ok(conn.load(diesel::sql_query(SUMMARY_SQL)).await?)
}

async fn recent_audit(conn: &mut BypassConn<'_>, n: i64) -> Result<Vec<AuditRow>, ApiError> {
    let query = audit_log::table
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor_email,
            audit_log::action,
            audit_log::reason,
            audit_log::tenant_id,
        ))
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .limit(n);
    Ok(conn.load(query).await?)
}

/// `GET /api/admin/tenants`: every tenant with its invoice count and totals, by slug.
#[requires_role(Owner)]
pub async fn tenants(
    owner: OwnerProof,
    State(app): State<AppState>,
) -> Result<Json<Vec<TenantSummary>>, ApiError> {
    let bypass =
        no_tenant_scope!(&owner, "owner: cross-tenant invoice summary").action("admin.tenants");
    Ok(Json(
        app.tenantry
            .db
            .bypass(bypass, async |conn| summary(conn).await)
            .await?,
    ))
}

/// `?limit=`.
#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

/// `GET /api/admin/audit`: the newest audit rows.
#[requires_role(Owner)]
pub async fn audit(
    owner: OwnerProof,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let n = limit(q.limit, 50, 500)?;
    let bypass = no_tenant_scope!(&owner, "owner: read the audit log").action("admin.audit");
    Ok(Json(
        app.tenantry
            .db
            .bypass(bypass, async |conn| recent_audit(conn, n).await)
            .await?,
    ))
}

/// `GET /api/admin/audit/head`: the audit chain's head, `{"rows", "id", "hash"}`, to record
/// elsewhere and compare with `tenantry audit --verify`.
#[requires_role(Owner)]
pub async fn audit_head(
    owner: OwnerProof,
    State(app): State<AppState>,
) -> Result<Json<AuditHead>, ApiError> {
    let bypass =
        no_tenant_scope!(&owner, "owner: read the audit chain's head").action("admin.audit_head");
    let head = app
        .tenantry
        .db
        .bypass(bypass, async |conn| chain_head(conn).await)
        .await?;
    Ok(Json(head.into()))
}

/// `GET /admin`: the Owner dashboard (tenant summary, load by tenant over the last five
/// minutes, recent audit rows and the audit chain's head), one bypass.
#[requires_role(Owner)]
pub async fn dashboard(
    owner: OwnerProof,
    State(app): State<AppState>,
) -> Result<Html<String>, ApiError> {
    let bypass = no_tenant_scope!(&owner, "owner: dashboard of tenants and audit log")
        .action("admin.dashboard");
    let (tenants, audit, head) = app
        .tenantry
        .db
        .bypass(bypass, async |conn| {
            let tenants = summary(conn).await?;
            let audit = recent_audit(conn, 25).await?;
            let head = chain_head(conn).await?;
            Ok::<_, ApiError>((tenants, audit, head))
        })
        .await?;
    let load = app
        .tenantry
        .db
        .tenant_load(std::time::Duration::from_secs(5 * 60));
    Ok(Html(admin_page::render(
        owner.actor().email(),
        &tenants,
        &audit,
        &head,
        &load,
    )))
}
