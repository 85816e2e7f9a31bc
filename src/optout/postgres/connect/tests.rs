use super::*;

#[test]
fn sslrootcert_is_taken_out_of_the_url() {
    assert_eq!(
        take_param(
            "postgres://u@h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem",
            "sslrootcert"
        ),
        (
            "postgres://u@h/db?sslmode=require".to_string(),
            Some("/tmp/ca.pem".to_string())
        )
    );
    assert_eq!(
        take_param("postgres://u@h/db?sslrootcert=x", "sslrootcert"),
        ("postgres://u@h/db".to_string(), Some("x".to_string()))
    );
    assert_eq!(
        take_param("host=h sslrootcert=/ca.pem user=u", "sslrootcert"),
        ("host=h user=u".to_string(), Some("/ca.pem".to_string()))
    );
    assert_eq!(take_param("postgres://h/db", "sslrootcert").1, None);
}

#[test]
fn sslmode_comes_from_the_url() {
    let plain = Target::parse("postgres://u@127.0.0.1:1/db?sslmode=disable", "t").unwrap();
    assert!(plain.tls.is_none());
    let tls = Target::parse("postgres://u@127.0.0.1:1/db?sslmode=verify-full", "t").unwrap();
    assert!(tls.tls.is_some());
    assert_eq!(tls.config.get_ssl_mode(), SslMode::Require);
    let bad = Target::parse("postgres://u:secretpw@h/db?sslmode=bogus", "t")
        .err()
        .unwrap();
    assert!(!format!("{bad:#}").contains("secretpw"));
}

#[test]
fn a_bad_url_names_the_option_but_never_quotes_the_url() {
    let port = Target::parse("postgres://u:secretpw@h:notaport/db", "t")
        .err()
        .unwrap();
    let port = format!("{port:#}");
    assert!(port.contains("invalid value for option `port`"), "{port}");
    assert!(
        !port.contains("secretpw") && !port.contains("notaport"),
        "{port}"
    );
    let mode = Target::parse("postgres://u:pw@h/db?sslmode=bogus", "t")
        .err()
        .unwrap();
    assert!(format!("{mode:#}").contains("option `sslmode`"), "{mode:#}");
    // An unquoted space in a key=value password: the driver's reason ("unknown option")
    // would quote the password's tail.
    let tail = Target::parse("host=h user=u password=pa sswo=rd", "t")
        .err()
        .unwrap();
    let tail = format!("{tail:#}");
    assert!(!tail.contains("sswo"), "{tail}");
}
