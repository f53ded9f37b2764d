//! The scheduler in front of the tenant pool: a tenant holds at most its share of the
//! connections, waits in its own bounded queue beyond it, and a returned connection goes to the
//! waiting tenant that holds the least relative to its weight.
//!
//! Only transactions admitted here check a connection out of the tenant pool, and no more are
//! admitted than the pool has connections, so deadpool's own queue stays empty and the order
//! of service is decided here. A [`Permit`] is held for the length of one transaction; dropping
//! it returns its place (after the connection itself went back to the pool) and records the
//! transaction's database time, wait and rows in the tenant's [`Load`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use uuid::Uuid;

use super::load::{Layer, Load};
use super::share::{FairShare, TenantWeights};
use crate::error::DbError;
use crate::pool::Link;

/// Rows of the tenant seal's own two statements (the entry and the assertion), which every
/// committed tenant transaction reads and no caller sees.
const SEAL_ROWS: u64 = 2;

/// The fair scheduler of one tenant pool.
pub(crate) struct Gate {
    /// Connections of the pool.
    capacity: usize,
    /// `None`: fair sharing off (admission records the load and nothing else).
    share: Option<f64>,
    queue: usize,
    weights: TenantWeights,
    /// How long a transaction may wait for its turn ([`crate::db::DbConfig::pool_timeout`]).
    wait: Duration,
    state: Mutex<State>,
    load: Arc<Load>,
}

#[derive(Default)]
struct State {
    in_use: usize,
    seq: u64,
    tenants: HashMap<Uuid, Tenant>,
}

struct Tenant {
    held: usize,
    cap: usize,
    weight: f64,
    waiters: VecDeque<Waiter>,
}

struct Waiter {
    seq: u64,
    grant: oneshot::Sender<Permit>,
}

/// What the gate knows of one tenant now: connections held and transactions waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) held: usize,
    pub(crate) waiting: usize,
    pub(crate) cap: usize,
}

impl Gate {
    pub(crate) fn new(
        capacity: usize,
        config: &FairShare,
        wait: Duration,
        load: Arc<Load>,
    ) -> Self {
        Gate {
            capacity: capacity.max(1),
            share: config.share,
            queue: config.queue.unwrap_or(super::share::DEFAULT_QUEUE).max(1),
            weights: config.weights.clone(),
            wait,
            state: Mutex::new(State::default()),
            load,
        }
    }

    pub(crate) fn load(&self) -> &Arc<Load> {
        &self.load
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most connections a tenant of `weight` may hold.
    fn cap(&self, share: f64, weight: f64) -> usize {
        let cap = (self.capacity as f64 * share * weight).ceil();
        (cap as usize).clamp(1, self.capacity)
    }

    /// Waits for `tenant`'s turn at the pool: a permit to check out one connection.
    pub(crate) async fn admit(self: &Arc<Self>, tenant: Uuid) -> Result<Permit, DbError> {
        let Some(share) = self.share else {
            return Ok(Permit::new(self.clone(), tenant, Duration::ZERO, false));
        };
        let asked = Instant::now();
        let (receiver, seq) = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let t = state.tenants.entry(tenant).or_insert_with(|| {
                let weight = self.weights.of(tenant);
                Tenant {
                    held: 0,
                    cap: self.cap(share, weight),
                    weight,
                    waiters: VecDeque::new(),
                }
            });
            if t.waiters.is_empty() && t.held < t.cap && state.in_use < self.capacity {
                t.held += 1;
                state.in_use += 1;
                self.load.held(tenant, t.held);
                return Ok(Permit::new(self.clone(), tenant, Duration::ZERO, true));
            }
            if t.waiters.len() >= self.queue {
                let (held, cap) = (t.held, t.cap);
                drop(guard);
                self.load.shed(tenant, Layer::Pool);
                return Err(busy(held, cap, self.queue));
            }
            state.seq += 1;
            let seq = state.seq;
            let (grant, receiver) = oneshot::channel();
            t.waiters.push_back(Waiter { seq, grant });
            (receiver, seq)
        };
        let mut queued = Queued {
            gate: self,
            tenant,
            seq,
            armed: true,
        };
        let mut receiver = receiver;
        let outcome = tokio::time::timeout(self.wait, &mut receiver).await;
        queued.armed = false;
        match outcome {
            Ok(Ok(mut permit)) => {
                permit.waited = asked.elapsed();
                permit.queued = true;
                Ok(permit)
            }
            Ok(Err(_)) => Err(DbError::Pool("the pool's scheduler closed".into())),
            Err(_) => match self.leave(tenant, seq) {
                // Granted while the timer fired: the permit is in the channel.
                None => match receiver.try_recv() {
                    Ok(mut permit) => {
                        permit.waited = asked.elapsed();
                        permit.queued = true;
                        Ok(permit)
                    }
                    Err(_) => Err(DbError::Pool("the pool's scheduler closed".into())),
                },
                Some(held) if held.held >= held.cap => {
                    self.load.shed(tenant, Layer::Pool);
                    Err(busy(held.held, held.cap, self.queue))
                }
                Some(_) => Err(DbError::Pool(format!(
                    "no connection became free within {} ms (every connection is in use by \
                     tenants within their shares)",
                    self.wait.as_millis()
                ))),
            },
        }
    }

    /// Takes waiter `seq` out of `tenant`'s queue; `None` when it is no longer there (granted).
    fn leave(&self, tenant: Uuid, seq: u64) -> Option<Held> {
        let mut state = self.lock();
        let t = state.tenants.get_mut(&tenant)?;
        let at = t.waiters.iter().position(|w| w.seq == seq)?;
        t.waiters.remove(at);
        let held = Held {
            held: t.held,
            waiting: t.waiters.len(),
            cap: t.cap,
        };
        if t.held == 0 && t.waiters.is_empty() {
            state.tenants.remove(&tenant);
        }
        Some(held)
    }

    /// A permit of `tenant` came back: its place goes to the next waiter.
    fn release(self: &Arc<Self>, tenant: Uuid) {
        let mut state = self.lock();
        state.in_use = state.in_use.saturating_sub(1);
        if let Some(t) = state.tenants.get_mut(&tenant) {
            t.held = t.held.saturating_sub(1);
        }
        self.dispatch(&mut state);
        if state
            .tenants
            .get(&tenant)
            .is_some_and(|t| t.held == 0 && t.waiters.is_empty())
        {
            state.tenants.remove(&tenant);
        }
    }

    /// Hands free places to waiters: each to the waiting tenant below its cap that holds the
    /// least relative to its weight (the longest-waiting first on a tie).
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        while state.in_use < self.capacity {
            let next = state
                .tenants
                .iter()
                .filter(|(_, t)| t.held < t.cap)
                .filter_map(|(id, t)| Some((*id, t.held as f64 / t.weight, t.waiters.front()?.seq)))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
            let Some((tenant, _, _)) = next else {
                return;
            };
            let t = state.tenants.get_mut(&tenant).expect("chosen above");
            let waiter = t.waiters.pop_front().expect("chosen above");
            t.held += 1;
            state.in_use += 1;
            self.load.held(tenant, t.held);
            let permit = Permit::new(self.clone(), tenant, Duration::ZERO, true);
            if let Err(mut unwanted) = waiter.grant.send(permit) {
                // The waiter left (its request was abandoned): take the place back here.
                unwanted.armed = false;
                t.held -= 1;
                state.in_use -= 1;
            }
        }
    }

    /// Connections held and transactions waiting, per tenant, now.
    pub(crate) fn held(&self) -> HashMap<Uuid, Held> {
        let state = self.lock();
        state
            .tenants
            .iter()
            .map(|(id, t)| {
                (
                    *id,
                    Held {
                        held: t.held,
                        waiting: t.waiters.len(),
                        cap: t.cap,
                    },
                )
            })
            .collect()
    }

    /// `(in use, capacity)` as the scheduler counts them.
    pub(crate) fn in_use(&self) -> (usize, usize) {
        (self.lock().in_use, self.capacity)
    }
}

fn busy(held: usize, cap: usize, queue: usize) -> DbError {
    DbError::TenantBusy(format!(
        "this tenant holds {held} of its {cap} database connection(s) and {queue} more of its \
         requests are already waiting; retry later"
    ))
}

/// Removes a waiter whose future was dropped (its request abandoned) from its queue.
struct Queued<'g> {
    gate: &'g Gate,
    tenant: Uuid,
    seq: u64,
    armed: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.armed {
            // If it was granted meanwhile, the permit is dropped with the channel and returns
            // its place itself.
            let _ = self.gate.leave(self.tenant, self.seq);
        }
    }
}

/// One tenant's turn at the pool, for one transaction.
pub(crate) struct Permit {
    gate: Arc<Gate>,
    tenant: Uuid,
    /// Whether it holds a place of the scheduler (false when fair sharing is off).
    armed: bool,
    granted: Instant,
    /// Whether it waited in its tenant's queue.
    queued: bool,
    waited: Duration,
    /// The link whose rows count, and its count at the start; `None` until a connection was
    /// checked out (a permit dropped before that ran no transaction).
    rows: Option<(Arc<Link>, u64)>,
}

impl Permit {
    fn new(gate: Arc<Gate>, tenant: Uuid, waited: Duration, armed: bool) -> Self {
        Permit {
            gate,
            tenant,
            armed,
            granted: Instant::now(),
            queued: false,
            waited,
            rows: None,
        }
    }

    /// Counts the rows the server sends on `link` from now on as this transaction's.
    pub(crate) fn watch(&mut self, link: &Arc<Link>) {
        self.rows = Some((link.clone(), link.rows()));
    }

    /// Adds the time spent waiting for the pool's own checkout (opening a connection).
    pub(crate) fn checked_out(&mut self) {
        self.waited += self.granted.elapsed();
        self.granted = Instant::now();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.gate.release(self.tenant);
        }
        if let Some((link, before)) = &self.rows {
            let rows = link
                .rows()
                .saturating_sub(*before)
                .saturating_sub(SEAL_ROWS);
            self.gate.load.finished(
                self.tenant,
                self.queued,
                self.waited,
                self.granted.elapsed(),
                rows,
            );
        }
    }
}

#[cfg(test)]
mod tests;
