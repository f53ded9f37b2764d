//! The hooks of fair sharing in [`Db`]: a tenant transaction's turn at the tenant pool, and
//! the per-tenant load (see `crate::fairness`).

use std::time::Duration;

use uuid::Uuid;

use super::{checkout, Db};
use crate::error::DbError;
use crate::fairness::{Fairness, LoadSnapshot, Permit};
use crate::pool::Pooled;

impl Db {
    /// Waits for `tenant`'s turn at the tenant pool (within its share, after the tenants holding
    /// less), then checks a connection out: [`DbError::TenantBusy`] when the tenant's own queue
    /// is full, or its wait ran out while it held its whole share.
    pub(super) async fn tenant_checkout(&self, tenant: Uuid) -> Result<(Pooled, Permit), DbError> {
        let mut permit = self.fair.gate.admit(tenant).await?;
        let obj = checkout(&self.app, &self.app_outage).await?;
        permit.checked_out();
        Ok((obj, permit))
    }

    /// The per-tenant load over the last `window` (rounded to 10 s, at most 5 minutes), busiest
    /// first: what the example's Owner dashboard draws.
    pub fn tenant_load(&self, window: Duration) -> LoadSnapshot {
        self.fair.snapshot(window)
    }

    /// The per-tenant metrics in the OpenMetrics text format (Prometheus scrapes it): requests
    /// by tenant, route and status; transactions, database and pool-wait seconds, rows, sheds
    /// and job runs by tenant; bypasses by action; connections held and transactions waiting
    /// now; and the same over the last minute and five. The busiest
    /// [`DbConfig::metrics_tenants`](super::DbConfig) tenants are labelled by slug (or id), the
    /// others together as `_other`. Serve it with [`crate::extract::metrics_router`] on a
    /// private bind.
    pub fn metrics_text(&self) -> String {
        self.fair.metrics_text()
    }

    pub(crate) fn fairness(&self) -> &Fairness {
        &self.fair
    }
}
