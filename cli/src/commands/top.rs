//! `tenantry top`: the busiest tenants of a running instance, read from its metrics endpoint
//! (`tenantry_tenant_recent_*` over the last minute or five, and the gauges of now).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::TopArgs;
use crate::error::CliError;

const DEFAULT_URL: &str = "http://127.0.0.1:9100/metrics";
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest metrics text read.
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One tenant's row.
#[derive(Debug, Default, Clone, PartialEq)]
struct Row {
    db_seconds: f64,
    sheds: f64,
    transactions: f64,
    wait_seconds: f64,
    connections: f64,
    waiting: f64,
}

pub(super) async fn run(args: &TopArgs, out: &mut impl Write) -> Result<(), CliError> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => std::env::var("TENANTRY_METRICS_URL").unwrap_or_else(|_| DEFAULT_URL.into()),
    };
    let text = fetch(&url).await?;
    let (rows, pool) = parse(&text, &args.window);
    if rows.is_empty() && pool.is_none() {
        return Err(CliError::NotMetrics { url });
    }
    let mut rows: Vec<(String, Row)> = rows
        .into_iter()
        .filter(|(_, r)| {
            r.db_seconds > 0.0 || r.sheds > 0.0 || r.transactions > 0.0 || r.connections > 0.0
        })
        .collect();
    rows.sort_by(|a, b| {
        b.1.db_seconds
            .total_cmp(&a.1.db_seconds)
            .then(b.1.sheds.total_cmp(&a.1.sheds))
            .then(a.0.cmp(&b.0))
    });
    let pool = pool
        .map(|(used, max)| format!(" (tenant pool: {used} of {max} connections in use)"))
        .unwrap_or_default();
    writeln!(
        out,
        "busiest tenants over the last {} at {url}{pool}",
        args.window
    )?;
    if rows.is_empty() {
        writeln!(out, "no tenant load in the last {}", args.window)?;
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|(t, _)| t.chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 40);
    writeln!(
        out,
        "{:<width$}  {:>10}  {:>8}  {:>8}  {:>8}  {:>5}  {:>7}",
        "TENANT", "DB s", "SHED", "TX", "WAIT s", "CONN", "WAITING"
    )?;
    for (tenant, r) in rows.iter().take(usize::from(args.limit)) {
        writeln!(
            out,
            "{tenant:<width$}  {:>10.3}  {:>8}  {:>8}  {:>8.3}  {:>5}  {:>7}",
            r.db_seconds, r.sheds, r.transactions, r.wait_seconds, r.connections, r.waiting
        )?;
    }
    Ok(())
}

/// GETs `url` (plain HTTP: a metrics endpoint on a private bind) and returns its body.
async fn fetch(url: &str) -> Result<String, CliError> {
    let unreachable = |detail: String| CliError::MetricsUnreachable {
        url: url.to_owned(),
        detail,
    };
    let parsed = url::Url::parse(url).map_err(|e| CliError::BadUrl {
        origin: "--url",
        problem: e.to_string(),
    })?;
    if parsed.scheme() != "http" {
        return Err(CliError::BadUrl {
            origin: "--url",
            problem: format!(
                "only http:// is read (a metrics endpoint on a private bind), not {}://",
                parsed.scheme()
            ),
        });
    }
    let host = parsed.host_str().ok_or_else(|| CliError::BadUrl {
        origin: "--url",
        problem: "no host".into(),
    })?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: application/openmetrics-text, text/plain\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_BYTES as u64)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok::<_, CliError>(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))??;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| unreachable("not an HTTP answer".into()))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if status != "200" {
        return Err(unreachable(format!("HTTP status {status}")));
    }
    Ok(body.to_owned())
}

/// The per-tenant rows of `window` and the pool's `(in use, max)`, from an OpenMetrics text.
fn parse(text: &str, window: &str) -> (BTreeMap<String, Row>, Option<(f64, f64)>) {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let (mut used, mut max) = (None, None);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        if name == "tenantry_pool_connections" {
            match labels.get("state").map(String::as_str) {
                Some("in_use") => used = Some(value),
                Some("max") => max = Some(value),
                _ => {}
            }
            continue;
        }
        let Some(tenant) = labels.get("tenant") else {
            continue;
        };
        let in_window = labels.get("window").is_some_and(|w| w == window);
        let field: Option<fn(&mut Row) -> &mut f64> = match name {
            "tenantry_tenant_recent_db_seconds" if in_window => Some(|r| &mut r.db_seconds),
            "tenantry_tenant_recent_shed" if in_window => Some(|r| &mut r.sheds),
            "tenantry_tenant_recent_transactions" if in_window => Some(|r| &mut r.transactions),
            "tenantry_tenant_recent_pool_wait_seconds" if in_window => {
                Some(|r| &mut r.wait_seconds)
            }
            "tenantry_tenant_connections" => Some(|r| &mut r.connections),
            "tenantry_tenant_waiting" => Some(|r| &mut r.waiting),
            _ => None,
        };
        if let Some(field) = field {
            *field(rows.entry(tenant.clone()).or_default()) = value;
        }
    }
    (rows, used.zip(max))
}

/// `a="x",b="y\"z"` as a map (values unescaped).
fn labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_window_asked_and_the_gauges_of_now() {
        let text = "\
# TYPE tenantry_tenant_recent_db_seconds gauge
tenantry_tenant_recent_db_seconds{tenant=\"acme\",window=\"1m\"} 1.5
tenantry_tenant_recent_db_seconds{tenant=\"acme\",window=\"5m\"} 9.0
tenantry_tenant_recent_shed{tenant=\"a\\\"b\",window=\"5m\"} 3.0
tenantry_tenant_connections{tenant=\"acme\"} 4
tenantry_pool_connections{state=\"in_use\"} 5
tenantry_pool_connections{state=\"max\"} 16
# EOF
";
        let (rows, pool) = parse(text, "5m");
        assert_eq!(rows["acme"].db_seconds, 9.0);
        assert_eq!(rows["acme"].connections, 4.0);
        assert_eq!(rows["a\"b"].sheds, 3.0);
        assert_eq!(pool, Some((5.0, 16.0)));
        assert_eq!(parse(text, "1m").0["acme"].db_seconds, 1.5);
    }
}
