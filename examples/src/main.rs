//! `cargo run -p tenantry-example`: the example invoicing SaaS on `TENANTRY_BIND`
//! (default `127.0.0.1:3000`).

use std::time::Duration;

use tenantry::log_limit::LogLimit;
use tenantry::settings::Settings;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() {
    // One warning or error per distinct failure every 10 s, the rest counted: an outage logs a
    // few lines, not one per failed request.
    let limit = LogLimit::new(Duration::from_secs(10));
    let env_filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(limit.clone())
                .with_filter(env_filter),
        )
        .init();
    tokio::spawn(limit.report());
    // The example alone has a default database: its own (tenantry's settings have none).
    let mut vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    vars.entry("DATABASE_URL".to_owned())
        .or_insert_with(|| tenantry_example::DATABASE_URL.to_owned());
    let settings = match Settings::from_map(&vars) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tenantry-example: {e}");
            std::process::exit(2);
        }
    };
    let server = match tenantry_example::Server::build(&settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tenantry-example: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(addr = %server.addr, mode = settings.auth.name(), "serving");
    if let Some(metrics) = server.metrics_addr() {
        tracing::info!(addr = %metrics, "serving per-tenant metrics at /metrics");
    }
    println!(
        "tenantry-example listening on http://{} ({} mode)",
        server.addr,
        settings.auth.name()
    );
    // Until SIGTERM or Ctrl-C; then in-flight requests finish and the pools close: exit 0.
    if let Err(e) = server.serve().await {
        eprintln!("tenantry-example: {e}");
        std::process::exit(1);
    }
    tracing::info!("stopped");
}
