//! The per-tenant counts: labels bounded, counts monotonic per label.

use super::*;

fn find<'a>(labelled: &'a [Labelled], label: &str) -> &'a Labelled {
    labelled
        .iter()
        .find(|l| &*l.label == label)
        .unwrap_or_else(|| panic!("no label {label}"))
}

#[test]
fn at_most_n_tenants_are_named_and_the_rest_are_other() {
    let load = Load::new(2);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    load.name(a, "acme");
    load.name(b, "globex");
    load.name(c, "initech");
    for t in [a, b, c] {
        load.finished(
            t,
            false,
            Duration::from_millis(1),
            Duration::from_millis(5),
            3,
        );
    }
    load.shed(c, Layer::Pool);
    let labelled = load.labelled();
    assert_eq!(labelled.len(), 3, "two names and _other");
    assert_eq!(find(&labelled, "acme").counters.transactions, 1);
    assert_eq!(find(&labelled, "globex").counters.rows, 3);
    let other = find(&labelled, OTHER);
    assert_eq!(other.tenants, vec![c]);
    assert_eq!(other.counters.transactions, 1);
    assert_eq!(other.counters.shed_pool, 1);
    assert_eq!(other.counters.db_us, 5_000);
}

#[test]
fn a_tenant_named_later_starts_at_zero_and_other_keeps_what_it_counted() {
    let load = Load::new(1);
    let (quiet, busy) = (Uuid::new_v4(), Uuid::new_v4());
    load.finished(quiet, false, Duration::ZERO, Duration::from_micros(1), 0);
    for _ in 0..10 {
        load.finished(busy, false, Duration::ZERO, Duration::from_millis(10), 0);
    }
    let mut inner = load.lock();
    // The next ranking: the busy tenant takes the only label from the quiet one.
    rank(&mut inner, 0, 1);
    drop(inner);
    load.finished(busy, false, Duration::ZERO, Duration::from_millis(10), 0);
    let labelled = load.labelled();
    let named = find(&labelled, &busy.to_string());
    assert_eq!(named.counters.transactions, 1, "counted from its naming on");
    let other = find(&labelled, OTHER);
    assert_eq!(
        other.counters.transactions, 10,
        "its earlier ten stay in _other"
    );
    assert_eq!(other.tenants, vec![quiet]);
}

#[test]
fn requests_count_by_route_and_status_and_bypasses_by_action() {
    let load = Load::new(5);
    let a = Uuid::new_v4();
    let route: Arc<str> = "/api/invoices".into();
    load.request(a, &route, 200);
    load.request(a, &route, 200);
    load.request(a, &route, 429);
    load.bypass("admin.tenants");
    let labelled = load.labelled();
    let l = find(&labelled, &a.to_string());
    assert_eq!(l.counters.requests[&(route.clone(), 200)], 2);
    assert_eq!(l.counters.requests[&(route, 429)], 1);
    assert_eq!(l.five_minutes.requests, 3);
    assert_eq!(load.bypasses(), vec![("admin.tenants".into(), 1)]);
}

#[test]
fn the_export_names_tenants_and_parses_as_openmetrics() {
    let load = Load::new(5);
    let a = Uuid::new_v4();
    load.name(a, "acme");
    load.finished(
        a,
        false,
        Duration::from_millis(2),
        Duration::from_millis(250),
        7,
    );
    load.shed(a, Layer::Http);
    let text = super::super::export::render(&load, HashMap::new(), (3, 16));
    for line in [
        "tenantry_tenant_db_seconds_total{tenant=\"acme\"} 0.25",
        "tenantry_tenant_rows_total{tenant=\"acme\"} 7",
        "tenantry_tenant_shed_total{tenant=\"acme\",layer=\"http\"} 1",
        "tenantry_tenant_recent_db_seconds{tenant=\"acme\",window=\"5m\"} 0.25",
        "tenantry_pool_connections{state=\"in_use\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}
