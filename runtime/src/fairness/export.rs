//! The per-tenant load in the OpenMetrics text format (which Prometheus scrapes), encoded by
//! `prometheus-client` from a snapshot taken at each scrape.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use uuid::Uuid;

use super::gate::Held;
use super::load::{Labelled, Load};

/// The content type of the metrics text a scrape answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One scrape's data.
struct Scrape {
    labelled: Vec<Labelled>,
    held: HashMap<Uuid, Held>,
    bypasses: Vec<(Arc<str>, u64)>,
    pool: (usize, usize),
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

/// The text of one scrape.
pub(crate) fn render(load: &Load, held: HashMap<Uuid, Held>, pool: (usize, usize)) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        labelled: load.labelled(),
        held,
        bypasses: load.bypasses(),
        pool,
    }));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

type Labels = Vec<(&'static str, String)>;

/// The value of one counter family for a label.
type Pick = fn(&Labelled) -> f64;

fn family<T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels, T)>,
) -> fmt::Result
where
    T: Into<f64>,
{
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let value: f64 = value.into();
        match kind {
            MetricType::Counter => {
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?
            }
            _ => ConstGauge::new(value).encode(family.encode_family(&labels)?)?,
        }
    }
    Ok(())
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn count(n: u64) -> f64 {
    n as f64
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let tenants = &self.labelled;
        let per = |pick: fn(&Labelled) -> f64| {
            tenants
                .iter()
                .map(move |l| (vec![("tenant", l.label.to_string())], pick(l)))
        };
        family(
            &mut e,
            "tenantry_tenant_requests",
            "HTTP requests answered, by tenant, route and status",
            MetricType::Counter,
            tenants.iter().flat_map(|l| {
                l.counters.requests.iter().map(move |((route, status), n)| {
                    (
                        vec![
                            ("tenant", l.label.to_string()),
                            ("route", route.to_string()),
                            ("status", status.to_string()),
                        ],
                        count(*n),
                    )
                })
            }),
        )?;
        let counters: [(&str, &str, Pick); 6] = [
            (
                "tenantry_tenant_queued",
                "tenant transactions that waited in the tenant's queue for a turn at the pool",
                |l| count(l.counters.queued),
            ),
            (
                "tenantry_tenant_transactions",
                "tenant transactions run",
                |l| count(l.counters.transactions),
            ),
            (
                "tenantry_tenant_db_seconds",
                "seconds tenant transactions held a pooled connection",
                |l| secs(l.counters.db_us),
            ),
            (
                "tenantry_tenant_pool_wait_seconds",
                "seconds tenant transactions waited for their turn at the pool",
                |l| secs(l.counters.wait_us),
            ),
            (
                "tenantry_tenant_rows",
                "rows the database returned to tenant transactions",
                |l| count(l.counters.rows),
            ),
            (
                "tenantry_tenant_job_runs",
                "system job transactions run inside the tenant",
                |l| count(l.counters.job_runs),
            ),
        ];
        for (name, help, pick) in counters {
            family(&mut e, name, help, MetricType::Counter, per(pick))?;
        }
        family(
            &mut e,
            "tenantry_tenant_shed",
            "requests refused with 429: layer pool (over its share of the database) or http (over its concurrent requests)",
            MetricType::Counter,
            tenants.iter().flat_map(|l| {
                [
                    (vec![("tenant", l.label.to_string()), ("layer", "pool".into())], count(l.counters.shed_pool)),
                    (vec![("tenant", l.label.to_string()), ("layer", "http".into())], count(l.counters.shed_http)),
                ]
            }),
        )?;
        family(
            &mut e,
            "tenantry_bypasses",
            "audited cross-tenant bypasses run, by action (they act in no single tenant)",
            MetricType::Counter,
            self.bypasses
                .iter()
                .map(|(action, n)| (vec![("action", action.to_string())], count(*n))),
        )?;
        let now = |l: &Labelled, pick: fn(&Held) -> usize| {
            l.tenants
                .iter()
                .filter_map(|t| self.held.get(t))
                .map(pick)
                .sum::<usize>() as f64
        };
        family(
            &mut e,
            "tenantry_tenant_connections",
            "tenant pool connections the tenant holds now",
            MetricType::Gauge,
            tenants
                .iter()
                .map(|l| (vec![("tenant", l.label.to_string())], now(l, |h| h.held))),
        )?;
        family(
            &mut e,
            "tenantry_tenant_waiting",
            "tenant transactions waiting in the tenant's queue now",
            MetricType::Gauge,
            tenants
                .iter()
                .map(|l| (vec![("tenant", l.label.to_string())], now(l, |h| h.waiting))),
        )?;
        let windows = |pick: fn(&super::load::Bucket) -> f64| {
            tenants.iter().flat_map(move |l| {
                [
                    (
                        vec![("tenant", l.label.to_string()), ("window", "1m".into())],
                        pick(&l.one_minute),
                    ),
                    (
                        vec![("tenant", l.label.to_string()), ("window", "5m".into())],
                        pick(&l.five_minutes),
                    ),
                ]
            })
        };
        family(
            &mut e,
            "tenantry_tenant_recent_db_seconds",
            "database seconds over the last minute or five (what `tenantry top` shows)",
            MetricType::Gauge,
            windows(|b| secs(b.db_us)),
        )?;
        family(
            &mut e,
            "tenantry_tenant_recent_pool_wait_seconds",
            "seconds waited for the pool over the last minute or five",
            MetricType::Gauge,
            windows(|b| secs(b.wait_us)),
        )?;
        family(
            &mut e,
            "tenantry_tenant_recent_shed",
            "requests refused with 429 over the last minute or five",
            MetricType::Gauge,
            windows(|b| count(b.sheds)),
        )?;
        family(
            &mut e,
            "tenantry_tenant_recent_transactions",
            "transactions over the last minute or five",
            MetricType::Gauge,
            windows(|b| count(b.transactions)),
        )?;
        family(
            &mut e,
            "tenantry_tenant_recent_requests",
            "requests over the last minute or five",
            MetricType::Gauge,
            windows(|b| count(b.requests)),
        )?;
        family(
            &mut e,
            "tenantry_pool_connections",
            "tenant pool connections: in_use by admitted transactions, and max",
            MetricType::Gauge,
            [
                (vec![("state", "in_use".into())], self.pool.0 as f64),
                (vec![("state", "max".into())], self.pool.1 as f64),
            ],
        )?;
        Ok(())
    }
}
