//! What `tenantry::serve` adds to every request: one request id (kept from a well-formed
//! `X-Request-Id`, else new, and echoed in the answer), a `request` span that carries it and,
//! once known, the tenant; the per-tenant cap on concurrent requests; and the count of requests
//! by tenant, route and status; and the router of the `/metrics` endpoint.
//!
//! The tenant is known only once tenantry's extractors have authenticated the request and
//! checked its role in the tenant it names ([`enter`]), never from the bare `X-Tenant` header:
//! a request cannot spend another tenant's share by naming it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::Db;
use crate::fairness::load::{Layer, Load};
use crate::fairness::CONTENT_TYPE;
use crate::identity::auth::AuthError;

const REQUEST_ID: &str = "x-request-id";

/// The per-tenant cap on concurrent requests of one server.
pub(crate) struct RequestCap {
    max: usize,
    in_flight: Mutex<HashMap<Uuid, usize>>,
}

impl RequestCap {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(RequestCap {
            max: max.max(1),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    fn try_enter(self: &Arc<Self>, tenant: Uuid) -> Option<CapPermit> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = in_flight.entry(tenant).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(CapPermit {
            cap: self.clone(),
            tenant,
        })
    }
}

/// One request's place within its tenant's cap.
struct CapPermit {
    cap: Arc<RequestCap>,
    tenant: Uuid,
}

impl Drop for CapPermit {
    fn drop(&mut self) {
        let mut in_flight = self.cap.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_flight.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.tenant);
            }
        }
    }
}

/// The request's tenant once the extractors know it, with what counts its request.
struct Entered {
    tenant: Uuid,
    load: Arc<Load>,
    _place: Option<CapPermit>,
}

/// Put in each request's extensions by [`tenant_requests`]; filled by [`enter`].
#[derive(Clone)]
struct RequestSlot {
    cap: Arc<RequestCap>,
    entered: Arc<Mutex<Option<Entered>>>,
}

/// What `tenantry::serve` does first with each request, around `inner` (the rest of its
/// middleware and the route): see the module docs.
pub(crate) async fn tenant_requests<F: Future<Output = Response>>(
    cap: Arc<RequestCap>,
    request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let id = crate::extract::request_id(&parts);
    let id_header = HeaderValue::from_str(&id).ok();
    if let Some(value) = &id_header {
        // The extractors read it from here: the audit rows and the spans name the same id.
        parts.headers.insert(REQUEST_ID, value.clone());
    }
    let route: Arc<str> = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().into())
        .unwrap_or_else(|| "unmatched".into());
    let slot = RequestSlot {
        cap,
        entered: Arc::new(Mutex::new(None)),
    };
    parts.extensions.insert(slot.clone());
    let span = tracing::info_span!(
        "request",
        method = %parts.method,
        route = &*route,
        request_id = %id,
        tenant = tracing::field::Empty,
    );
    let mut response = inner(Request::from_parts(parts, body))
        .instrument(span)
        .await;
    if let Some(value) = id_header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let entered = slot
        .entered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(entered) = entered {
        entered
            .load
            .request(entered.tenant, &route, response.status().as_u16());
    }
    response
}

/// Called by tenantry's extractors once the request's tenant is authorized: names the tenant in
/// the load and the request's span, and takes the request's place within the tenant's cap of
/// concurrent requests (when served by `tenantry::serve`). Over the cap: 429, counted as a shed.
pub(crate) fn enter(parts: &Parts, db: &Db, tenant: Uuid, slug: &str) -> Result<(), AuthError> {
    let load = db.fairness().tally();
    load.name(tenant, slug);
    tracing::Span::current().record("tenant", slug);
    let Some(slot) = parts.extensions.get::<RequestSlot>() else {
        return Ok(());
    };
    let mut entered = slot.entered.lock().unwrap_or_else(|e| e.into_inner());
    if entered.is_some() {
        return Ok(());
    }
    let Some(place) = slot.cap.try_enter(tenant) else {
        load.shed(tenant, Layer::Http);
        // Counted among the requests with the status the client gets.
        *entered = Some(Entered {
            tenant,
            load: load.clone(),
            _place: None,
        });
        return Err(AuthError::TooBusy(format!(
            "this tenant already has {} requests in progress on this server; retry later",
            slot.cap.max
        )));
    };
    *entered = Some(Entered {
        tenant,
        load: load.clone(),
        _place: Some(place),
    });
    Ok(())
}

/// The router of the metrics endpoint: `GET /metrics`, the OpenMetrics text of
/// [`Db::metrics_text`]. Serve it on a bind of its own that only the monitoring system reaches
/// (the example: `TENANTRY_METRICS_BIND`): it names tenants and their load.
pub fn metrics_router(db: Db) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let db = db.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], db.metrics_text()).into_response() }
        }),
    )
}
