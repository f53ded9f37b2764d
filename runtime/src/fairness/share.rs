//! [`FairShare`]: how much of the tenant pool one tenant may hold, how many of its transactions
//! may wait beyond that, and per-tenant weights (plans, tiers).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

/// The fair-share settings of the tenant pool ([`DbConfig::fair_share`](crate::db::DbConfig)).
///
/// A tenant holds at most `share × weight` of the pool's connections (rounded up, at least one,
/// at most all), whether or not others wait: a connection cannot be taken back from a slow
/// transaction, so the only way to keep room for other tenants is never to give it away. A
/// transaction of a tenant at its cap, or arriving while the pool is full, waits in its
/// tenant's own queue; when a connection comes back, the waiting tenant holding the least
/// (relative to its weight) gets it, so tenants under their share go first. A tenant whose
/// queue already holds `queue` transactions is refused at once with
/// [`DbError::TenantBusy`](crate::error::DbError::TenantBusy) (429), and so is a waiter whose
/// [`pool_timeout`](crate::db::DbConfig::pool_timeout) passes while its tenant holds its whole
/// share; a waiter that times out while its tenant holds less (the service is saturated) gets
/// [`DbError::Pool`](crate::error::DbError::Pool) (503), as before.
///
/// Everything here is per [`Db`](crate::db::Db), i.e. per instance: with several instances each
/// one keeps its own tenants within their shares of its own pool.
#[derive(Clone)]
pub struct FairShare {
    /// Fraction of the pool one tenant of weight 1 may hold (default 0.5: no tenant holds more
    /// than half the pool). `None` turns fair sharing off: transactions take connections in
    /// arrival order, as deadpool hands them out, and no tenant is ever refused with 429.
    pub share: Option<f64>,
    /// Transactions of one tenant that may wait for a connection (default `None`:
    /// [`DEFAULT_QUEUE`]). Past it, 429 at once. A waiting request costs nothing but its
    /// connection and is refused anyway when [`pool_timeout`](crate::db::DbConfig::pool_timeout)
    /// passes; a refused one costs a whole request when its client retries at once, as a
    /// flooding client does. So the default is large: a flood waits its turn, within its share.
    pub queue: Option<usize>,
    /// Each tenant's weight (default 1 for all).
    pub weights: TenantWeights,
}

/// A tenant's transactions that may wait for a turn by default (as many as
/// [`ServeConfig::max_requests_per_tenant`](crate::serve::ServeConfig) lets in at once).
pub const DEFAULT_QUEUE: usize = 256;

impl Default for FairShare {
    fn default() -> Self {
        FairShare {
            share: Some(0.5),
            queue: None,
            weights: TenantWeights::default(),
        }
    }
}

impl fmt::Debug for FairShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairShare")
            .field("share", &self.share)
            .field("queue", &self.queue)
            .field("weights", &self.weights)
            .finish()
    }
}

impl FairShare {
    /// Fair sharing off: the pool in arrival order (what tenantry did before fair shares).
    pub fn off() -> Self {
        FairShare {
            share: None,
            ..FairShare::default()
        }
    }

    /// Checks the rules of the field docs, naming the field.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(share) = self.share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(format!(
                    "DbConfig::fair_share.share must be in (0, 1] (got {share})"
                ));
            }
        }
        if self.queue == Some(0) {
            return Err("DbConfig::fair_share.queue must be at least 1".into());
        }
        Ok(())
    }
}

/// Per-tenant weights: a tenant of weight 2 may hold twice the share and is served as if it
/// held half of what it holds; 0.5, half. Weights are read once per tenant while it has work in
/// flight or waiting, so a change applies from its next quiet moment.
#[derive(Clone, Default)]
pub struct TenantWeights(Option<Arc<dyn Fn(Uuid) -> f64 + Send + Sync>>);

impl fmt::Debug for TenantWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "TenantWeights(..)"
        } else {
            "TenantWeights(all 1)"
        })
    }
}

impl TenantWeights {
    /// A weight for each listed tenant; the rest weigh 1.
    pub fn table(weights: HashMap<Uuid, f64>) -> Self {
        if weights.is_empty() {
            return TenantWeights(None);
        }
        TenantWeights(Some(Arc::new(move |tenant| {
            weights.get(&tenant).copied().unwrap_or(1.0)
        })))
    }

    /// Weights from `weigh` (e.g. from the tenant's plan, kept in memory: it is called while
    /// the pool's scheduler is locked, so it must not block).
    pub fn from_fn(weigh: impl Fn(Uuid) -> f64 + Send + Sync + 'static) -> Self {
        TenantWeights(Some(Arc::new(weigh)))
    }

    /// `tenant`'s weight: positive and finite, else 1.
    pub(crate) fn of(&self, tenant: Uuid) -> f64 {
        match &self.0 {
            None => 1.0,
            Some(weigh) => {
                let w = weigh(tenant);
                if w.is_finite() && w > 0.0 {
                    w
                } else {
                    1.0
                }
            }
        }
    }
}
