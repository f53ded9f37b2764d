//! [`LogLimit`]: a `tracing-subscriber` filter that lets through one warning or error per
//! distinct failure per interval and counts the rest, so that an outage during which every
//! request fails logs a few lines, not one per request.
//!
//! A failure is distinct by the event's call site and its `error` field. Events below `WARN`
//! pass untouched. Every interval, [`LogLimit::report`] logs how many events of each kind were
//! held back.
//!
//! ```no_run
//! use std::time::Duration;
//! use tracing_subscriber::prelude::*;
//! use tenantry_runtime::log_limit::LogLimit;
//!
//! # async fn run() {
//! let limit = LogLimit::new(Duration::from_secs(10));
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_filter(limit.clone()))
//!     .init();
//! tokio::spawn(limit.report()); // "N similar events held back" every 10 s
//! # }
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// The target of the summary events, which are never held back themselves.
pub const SUMMARY_TARGET: &str = "tenantry::log_limit";

/// Keys kept at most; past it the table is cleared (a flood of distinct errors still logs).
const MAX_KEYS: usize = 1024;

/// See the module docs. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct LogLimit {
    interval: Duration,
    state: Arc<Mutex<HashMap<Key, Slot>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    callsite: tracing::callsite::Identifier,
    error: String,
}

#[derive(Debug)]
struct Slot {
    since: Instant,
    held: u64,
    message: String,
}

#[derive(Default)]
struct Fields {
    message: String,
    error: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "error" => {
                let _ = write!(self.error, "{value:?}");
            }
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "error" => self.error.push_str(value),
            _ => {}
        }
    }
}

impl LogLimit {
    /// One event per distinct failure per `interval`.
    pub fn new(interval: Duration) -> Self {
        LogLimit {
            interval,
            state: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `event` is logged (and counts it if not).
    fn admit(&self, event: &Event<'_>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || meta.target() == SUMMARY_TARGET {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let key = Key {
            callsite: meta.callsite(),
            error: fields.error,
        };
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.len() >= MAX_KEYS && !state.contains_key(&key) {
            state.clear();
        }
        match state.get_mut(&key) {
            Some(slot) if now.duration_since(slot.since) < self.interval => {
                slot.held += 1;
                false
            }
            Some(slot) => {
                slot.since = now;
                true
            }
            None => {
                state.insert(
                    key,
                    Slot {
                        since: now,
                        held: 0,
                        message: fields.message,
                    },
                );
                true
            }
        }
    }

    /// Every interval, logs one `WARN` per kind of event held back, with the count; runs until
    /// dropped. Spawn it on the runtime.
    pub async fn report(self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let held: Vec<(String, String, u64)> = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state
                    .iter_mut()
                    .filter(|(_, slot)| slot.held > 0)
                    .map(|(key, slot)| {
                        let n = std::mem::take(&mut slot.held);
                        (slot.message.clone(), key.error.clone(), n)
                    })
                    .collect()
            };
            for (message, error, n) in held {
                tracing::warn!(
                    target: SUMMARY_TARGET,
                    held_back = n,
                    event = %message,
                    error = %error,
                    "similar log events held back in the last {} s",
                    self.interval.as_secs()
                );
            }
        }
    }
}

impl<S> Filter<S> for LogLimit {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        self.admit(event)
    }
}
