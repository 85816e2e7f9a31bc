use super::*;

#[test]
fn server_names() {
    for ok in ["api.example", "127.0.0.1", "::1", "a-b.c-d.example", "x."] {
        assert!(valid_server_name(ok), "{ok}");
    }
    for bad in [
        "",
        ".",
        "a..b",
        "-a.example",
        "a b",
        "a/b",
        "é.example",
        "api_x.example",
        "a.b_c.example",
    ] {
        assert!(!valid_server_name(bad), "{bad}");
    }
}

#[test]
fn plain_listener_warning_only_off_loopback() {
    assert!(plain_listen_warning("127.0.0.1:8080".parse().unwrap()).is_none());
    assert!(plain_listen_warning("[::1]:8080".parse().unwrap()).is_none());
    assert!(plain_listen_warning("0.0.0.0:8080".parse().unwrap()).is_some());
    assert!(plain_listen_warning("10.0.0.5:8080".parse().unwrap()).is_some());
}
