//! The application state and router.

use axum::extract::FromRef;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use tenantry::auth::mark_dev_mode;
use tenantry::identity::Tenantry;
use tenantry::settings::{AuthMode, Settings};

use crate::error::ApiError;
use crate::routes::{admin, health, invoices, me, projects};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub tenantry: Tenantry,
}

impl FromRef<AppState> for Tenantry {
    fn from_ref(state: &AppState) -> Tenantry {
        state.tenantry.clone()
    }
}

/// Every route of the contract.
pub fn router(state: AppState, settings: &Settings) -> Router {
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/me", get(me::me))
        .route("/api/projects", get(projects::list).post(projects::create))
        .route("/api/invoices", get(invoices::list).post(invoices::create))
        .route(
            "/api/invoices/{id}",
            get(invoices::show)
                .patch(invoices::update)
                .delete(invoices::delete),
        )
        .route("/api/admin/tenants", get(admin::tenants))
        .route("/api/admin/audit", get(admin::audit))
        .route("/api/admin/audit/head", get(admin::audit_head))
        .route("/admin", get(admin::dashboard))
        .fallback(|| async { ApiError::not_found("route") })
        // Cross-site requests are refused by tenantry's extractors (`Tenantry::csrf`).
        .with_state(state);
    match settings.auth {
        AuthMode::Dev { .. } => router.layer(middleware::from_fn(mark_dev_mode)),
        _ => router,
    }
}
