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

#[test]
fn a_method_no_request_can_carry_names_its_line() {
    for method in ["\"\"", "\"PO ST\""] {
        let text = format!("- name: x\n  partner: p\n  method: {method}\n  path: /a\n  expect: {{ status: 405, error: method_not_allowed }}\n");
        let errors = parse(&text).unwrap_err();
        let [e] = errors.as_slice() else {
            panic!("{errors:?}")
        };
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.message.contains("is not an HTTP method"), "{e:?}");
    }
}

#[test]
fn a_path_without_its_slash_names_its_line() {
    let text =
        "- name: x\n  partner: p\n  path: v1/a\n  expect: { status: 400, error: bad_request }\n";
    let errors = parse(text).unwrap_err();
    let [e] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!(e.line, 3, "{e:?}");
    assert!(e.message.contains("starts with `/`"), "{e:?}");
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
