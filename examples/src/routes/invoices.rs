//! `/api/invoices` and `/api/invoices/{id}`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tenantry::prelude::*;
use tenantry::requires_role;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{limit, ApiJson, ApiQuery, IdPath};
use crate::models::{Invoice, NewInvoice, Project};
use crate::schema::{currencies, invoices, projects};

const STATUSES: [&str; 4] = ["draft", "sent", "paid", "void"];

/// Invoice JSON.
#[derive(Serialize)]
pub struct InvoiceJson {
    id: Uuid,
    tenant_id: Uuid,
    project_id: Uuid,
    number: String,
    amount_cents: i64,
    currency: String,
    status: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Invoice> for InvoiceJson {
    fn from(i: Invoice) -> Self {
        InvoiceJson {
            id: i.id,
            tenant_id: i.tenant_id,
            project_id: i.project_id,
            number: i.number,
            amount_cents: i.amount_cents,
            currency: i.currency,
            status: i.status,
            created_at: i.created_at,
        }
    }
}

fn check_status(status: &str) -> Result<(), ApiError> {
    if STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "status",
            "must be one of draft, sent, paid, void",
        ))
    }
}

fn check_amount(amount_cents: i64) -> Result<(), ApiError> {
    if amount_cents >= 0 {
        Ok(())
    } else {
        Err(ApiError::invalid("amount_cents", "must be ≥ 0"))
    }
}

/// `?status=&limit=`.
#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// The active tenant's invoices, newest first.
#[requires_role(ClientViewer)]
pub async fn list(
    ctx: TenantCtx,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit, 100, 500)?;
    if let Some(s) = &q.status {
        check_status(s)?;
    }
    // One statement: `db.query` sends the seal's entry, the select and its assertion in one
    // round trip (the index of migration 0004 serves this order without a sort). Two
    // static queries rather than one boxed query: each has a type of its own, by which the
    // connection knows it holds it prepared, so the round trip needs no wait for the wire.
    let rows: Vec<Invoice> = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            let newest_first = Invoice::scoped(conn)
                .order(invoices::created_at.desc())
                .then_order_by(invoices::id.desc())
                .limit(limit);
            match q.status {
                Some(status) => newest_first.filter(invoices::status.eq(status)).load(conn),
                None => newest_first.load(conn),
            }
        })
        .await?;
    let rows: Vec<InvoiceJson> = rows.into_iter().map(Into::into).collect();
    Ok(json_array(&rows))
}

/// About the length of one invoice in JSON (three UUIDs, a timestamp, the rest short).
const INVOICE_JSON_LEN: usize = 320;

/// `rows` as a JSON array, written once into a buffer of about the right size: what
/// `axum::Json` answers, without its buffer of 128 bytes growing by doubling through a list.
fn json_array<T: Serialize>(rows: &[T]) -> Response {
    let mut body = Vec::with_capacity(2 + rows.len() * INVOICE_JSON_LEN);
    match serde_json::to_writer(&mut body, rows) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => ApiError::Internal.into_response(),
    }
}

/// `{"project_id","number","amount_cents","currency"}`; a `tenant_id` in the body is ignored.
#[derive(Deserialize)]
pub struct CreateInvoice {
    project_id: Uuid,
    number: String,
    amount_cents: i64,
    currency: String,
}

/// Creates a draft invoice (201); another tenant's project is 404, a used number 409.
#[requires_role(Partner)]
pub async fn create(
    ctx: TenantCtx,
    State(app): State<AppState>,
    ApiJson(body): ApiJson<CreateInvoice>,
) -> Result<(StatusCode, Json<InvoiceJson>), ApiError> {
    let number = body.number.trim().to_owned();
    if number.is_empty() || number.chars().count() > 64 {
        return Err(ApiError::invalid("number", "must be 1 to 64 characters"));
    }
    check_amount(body.amount_cents)?;
    let invoice: Invoice = app
        .tenantry
        .db
        .tx(&ctx, async |conn| {
            let known: i64 = currencies::table
                .filter(currencies::code.eq(&body.currency))
                .count()
                .get_result(conn)
                .await?;
            if known == 0 {
                return Err(ApiError::invalid("currency", "unknown currency code"));
            }
            let projects: i64 = Project::scoped(conn)
                .filter(projects::id.eq(body.project_id))
                .count()
                .get_result(conn)
                .await?;
            if projects == 0 {
                return Err(ApiError::not_found("project"));
            }
            let new = NewInvoice {
                project_id: body.project_id,
                number,
                amount_cents: body.amount_cents,
                currency: body.currency,
                status: "draft".into(),
            };
            Invoice::insert(conn, new)
                .get_result(conn)
                .await
                .map_err(|e| match e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => ApiError::Conflict("number: already used in this tenant".into()),
                    e => e.into(),
                })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(invoice.into())))
}

/// One invoice of the active tenant; any other id is 404.
#[requires_role(ClientViewer)]
pub async fn show(
    ctx: TenantCtx,
    State(app): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<InvoiceJson>, ApiError> {
    let invoice: Option<Invoice> = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first(conn)
                .optional()
        })
        .await?;
    invoice
        .map(|i| Json(i.into()))
        .ok_or_else(|| ApiError::not_found("invoice"))
}

/// `{"status"?, "amount_cents"?}`.
#[derive(Deserialize, AsChangeset)]
#[diesel(table_name = invoices)]
pub struct PatchInvoice {
    status: Option<String>,
    amount_cents: Option<i64>,
}

/// Changes an invoice's status and/or amount (200); any other tenant's id is 404.
#[requires_role(Partner)]
pub async fn update(
    ctx: TenantCtx,
    State(app): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<PatchInvoice>,
) -> Result<Json<InvoiceJson>, ApiError> {
    if patch.status.is_none() && patch.amount_cents.is_none() {
        return Err(ApiError::invalid("body", "give status and/or amount_cents"));
    }
    if let Some(s) = &patch.status {
        check_status(s)?;
    }
    if let Some(a) = patch.amount_cents {
        check_amount(a)?;
    }
    let invoice: Option<Invoice> = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
                .set(patch)
                .get_result(conn)
                .optional()
        })
        .await?;
    invoice
        .map(|i| Json(i.into()))
        .ok_or_else(|| ApiError::not_found("invoice"))
}

/// Deletes an invoice (204); any other tenant's id is 404.
#[requires_role(Partner)]
pub async fn delete(
    ctx: TenantCtx,
    State(app): State<AppState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    let deleted = app
        .tenantry
        .db
        .query(&ctx, |conn| {
            diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id))).execute(conn)
        })
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("invoice"));
    }
    Ok(StatusCode::NO_CONTENT)
}
