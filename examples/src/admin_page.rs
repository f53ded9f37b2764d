//! The Owner dashboard's HTML: server-rendered, self-contained (no external CDN), every value
//! escaped.

use std::fmt::Write;

use tenantry::audit_chain::ChainHead;
use tenantry::fairness::LoadSnapshot;

use crate::routes::admin::{AuditRow, TenantSummary};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 28px;display:flex;justify-content:space-between;align-items:center}
header h1{font-size:18px;margin:0;font-weight:600} header span{opacity:.8;font-size:14px}
main{max-width:1100px;margin:24px auto;padding:0 20px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:24px;padding:18px 22px}
h2{font-size:16px;margin:0 0 12px} table{width:100%;border-collapse:collapse;font-size:14px}
th{text-align:left;color:#5b6475;font-weight:600;border-bottom:2px solid #e6e8ec;padding:8px}
td{border-bottom:1px solid #eef0f3;padding:8px;vertical-align:top} td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;background:#eef2ff;color:#3949ab;border-radius:999px;padding:1px 8px;margin:1px 4px 1px 0;font-size:12px}
.muted{color:#8a93a3} code{font-size:12px}
svg.load text{font-size:12px;fill:#1d2330} svg.load rect.db{fill:#3949ab} svg.load rect.shed{fill:#d84315}
";

/// Tenants drawn in the load chart at most (the busiest).
const LOAD_ROWS: usize = 10;

/// "Load by tenant": a bar per tenant of its database time over the window, its sheds (429) in
/// red beside it, and the figures as text; the same data as `/metrics` and `tenantry top`.
fn load_chart(load: &LoadSnapshot) -> String {
    let rows: Vec<_> = load
        .tenants
        .iter()
        .filter(|t| t.recent_db_seconds > 0.0 || t.recent_sheds > 0 || t.connections > 0)
        .take(LOAD_ROWS)
        .collect();
    let pool = format!(
        "<p id=\"load-pool\" class=\"muted\">tenant pool: {} of {} connections in use now · last {} minutes</p>",
        load.pool_in_use,
        load.pool_size,
        load.window.as_secs() / 60
    );
    if rows.is_empty() {
        return format!(
            "{pool}<p class=\"muted\" id=\"load-empty\">no tenant load in this window</p>"
        );
    }
    let max_db = rows
        .iter()
        .map(|t| t.recent_db_seconds)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let max_shed = rows
        .iter()
        .map(|t| t.recent_sheds)
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, row_h) = (150.0, 300.0, 24.0);
    let mut svg = format!(
        "<svg class=\"load\" id=\"load-chart\" role=\"img\" aria-label=\"database time and sheds by tenant\" \
         width=\"760\" height=\"{}\" viewBox=\"0 0 760 {}\">",
        rows.len() as f64 * row_h + 4.0,
        rows.len() as f64 * row_h + 4.0
    );
    for (i, t) in rows.iter().enumerate() {
        let y = i as f64 * row_h;
        let db_w = (t.recent_db_seconds / max_db * bar_w).max(1.0);
        let shed_w = if t.recent_sheds == 0 {
            0.0
        } else {
            (t.recent_sheds as f64 / max_shed as f64 * 60.0).max(2.0)
        };
        let label = escape(&t.label());
        let _ = write!(
            svg,
            "<g class=\"tenant-load\" data-tenant=\"{label}\" data-db-seconds=\"{db:.3}\" data-sheds=\"{sheds}\">\
             <text x=\"0\" y=\"{ty}\">{label}</text>\
             <rect class=\"db\" x=\"{label_w}\" y=\"{ry}\" width=\"{db_w:.1}\" height=\"14\"><title>{db:.3} s in the database</title></rect>\
             <rect class=\"shed\" x=\"{sx:.1}\" y=\"{ry}\" width=\"{shed_w:.1}\" height=\"14\"><title>{sheds} refused (429)</title></rect>\
             <text x=\"{tx:.1}\" y=\"{ty}\">{db:.2} s · {tx_n} tx · {sheds} shed · {conns} conn</text></g>",
            db = t.recent_db_seconds,
            sheds = t.recent_sheds,
            ty = y + 15.0,
            ry = y + 3.0,
            sx = label_w + db_w + 2.0,
            tx = label_w + bar_w + 70.0,
            tx_n = t.recent_transactions,
            conns = t.connections,
        );
    }
    svg.push_str("</svg>");
    format!("{pool}{svg}")
}

/// The audit chain's head: the last linked row and the start of its hash (the full hash is the
/// element's title, and `tenantry audit --verify` prints it).
fn chain_head(head: &ChainHead) -> String {
    match head.audit_id {
        None => "<span class=\"muted\">empty: no row linked yet</span>".to_owned(),
        Some(id) => format!(
            "row <b id=\"chain-head-row\">{id}</b> · sha256 <code id=\"chain-head-hash\" title=\"{full}\">{short}</code> \
             <span class=\"muted\">· {rows} linked · this page's own row links when it commits</span>",
            full = head.hex(),
            short = head.short(),
            rows = if head.rows == 1 {
                "1 row".to_owned()
            } else {
                format!("{} rows", head.rows)
            },
        ),
    }
}

/// The dashboard page for `owner_email`.
pub fn render(
    owner_email: &str,
    tenants: &[TenantSummary],
    audit: &[AuditRow],
    head: &ChainHead,
    load: &LoadSnapshot,
) -> String {
    let mut tenant_rows = String::new();
    for t in tenants {
        let totals: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&t.totals).unwrap_or_default();
        let mut pills = String::new();
        for (currency, cents) in &totals {
            let _ = write!(
                pills,
                "<span class=\"pill\">{} {}</span>",
                escape(currency),
                money(cents.as_i64().unwrap_or(0))
            );
        }
        if pills.is_empty() {
            pills.push_str("<span class=\"muted\">none</span>");
        }
        let _ = write!(
            tenant_rows,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&t.name),
            escape(&t.slug),
            t.invoice_count,
            pills
        );
    }
    let mut audit_rows = String::new();
    for a in audit {
        let _ = write!(
            audit_rows,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            a.id,
            escape(&a.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            escape(&a.actor_email),
            escape(&a.action),
            escape(&a.reason),
            a.tenant_id.map(|t| t.to_string()).unwrap_or_else(|| "—".into()),
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>tenantry · Owner dashboard</title><style>{STYLE}</style></head><body>\
<header><h1>tenantry · Owner dashboard</h1><span>{owner}</span></header><main>\
<section id=\"tenants\"><h2>Tenants ({tcount})</h2><table><thead><tr><th>Name</th><th>Slug</th>\
<th class=\"num\">Invoices</th><th>Totals (not void)</th></tr></thead><tbody>{tenant_rows}</tbody></table></section>\
<section id=\"load\"><h2>Load by tenant</h2>{load}</section>\
<section id=\"audit\"><h2>Recent audit log</h2>\
<p id=\"chain-head\">Chain head: {head}</p><table><thead><tr><th class=\"num\">#</th><th>At</th><th>Actor</th>\
<th>Action</th><th>Reason</th><th>Tenant</th></tr></thead><tbody>{audit_rows}</tbody></table></section>\
</main></body></html>",
        owner = escape(owner_email),
        tcount = tenants.len(),
        head = chain_head(head),
        load = load_chart(load),
    )
}
