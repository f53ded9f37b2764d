use super::*;

#[test]
fn session_timeouts_go_first_so_the_url_wins() {
    let connector = Connector::new(
        "postgres://u@h:5432/db?options=-c%20lock_timeout%3D9s",
        Timeouts::default(),
        Pooler::Direct,
    )
    .unwrap();
    let options = connector.config.get_options().unwrap();
    assert!(
        options.starts_with("-c statement_timeout=5000 -c lock_timeout=2000"),
        "{options}"
    );
    assert!(options.ends_with("-c lock_timeout=9s"), "{options}");
}

#[test]
fn behind_a_transaction_pooler_no_timeouts_are_sent_at_startup() {
    let plain = Connector::new(
        "postgres://u@h:6432/db",
        Timeouts::default(),
        Pooler::Transaction,
    )
    .unwrap();
    assert_eq!(plain.config.get_options(), None);
    let own = Connector::new(
        "postgres://u@h:6432/db?options=-c%20lock_timeout%3D9s",
        Timeouts::default(),
        Pooler::Transaction,
    )
    .unwrap();
    assert_eq!(own.config.get_options(), Some("-c lock_timeout=9s"));
}
