use super::*;

#[test]
fn suggestions_are_yaml_lines_with_data_like_names_held_back() {
    let report = serde_json::json!({"routes": [{
    "partner": "acme-ship", "route": "/v1/shipments", "not_listed": 0,
    "paths": [
        {"path": "shipments[*].phone", "count": 3, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:05:00Z", "shapes": ["scalar"]},
        {"path": "shipments[*].meta", "count": 1, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:00:00Z", "shapes": ["object"]},
        {"path": "by_customer.*", "count": 9, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:00:00Z", "shapes": ["scalar"]}
    ]}]});
    let mut out = Vec::new();
    write_suggestions(&report, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("# partners/acme-ship.yaml, route /v1/shipments"),
        "{text}"
    );
    assert!(text.contains("      - shipments[*].phone "), "{text}");
    assert!(
        text.contains("      # not suggested: shipments[*].meta ("),
        "{text}"
    );
    assert!(!text.contains("meta.**"), "{text}");
    assert!(
        text.contains("      # not suggested: by_customer.*"),
        "{text}"
    );
    assert!(!text.contains("      - by_customer"), "{text}");
}

/// A customer's id under another spelling, and paths no gateway writes (an `--admin` answer
/// from elsewhere), are listed as not suggested, never as allow lines.
#[test]
fn identifiers_and_foreign_paths_get_no_allow_line() {
    let seen = r#""count": 1, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:00:00Z", "shapes": ["scalar"]"#;
    let paths: Vec<String> = ["contacts[*].customerId", "contacts[*].**", "**", "a[0].b"]
        .iter()
        .map(|p| format!(r#"{{"path": "{p}", {seen}}}"#))
        .collect();
    let report: Value = serde_json::from_str(&format!(
        r#"{{"routes": [{{"partner": "brightmail-offers", "route": "/v1/audiences", "not_listed": 0, "paths": [{}]}}]}}"#,
        paths.join(",")
    ))
    .unwrap();
    let mut out = Vec::new();
    write_suggestions(&report, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(
            "# not suggested: contacts[*].customerId (looks like a customer's identifier"
        ),
        "{text}"
    );
    for path in ["contacts[*].**", "**", "a[0].b"] {
        assert!(
            text.contains(&format!("# not suggested: {path} (not a path")),
            "{text}"
        );
    }
    assert!(!text.contains("      - "), "{text}");
}

/// A name YAML reads as something other than text is suggested quoted, so that the pasted line
/// is the field name and not an error.
#[test]
fn a_name_yaml_would_not_read_as_text_is_quoted() {
    let path = |p: &str| serde_json::json!({"path": p, "count": 1, "first_seen": "2026-08-15T10:00:00Z", "last_seen": "2026-08-15T10:00:00Z", "shapes": ["scalar"]});
    let report = serde_json::json!({"routes": [{
        "partner": "acme-ship", "route": "/v1/shipments", "not_listed": 0,
        "paths": [path("null"), path("True"), path("no"), path("nullable"), path("a.null")]
    }]});
    let mut out = Vec::new();
    write_suggestions(&report, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    for quoted in ["\"null\"", "\"True\"", "\"no\""] {
        assert!(
            text.contains(&format!("      - {quoted} ")),
            "{quoted}: {text}"
        );
    }
    for plain in ["nullable", "a.null"] {
        assert!(
            text.contains(&format!("      - {plain} ")),
            "{plain}: {text}"
        );
    }
}

#[test]
fn an_answer_cannot_add_lines_or_terminal_escapes() {
    let report = serde_json::json!({"routes": [{
    "partner": "acme\u{1b}[2J", "route": "/v1/x\n    allow: [\"**\"]", "not_listed": 0,
    "paths": [
        {"path": "a\nb", "count": 1, "first_seen": "t\r", "last_seen": "t", "shapes": ["scalar"]}
    ]}]});
    for write in [write_suggestions, write_list] {
        let mut out = Vec::new();
        write(&report, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(!text.contains('\r'), "{text}");
        assert!(
            text.lines()
                .all(|l| !l.trim_start().starts_with("allow: [")),
            "{text}"
        );
    }
}

/// An admin listener stand-in that answers one connection with `head` and then, if `endless`,
/// spaces for ever; its address.
fn answering(head: &'static [u8], endless: bool) -> String {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = conn.write_all(head);
        let chunk = vec![b' '; 1 << 20];
        while endless && conn.write_all(&chunk).is_ok() {}
    });
    addr
}

#[test]
fn an_endless_answer_is_an_error_not_exhausted_memory() {
    let addr = answering(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n[",
        true,
    );
    assert!(crate::http1::send(&addr, "GET", "/drift", &[], None).is_err());
}

#[test]
fn a_huge_chunk_size_is_an_error_not_a_panic() {
    let addr = answering(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\n",
        false,
    );
    assert!(crate::http1::send(&addr, "GET", "/drift", &[], None).is_err());
}
