use super::*;

#[test]
fn parses_requests_and_both_kinds_of_expectation() {
    let text = r#"
- name: forwarded
  partner: acme-ship
  path: /v1/shipments
  caller: orders-service
  headers: { X-Request-Id: t-1 }
  body: { order_id: 7 }
  optouts: { c-1: [partner_sharing] }
  expect:
    body: { order_id: 7 }
    headers: { x-request-id: t-1, cookie: null }
- name: refused
  partner: acme-ship
  method: get
  path: /nope
  body: '{"a":1,"a":2}'
  expect: { status: 403, error: route_not_allowed }
"#;
    let cases = parse(text).unwrap();
    assert_eq!(cases.len(), 2);
    let first = &cases[0];
    assert_eq!(first.line, 2);
    assert_eq!(first.method, "POST");
    assert_eq!(first.headers, vec![("x-request-id".into(), "t-1".into())]);
    assert_eq!(first.body, Body::Bytes(br#"{"order_id":7}"#.to_vec()));
    match first.expect.as_ref().unwrap() {
        Expect::Forwarded {
            body,
            body_line,
            headers,
            ..
        } => {
            assert_eq!(
                *body,
                ExpectedBody::Json(serde_json::json!({"order_id": 7}))
            );
            assert_eq!(*body_line, 10);
            assert_eq!(headers[1], ("cookie".to_string(), None));
        }
        other => panic!("{other:?}"),
    }
    // As written: the gateway would refuse `get` (methods are case-sensitive).
    assert_eq!(cases[1].method, "get");
    assert_eq!(cases[1].body, Body::Bytes(br#"{"a":1,"a":2}"#.to_vec()));
    assert_eq!(
        cases[1].expect.clone().unwrap(),
        Expect::Refused {
            status: 403,
            code: "route_not_allowed".into(),
            line: 17
        }
    );
}

/// A request no caller could send (a method that is no HTTP token, a path without its `/`) is
/// an error on the line that gives it.
#[test]
fn a_request_no_caller_could_send_names_its_line() {
    for (line, says) in [
        ("method: \"\"", "is not an HTTP method"),
        ("method: \"PO ST\"", "is not an HTTP method"),
        ("path: v1/a", "starts with `/`"),
    ] {
        let path = if line.starts_with("path") {
            ""
        } else {
            "  path: /a\n"
        };
        let text = format!(
            "- name: x\n  partner: p\n  {line}\n{path}  expect: {{ status: 400, error: bad_request }}\n"
        );
        let errors = parse(&text).unwrap_err();
        let [e] = errors.as_slice() else {
            panic!("{line}: {errors:?}")
        };
        assert_eq!(e.line, 3, "{line}: {e:?}");
        assert!(e.message.contains(says), "{line}: {e:?}");
    }
}

#[test]
fn malformed_cases_name_their_line() {
    let half = "- name: x\n  partner: p\n  path: /a\n  expect: { status: 400 }\n";
    assert_eq!(parse(half).unwrap_err()[0].line, 4);
    let both =
        "- name: x\n  partner: p\n  path: /a\n  body: {}\n  body_file: f.json\n  expect: {}\n";
    assert_eq!(parse(both).unwrap_err()[0].line, 5);
    let unknown = "- name: x\n  partner: p\n  path: /a\n  expect: {}\n  bdy: 1\n";
    let err = &parse(unknown).unwrap_err()[0];
    assert_eq!(err.line, 5, "{err:?}");
}

#[test]
fn diff_marks_expected_and_actual_lines() {
    let diff = unified_diff(
        &pretty_json(br#"{"a":1,"b":2}"#),
        &pretty_json(br#"{"a":1,"b":3}"#),
    );
    assert_eq!(
        diff,
        "  {\n    \"a\": 1,\n-   \"b\": 2\n+   \"b\": 3\n  }\n"
    );
}

/// Headers the gateway adds only when it sends the request (framing, the signed token, the
/// partner's credential) cannot be checked by a test, which neither connects nor signs: an
/// expectation about one fails and says so, rather than pass while the gateway sends it.
#[test]
fn headers_added_when_sending_cannot_be_expected() {
    let gateway = "callers: { issuer: i, audience: a, keys: k.json }\nsigning: { issuer: i, key: k.pem, kid: k }\n";
    let partner = "kind: contractor\npurpose: support\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/notes\n    methods: [POST]\n    allow: [note]\nallowed_callers: [orders]\nupstream_auth: { header: X-Api-Key, env: ACME_TOKEN }\n".to_string();
    let policy = crate::policy::load::one_partner(gateway, partner, None);
    let read = |_: &str| -> Result<Vec<u8>, String> { Err("no files".into()) };
    let case = |header: &str| {
        format!(
            "- name: x\n  partner: acme\n  path: /v1/notes\n  caller: orders\n  body: {{ note: n }}\n  expect:\n    body: {{ note: n }}\n    headers: {{ {header}: null }}\n"
        )
    };
    for header in [
        "x-api-key",
        "X-Api-Key",
        "ohsoft-data-use-token",
        "content-length",
        "host",
    ] {
        let cases = parse(&case(header)).unwrap();
        let failure = run_case(&policy, &cases[0], &read).unwrap_err();
        assert_eq!(failure.line, 8, "{header}");
        assert!(
            failure.message.contains("cannot check it"),
            "{header}: {}",
            failure.message
        );
    }
    // What the test does model still passes.
    let cases = parse(&case("authorization")).unwrap();
    assert!(run_case(&policy, &cases[0], &read).is_ok());
}
