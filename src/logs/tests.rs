use super::*;

#[test]
fn only_our_crates_are_ours() {
    assert!(is_ours("partner_gateway"));
    assert!(is_ours("partner_gateway::proxy"));
    assert!(is_ours(ACCESS_TARGET));
    assert!(is_ours("gateway_core::policy"));
    assert!(!is_ours("partner_gateway_evil"));
    assert!(!is_ours("pingora_core::protocols::http::v1::server"));
    assert!(!is_ours("h2::codec"));
}

#[test]
fn text_lines_show_message_then_fields() {
    let line: Vec<(String, Value)> = [
        ("time", Value::from("2026-01-01T00:00:00.000Z")),
        ("level", "info".into()),
        ("target", "partner_gateway::reload".into()),
        ("message", "policy reloaded".into()),
        ("version", "abc".into()),
        ("partners", 3.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(
        json_line(&line[..2]),
        r#"{"time":"2026-01-01T00:00:00.000Z","level":"info"}"#
    );
    assert_eq!(
        text_line(&line),
        r#"2026-01-01T00:00:00.000Z INFO  partner_gateway::reload: policy reloaded version="abc" partners=3"#
    );
}

#[test]
fn a_panic_line_names_the_place_and_withholds_formatted_messages() {
    let here = std::panic::Location::caller();
    let line = panic_line(Some(here), Some("worker"), None);
    assert_eq!(
        line,
        format!(
            "panicked at {}:{} on thread \"worker\": message withheld (it may carry request data)",
            here.file(),
            here.line()
        )
    );
    let constant = panic_line(None, None, Some("constant text"));
    assert_eq!(
        constant,
        "panicked at an unknown place on thread \"unnamed\": constant text"
    );
}
