use super::*;

#[test]
fn tls_parameters_are_taken_off_the_url() {
    let (rest, p) = split(
        "postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=%2Fca.pem&application_name=x",
    )
    .unwrap();
    assert_eq!(rest, "postgres://u@h:5432/db?application_name=x");
    assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
    assert_eq!(p.sslrootcert.as_deref(), Some("/ca.pem"));
    let (rest, p) = split("host=h sslmode=require dbname='my db'").unwrap();
    assert_eq!(rest, "host='h' dbname='my db' ");
    assert_eq!(p.sslmode.as_deref(), Some("require"));
}

#[test]
fn modes_follow_libpq() {
    let mode = |url: &str| request(url).map(|r| r.mode);
    assert_eq!(mode("postgres://h/db"), Ok(SslMode::Prefer));
    assert_eq!(
        mode("postgres://h/db?sslrootcert=system"),
        Ok(SslMode::VerifyFull)
    );
    assert!(mode("postgres://h/db?sslmode=require&sslrootcert=system")
        .unwrap_err()
        .contains("verify-full"));
    assert!(mode("postgres://h/db?sslmode=verify-ca")
        .unwrap_err()
        .contains("sslrootcert"));
    assert!(mode("postgres://h/db?sslmode=allow")
        .unwrap_err()
        .contains("prefer"));
    assert!(mode("postgres://h/db?sslmode=on")
        .unwrap_err()
        .contains("verify-full"));
    assert!(split("postgres://h/db?sslcert=/c.pem").is_err());
}

#[test]
fn production_wants_tls_to_other_hosts() {
    assert!(require_tls_in_production("postgres://u@db.internal/app").is_err());
    assert!(require_tls_in_production("postgres://u@db.internal/app?sslmode=prefer").is_err());
    assert!(require_tls_in_production("postgres://u@db.internal/app?sslmode=require").is_ok());
    assert!(require_tls_in_production("postgres://u@db.internal/app?sslmode=disable").is_ok());
    assert!(require_tls_in_production("postgres://u@127.0.0.1/app").is_ok());
    assert!(require_tls_in_production("postgres://u@localhost/app").is_ok());
    assert!(require_tls_in_production("postgres://u@[::1]/app").is_ok());
    assert!(require_tls_in_production("postgres://u@%2Frun%2Fpostgresql/app").is_ok());
}
