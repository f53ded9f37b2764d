//! Per-tenant load: what each tenant's requests and transactions cost, in totals since start and
//! in ten-second buckets over the last five minutes, with a bounded number of tenants named.
//!
//! Every count goes to its tenant's record. The busiest tenants (by database time over the last
//! five minutes, a shed counting as 10 ms) get a label of their own in the exported metrics, at
//! most [`DbConfig::metrics_tenants`](crate::db::DbConfig) of them; the others are counted together
//! as `_other`. A label is never taken back while its tenant stays among the busiest, and a
//! count goes to the label its tenant has when it happens, so every exported counter only grows:
//! a tenant named from now on starts at zero, and what it did before stays in `_other`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Width of one bucket of the recent window.
const BUCKET: Duration = Duration::from_secs(10);
/// Buckets kept: five minutes.
const BUCKETS: usize = 30;
/// Tenants with a record of their own at most; beyond them, counts go to `_other` only (until
/// quiet tenants are dropped at the next ranking).
const TRACKED: usize = 10_000;
/// What one shed weighs in the ranking, in microseconds of database time.
const SHED_WEIGHT_US: u64 = 10_000;

/// Where a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    /// The tenant pool's fair share (`DbError::TenantBusy`).
    Pool,
    /// `tenantry::serve`'s per-tenant request cap.
    Http,
}

/// Counters since start (or since a tenant was named).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: u64,
    pub(crate) db_us: u64,
    pub(crate) wait_us: u64,
    pub(crate) rows: u64,
    pub(crate) shed_pool: u64,
    pub(crate) shed_http: u64,
    pub(crate) job_runs: u64,
    /// Transactions that waited in their tenant's queue for a turn.
    pub(crate) queued: u64,
    /// Requests by (route, status).
    pub(crate) requests: BTreeMap<(Arc<str>, u16), u64>,
}

impl Counters {
    /// `self - base`, field by field.
    fn minus(&self, base: &Counters) -> Counters {
        Counters {
            transactions: self.transactions - base.transactions,
            db_us: self.db_us - base.db_us,
            wait_us: self.wait_us - base.wait_us,
            rows: self.rows - base.rows,
            shed_pool: self.shed_pool - base.shed_pool,
            shed_http: self.shed_http - base.shed_http,
            job_runs: self.job_runs - base.job_runs,
            queued: self.queued - base.queued,
            requests: self
                .requests
                .iter()
                .map(|(k, v)| (k.clone(), v - base.requests.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect(),
        }
    }
}

/// One ten-second bucket.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bucket {
    epoch: u64,
    pub(crate) db_us: u64,
    pub(crate) wait_us: u64,
    pub(crate) sheds: u64,
    pub(crate) transactions: u64,
    pub(crate) requests: u64,
}

impl Bucket {
    fn add(&mut self, other: &Bucket) {
        self.db_us += other.db_us;
        self.wait_us += other.wait_us;
        self.sheds += other.sheds;
        self.transactions += other.transactions;
        self.requests += other.requests;
    }
}

/// One tenant's record.
struct Record {
    total: Counters,
    /// The totals when the tenant got a label of its own; `None` while it counts as `_other`.
    named_at: Option<Counters>,
    recent: [Bucket; BUCKETS],
    max_held: usize,
}

impl Record {
    fn new() -> Self {
        Record {
            total: Counters::default(),
            named_at: None,
            recent: [Bucket::default(); BUCKETS],
            max_held: 0,
        }
    }

    fn bucket(&mut self, epoch: u64) -> &mut Bucket {
        let b = &mut self.recent[(epoch % BUCKETS as u64) as usize];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        b
    }

    /// The buckets of the last `buckets` epochs up to `now`, summed.
    fn window(&self, now: u64, buckets: u64) -> Bucket {
        let mut sum = Bucket::default();
        for b in &self.recent {
            if b.epoch <= now && now - b.epoch < buckets {
                sum.add(b);
            }
        }
        sum
    }

    fn score(&self, now: u64) -> u64 {
        let w = self.window(now, BUCKETS as u64);
        w.db_us + w.sheds * SHED_WEIGHT_US
    }
}

#[derive(Default)]
struct Inner {
    tenants: HashMap<Uuid, Record>,
    names: HashMap<Uuid, Arc<str>>,
    /// What tenants counted while they had no label of their own.
    other: Counters,
    bypasses: BTreeMap<Arc<str>, u64>,
    ranked: Option<u64>,
    /// Tenants with a label of their own.
    labels: usize,
}

/// The per-tenant load of one [`Db`](crate::db::Db).
pub(crate) struct Load {
    inner: Mutex<Inner>,
    started: Instant,
    named: usize,
}

/// What one exported label stands for at a scrape.
pub(crate) struct Labelled {
    pub(crate) label: Arc<str>,
    pub(crate) counters: Counters,
    pub(crate) one_minute: Bucket,
    pub(crate) five_minutes: Bucket,
    /// The tenants behind it (one, or every unnamed one for `_other`).
    pub(crate) tenants: Vec<Uuid>,
}

/// One tenant's record as [`Load::tenants`] hands it out: id, name, recent window, totals and
/// the most connections it held at once.
pub(crate) type TenantRecord = (Uuid, Option<Arc<str>>, Bucket, Counters, usize);

/// The label of tenants without one of their own.
pub(crate) const OTHER: &str = "_other";

impl Load {
    pub(crate) fn new(named: usize) -> Self {
        Load {
            inner: Mutex::new(Inner::default()),
            started: Instant::now(),
            named,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn epoch(&self) -> u64 {
        (self.started.elapsed().as_secs()) / BUCKET.as_secs()
    }

    /// Applies `count` to `tenant`'s totals and current bucket, and to `_other` while the
    /// tenant has no label of its own.
    fn count(&self, tenant: Uuid, count: impl Fn(&mut Counters, &mut Bucket)) {
        if tenant.is_nil() {
            // `Db::connect`'s own check of the tenant seal, in no tenant of the application.
            return;
        }
        let epoch = self.epoch();
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.ranked != Some(epoch) {
            rank(inner, epoch, self.named);
        }
        let mut scratch = Bucket::default();
        if !inner.tenants.contains_key(&tenant) && inner.tenants.len() < TRACKED {
            let mut r = Record::new();
            if inner.labels < self.named {
                // A free label: the tenant has it from its first count.
                r.named_at = Some(Counters::default());
                inner.labels += 1;
            }
            inner.tenants.insert(tenant, r);
        }
        match inner.tenants.get_mut(&tenant) {
            Some(r) => {
                let mut bucket = *r.bucket(epoch);
                count(&mut r.total, &mut bucket);
                *r.bucket(epoch) = bucket;
                if r.named_at.is_none() {
                    count(&mut inner.other, &mut scratch);
                }
            }
            None => count(&mut inner.other, &mut scratch),
        }
    }

    /// `tenant` holds `held` connections now (for its high-water mark).
    pub(crate) fn held(&self, tenant: Uuid, held: usize) {
        if tenant.is_nil() {
            return;
        }
        let mut inner = self.lock();
        if let Some(r) = inner.tenants.get_mut(&tenant) {
            r.max_held = r.max_held.max(held);
        } else if inner.tenants.len() < TRACKED {
            let mut r = Record::new();
            r.max_held = held;
            if inner.labels < self.named {
                r.named_at = Some(Counters::default());
                inner.labels += 1;
            }
            inner.tenants.insert(tenant, r);
        }
    }

    /// One transaction of `tenant` ended; it had waited in its tenant's queue if `queued`.
    pub(crate) fn finished(
        &self,
        tenant: Uuid,
        queued: bool,
        waited: Duration,
        held: Duration,
        rows: u64,
    ) {
        let (wait_us, db_us) = (micros(waited), micros(held));
        self.count(tenant, |c, b| {
            c.transactions += 1;
            c.queued += u64::from(queued);
            c.db_us += db_us;
            c.wait_us += wait_us;
            c.rows += rows;
            b.transactions += 1;
            b.db_us += db_us;
            b.wait_us += wait_us;
        });
    }

    /// A request or transaction of `tenant` was refused at `layer`.
    pub(crate) fn shed(&self, tenant: Uuid, layer: Layer) {
        self.count(tenant, |c, b| {
            match layer {
                Layer::Pool => c.shed_pool += 1,
                Layer::Http => c.shed_http += 1,
            }
            b.sheds += 1;
        });
    }

    /// A system job ran a transaction in `tenant`.
    pub(crate) fn job_run(&self, tenant: Uuid) {
        self.count(tenant, |c, _| c.job_runs += 1);
    }

    /// A request of `tenant` on `route` was answered `status`.
    pub(crate) fn request(&self, tenant: Uuid, route: &Arc<str>, status: u16) {
        self.count(tenant, |c, b| {
            *c.requests.entry((route.clone(), status)).or_default() += 1;
            b.requests += 1;
        });
    }

    /// An audited bypass ran (no tenant: it works across them), by its action.
    pub(crate) fn bypass(&self, action: &str) {
        let mut inner = self.lock();
        if let Some(n) = inner.bypasses.get_mut(action) {
            *n += 1;
            return;
        }
        // Actions are names in the application's code; a bound all the same.
        let key: Arc<str> = if inner.bypasses.len() < 256 {
            action.into()
        } else {
            OTHER.into()
        };
        *inner.bypasses.entry(key).or_default() += 1;
    }

    /// `tenant` is called `name` (its slug), in labels and on the dashboard.
    pub(crate) fn name(&self, tenant: Uuid, name: &str) {
        let mut inner = self.lock();
        if inner.names.get(&tenant).is_some_and(|n| &**n == name) {
            return;
        }
        if inner.names.len() >= TRACKED && !inner.names.contains_key(&tenant) {
            return;
        }
        inner.names.insert(tenant, name.into());
    }

    /// The bypasses by action.
    pub(crate) fn bypasses(&self) -> Vec<(Arc<str>, u64)> {
        self.lock()
            .bypasses
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Every exported label with its counters (named tenants, then `_other`).
    pub(crate) fn labelled(&self) -> Vec<Labelled> {
        let epoch = self.epoch();
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.ranked != Some(epoch) {
            rank(inner, epoch, self.named);
        }
        let mut out = Vec::new();
        let mut other = Labelled {
            label: OTHER.into(),
            counters: inner.other.clone(),
            one_minute: Bucket::default(),
            five_minutes: Bucket::default(),
            tenants: Vec::new(),
        };
        for (id, r) in &inner.tenants {
            let one = r.window(epoch, 6);
            let five = r.window(epoch, BUCKETS as u64);
            match &r.named_at {
                Some(base) => out.push(Labelled {
                    label: label(&inner.names, *id),
                    counters: r.total.minus(base),
                    one_minute: one,
                    five_minutes: five,
                    tenants: vec![*id],
                }),
                None => {
                    other.one_minute.add(&one);
                    other.five_minutes.add(&five);
                    other.tenants.push(*id);
                }
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out.push(other);
        out
    }

    /// Each tracked tenant's recent window and totals, for [`LoadSnapshot`].
    pub(crate) fn tenants(&self, window: Duration) -> Vec<TenantRecord> {
        let epoch = self.epoch();
        let buckets = (window.as_secs() / BUCKET.as_secs()).clamp(1, BUCKETS as u64);
        let inner = self.lock();
        inner
            .tenants
            .iter()
            .map(|(id, r)| {
                (
                    *id,
                    inner.names.get(id).cloned(),
                    r.window(epoch, buckets),
                    r.total.clone(),
                    r.max_held,
                )
            })
            .collect()
    }
}

fn label(names: &HashMap<Uuid, Arc<str>>, tenant: Uuid) -> Arc<str> {
    names
        .get(&tenant)
        .cloned()
        .unwrap_or_else(|| tenant.to_string().into())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Gives the busiest tenants labels of their own (at most `named`), taking labels back only
/// from tenants no longer among the busiest, and only when a busier one needs the place; drops
/// the records of quiet unnamed tenants (their counts are in `_other` already).
fn rank(inner: &mut Inner, epoch: u64, named: usize) {
    inner.ranked = Some(epoch);
    let mut scored: Vec<(u64, Uuid)> = inner
        .tenants
        .iter()
        .map(|(id, r)| (r.score(epoch), *id))
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let busiest: Vec<Uuid> = scored.iter().take(named).map(|(_, id)| *id).collect();
    let mut holders: Vec<(u64, Uuid)> = inner
        .tenants
        .iter()
        .filter(|(_, r)| r.named_at.is_some())
        .map(|(id, r)| (r.score(epoch), *id))
        .collect();
    let newcomers: Vec<Uuid> = busiest
        .iter()
        .filter(|id| inner.tenants[*id].named_at.is_none())
        .copied()
        .collect();
    let overflow = (holders.len() + newcomers.len()).saturating_sub(named);
    if overflow > 0 {
        holders.retain(|(_, id)| !busiest.contains(id));
        holders.sort();
        for (_, id) in holders.into_iter().take(overflow) {
            if let Some(r) = inner.tenants.get_mut(&id) {
                r.named_at = None;
            }
        }
    }
    for id in newcomers {
        if let Some(r) = inner.tenants.get_mut(&id) {
            r.named_at = Some(r.total.clone());
        }
    }
    inner
        .tenants
        .retain(|_, r| r.named_at.is_some() || r.score(epoch) > 0);
    inner.labels = inner
        .tenants
        .values()
        .filter(|r| r.named_at.is_some())
        .count();
}

#[cfg(test)]
mod tests;
