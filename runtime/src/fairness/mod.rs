//! One tenant cannot starve the others, and every tenant's load is visible: fair shares of the
//! tenant pool, a per-tenant cap on concurrent requests, and per-tenant metrics.
//!
//! - `share.rs`: [`FairShare`] and [`TenantWeights`], the settings.
//! - `gate.rs`: the scheduler in front of the tenant pool (each tenant within its share, its
//!   excess in its own bounded queue, turns to the tenant holding the least).
//! - `load.rs`: per-tenant counters, recent windows and the bounded set of named tenants.
//! - `export.rs`: the OpenMetrics text of `/metrics`.
//!
//! What HTTP adds (the request id and span, the per-tenant request cap, the hook the extractors
//! call once the tenant is known, the `/metrics` router) is `extract/fair.rs`'s: it needs the
//! [`Db`](crate::db::Db), which holds this room's scheduler and load.
//!
//! Everything is per [`Db`](crate::db::Db) (the pool's shares, the load) or per [`serve`](crate::serve::serve)
//! (the request cap): per instance. Several instances each keep their tenants within their own
//! shares; behind PgBouncer the shares are of each instance's pool of client connections, and
//! the pooler's server connections are shared in its own order.

mod export;
mod gate;
pub(crate) mod load;
mod share;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use export::CONTENT_TYPE;
pub(crate) use gate::{Gate, Permit};
pub(crate) use load::Load;
pub use share::{FairShare, TenantWeights, DEFAULT_QUEUE};

/// Each tenant's load over a recent window, busiest first ([`Db::tenant_load`](crate::db::Db::tenant_load)).
#[derive(Debug, Clone)]
pub struct LoadSnapshot {
    /// The window the `recent_*` figures cover.
    pub window: Duration,
    /// Connections of the tenant pool held by admitted transactions now.
    pub pool_in_use: usize,
    /// Connections of the tenant pool.
    pub pool_size: usize,
    /// Tenants seen over the last five minutes (or holding connections now), by recent
    /// database time then sheds, descending.
    pub tenants: Vec<TenantLoad>,
}

/// One tenant's load.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLoad {
    /// The tenant.
    pub tenant: Uuid,
    /// Its slug, once a request of it passed tenantry's extractors.
    pub name: Option<String>,
    /// Seconds its transactions held a connection within the window.
    pub recent_db_seconds: f64,
    /// Seconds its transactions waited for their turn within the window.
    pub recent_wait_seconds: f64,
    /// Its requests and transactions refused with 429 within the window.
    pub recent_sheds: u64,
    /// Its transactions within the window.
    pub recent_transactions: u64,
    /// Its requests within the window.
    pub recent_requests: u64,
    /// Transactions since start (or since its record was last dropped as quiet).
    pub transactions: u64,
    /// Transactions since start that waited in its queue for a turn.
    pub queued: u64,
    /// Refused with 429 since start: over its share of the pool.
    pub shed_pool: u64,
    /// Refused with 429 since start: over its concurrent requests.
    pub shed_http: u64,
    /// Connections it holds now.
    pub connections: usize,
    /// Its transactions waiting now.
    pub waiting: usize,
    /// The most connections it may hold (its share), while it has work in flight.
    pub share: Option<usize>,
    /// The most connections it held at once since its record began.
    pub max_connections: usize,
}

impl TenantLoad {
    /// Its name, or its id when no request named it yet.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.tenant.to_string())
    }
}

/// The scheduler and load of one `Db`.
pub(crate) struct Fairness {
    pub(crate) gate: Arc<Gate>,
}

impl Fairness {
    pub(crate) fn new(pool_size: usize, config: &FairShare, wait: Duration, named: usize) -> Self {
        let load = Arc::new(Load::new(named));
        Fairness {
            gate: Arc::new(Gate::new(pool_size, config, wait, load)),
        }
    }

    pub(crate) fn tally(&self) -> &Arc<Load> {
        self.gate.load()
    }

    pub(crate) fn metrics_text(&self) -> String {
        export::render(self.tally(), self.gate.held(), self.gate.in_use())
    }

    pub(crate) fn snapshot(&self, window: Duration) -> LoadSnapshot {
        let held = self.gate.held();
        let (pool_in_use, pool_size) = self.gate.in_use();
        let mut tenants: Vec<TenantLoad> = self
            .tally()
            .tenants(window)
            .into_iter()
            .map(|(tenant, name, recent, total, max_connections)| {
                let now = held.get(&tenant).copied().unwrap_or_default();
                TenantLoad {
                    tenant,
                    name: name.map(|n| n.to_string()),
                    recent_db_seconds: recent.db_us as f64 / 1e6,
                    recent_wait_seconds: recent.wait_us as f64 / 1e6,
                    recent_sheds: recent.sheds,
                    recent_transactions: recent.transactions,
                    recent_requests: recent.requests,
                    transactions: total.transactions,
                    queued: total.queued,
                    shed_pool: total.shed_pool,
                    shed_http: total.shed_http,
                    connections: now.held,
                    waiting: now.waiting,
                    share: held.get(&tenant).map(|h| h.cap),
                    max_connections,
                }
            })
            .collect();
        tenants.sort_by(|a, b| {
            b.recent_db_seconds
                .total_cmp(&a.recent_db_seconds)
                .then(b.recent_sheds.cmp(&a.recent_sheds))
                .then(a.tenant.cmp(&b.tenant))
        });
        LoadSnapshot {
            window,
            pool_in_use,
            pool_size,
            tenants,
        }
    }
}
