use super::*;

#[test]
fn the_table() {
    let rows: Vec<(u16, &str)> = RefusalKind::ALL
        .iter()
        .map(|k| (k.status(), k.code()))
        .collect();
    assert_eq!(
        rows,
        [
            (400, "bad_request"),
            (401, "unauthenticated"),
            (403, "caller_not_allowed"),
            (403, "route_not_allowed"),
            (404, "unknown_partner"),
            (405, "method_not_allowed"),
            (413, "body_too_large"),
            (408, "request_timeout"),
            (431, "header_too_large"),
            (415, "unsupported_media_type"),
            (403, "legal_basis_missing"),
            (422, "subject_missing"),
            (451, "subject_opted_out"),
            (503, "not_ready"),
            (502, "upstream_error"),
            (504, "upstream_timeout"),
            (500, "internal_error"),
        ]
    );
}

#[test]
fn json_body_has_code_and_message() {
    let body = Refusal::new(RefusalKind::UnknownPartner, "no partner \"x\"").to_json();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "unknown_partner");
    assert_eq!(v["message"], "no partner \"x\"");
}
