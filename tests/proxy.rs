//! The real gateway in front of a real recording upstream: what the partner received, byte for
//! byte, and for every refusal, that it received nothing.
mod util;

use util::*;

const SHIP_ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret")];

fn start() -> (Mock, Gateway) {
    let mock = Mock::start();
    let gateway = Gateway::start("", &[("acme-ship", &ship_partner(&mock.url()))], SHIP_ENV);
    (mock, gateway)
}

const SHIPMENT: &str = r#"{"order_id": 1e3, "shipments": [{"customer_id": "c-1", "name": "Ada", "email": "ada@example.com",
 "card_number": "4111 1111 1111 1111", "address": {"street": "1 Main St", "geo": {"lat": 1.50}},
 "items": [{"sku": "A-1", "price": 9.99}], "ip": "203.0.113.9"}], "debug": {"x": 1}}"#;

const SHIPMENT_FILTERED: &str = r#"{"order_id":1e3,"shipments":[{"customer_id":"c-1","name":"Ada","card_number":"***1111","address":{"street":"1 Main St","geo":{"lat":1.50}},"items":[{"sku":"A-1"}]}]}"#;

#[test]
fn partner_receives_exactly_the_allowed_fields() {
    let (mock, gateway) = start();
    let response = gateway.send(
        "POST",
        "/acme-ship/v1/shipments?page=2&email=x@y&page=3;debug=1",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-7"),
            ("authorization", "Bearer caller-token"),
            ("cookie", "session=1"),
            ("user-agent", "Mozilla/5.0"),
            ("referer", "https://shop.example/"),
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("x-secret", "s"),
        ],
        Some(SHIPMENT.as_bytes()),
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(mock.only_body(), SHIPMENT_FILTERED);
    let received = &mock.received()[0];
    assert_eq!(received["path"], "/v1/shipments");
    assert_eq!(received["query"], "page=2&page=3%3Bdebug%3D1");
    let headers = mock.only_headers();
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    for banned in [
        "cookie",
        "user-agent",
        "referer",
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-secret",
    ] {
        assert!(
            !names.contains(&banned),
            "{banned} reached the partner: {names:?}"
        );
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("authorization"),
        Some("Bearer partner-secret"),
        "the partner's credential, not the caller's"
    );
    assert_eq!(get("x-request-id"), Some("req-7"));
    assert_eq!(get("content-type"), Some("application/json"));
    assert_eq!(
        get("content-length"),
        Some(SHIPMENT_FILTERED.len().to_string().as_str())
    );
    assert!(get("ohsoft-data-use").is_some_and(
        |v| v.contains("use=\"on-behalf-of-ohsoft\"") && v.contains("purpose=\"shipping\"")
    ));
}

#[test]
fn chunked_and_large_bodies_are_filtered_whole() {
    let (mock, gateway) = start();
    // ~87 KiB: over pingora's 64 KiB retry buffer, under the 100 000 byte limit.
    let names: Vec<String> = (0..1400)
        .map(|i| format!(r#"{{"name":"customer number {i:05}","email":"e{i}@example.com"}}"#))
        .collect();
    let body = format!(r#"{{"shipments":[{}]}}"#, names.join(","));
    assert!(body.len() > 64 * 1024);
    let mut raw = b"POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.as_bytes().chunks(7000) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let response = gateway.raw(&raw);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let expected: Vec<String> = (0..1400)
        .map(|i| format!(r#"{{"name":"customer number {i:05}"}}"#))
        .collect();
    assert_eq!(
        mock.only_body(),
        format!(r#"{{"shipments":[{}]}}"#, expected.join(","))
    );
}

#[test]
fn refusals_are_json_and_reach_no_partner() {
    let (mock, gateway) = start();
    let json = [("content-type", "application/json")];
    let ok_body = br#"{"order_id": 1}"#;
    let cases: Vec<(Response, u16, &str)> = vec![
        (
            gateway.send("POST", "/nobody/v1/shipments", &json, Some(ok_body)),
            404,
            "unknown_partner",
        ),
        (
            gateway.send("POST", "/acme-ship/v1/other", &json, Some(ok_body)),
            403,
            "route_not_allowed",
        ),
        (
            gateway.send("PUT", "/acme-ship/v1/shipments", &json, Some(ok_body)),
            405,
            "method_not_allowed",
        ),
        (
            gateway.send("POST", "/acme-ship/v1/x/../shipments", &json, Some(ok_body)),
            400,
            "bad_request",
        ),
        (
            gateway.send("POST", "/acme-ship/v1%2Fshipments", &json, Some(ok_body)),
            400,
            "bad_request",
        ),
        (
            gateway.send("POST", "/acme-ship//v1/shipments", &json, Some(ok_body)),
            400,
            "bad_request",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &json,
                Some(b"{\"order_id\": "),
            ),
            400,
            "bad_request",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &json,
                Some(br#"{"order_id":1,"order_id":2}"#),
            ),
            400,
            "bad_request",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &json,
                Some(br#"{"debug":{"a":1,"\u0061":2}}"#),
            ),
            400,
            "bad_request",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &json,
                Some(br#"{"order_id":{"id":1}}"#),
            ),
            400,
            "bad_request",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &[("content-type", "text/plain")],
                Some(ok_body),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ],
                Some(ok_body),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &json,
                Some(&vec![b' '; 100_001]),
            ),
            413,
            "body_too_large",
        ),
        (
            gateway.send("GET", "/acme-ship/v1/shipments/7", &json, Some(ok_body)),
            400,
            "bad_request",
        ),
        (
            gateway.send(
                "POST",
                "/acme-ship/v1/shipments",
                &[
                    ("content-type", "application/json"),
                    ("upgrade", "websocket"),
                    ("connection", "upgrade"),
                ],
                Some(ok_body),
            ),
            400,
            "bad_request",
        ),
    ];
    for (response, status, code) in &cases {
        assert_refused(response, *status, code);
        // A 405 says what the route takes (RFC 9110); no other refusal has the header.
        let allow = (*status == 405).then_some("POST");
        assert_eq!(response.header("allow"), allow, "{status} {code}");
    }
    // Chunked, over the limit, no content-length to catch it early.
    let mut raw = b"POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..30 {
        raw.extend_from_slice(format!("{:x}\r\n{}\r\n", 5000, " ".repeat(5000)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_refused(&gateway.raw(&raw), 413, "body_too_large");
    assert!(
        mock.received().is_empty(),
        "refused requests reached the partner: {:#?}",
        mock.received()
    );
    let metrics = gateway.metrics();
    assert!(metrics.contains(r#"partner_gateway_requests_refused_total{partner="unknown",reason="unknown_partner"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"partner_gateway_requests_refused_total{partner="acme-ship",reason="body_too_large"} 2"#), "{metrics}");
}

#[test]
fn upstream_down_is_502_and_slow_is_504() {
    let down = free_addr();
    let gateway = Gateway::start(
        "",
        &[("acme-ship", &ship_partner(&format!("http://{down}")))],
        SHIP_ENV,
    );
    assert_refused(
        &gateway.post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#),
        502,
        "upstream_error",
    );

    let slow = Mock::start_with_delay(5000);
    let gateway = Gateway::start("", &[("acme-ship", &ship_partner(&slow.url()))], SHIP_ENV);
    assert_refused(
        &gateway.post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#),
        504,
        "upstream_timeout",
    );
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(
            r#"partner_gateway_upstream_errors_total{kind="timeout",partner="acme-ship"} 1"#
        ),
        "{metrics}"
    );
}

#[test]
fn metrics_count_with_policy_labels() {
    let (_mock, gateway) = start();
    // Before any request: the route's transforms at zero; the statuses not yet.
    let before = gateway.metrics();
    assert!(
        before.contains(
            r#"partner_gateway_fields_transformed_total{partner="acme-ship",route="/v1/shipments",transform="last4"} 0"#
        ),
        "{before}"
    );
    assert!(
        !before.contains(r#"transform="mask""#),
        "a transform the route does not name has no series: {before}"
    );
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", SHIPMENT)
            .status,
        200
    );
    let metrics = gateway.metrics();
    for line in [
        r#"partner_gateway_requests_total{partner="acme-ship",route="/v1/shipments",status="200"} 1"#,
        r#"partner_gateway_fields_removed_total{partner="acme-ship",route="/v1/shipments"} 4"#,
        r#"partner_gateway_fields_transformed_total{partner="acme-ship",route="/v1/shipments",transform="last4"} 1"#,
        r#"partner_gateway_records_forwarded_total{partner="acme-ship",route="/v1/shipments"} 1"#,
        "partner_gateway_request_duration_seconds_bucket",
        "partner_gateway_filter_duration_seconds_bucket",
        "partner_gateway_policy_info{version=",
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    assert_eq!(gateway.admin_get("/healthz").status, 200);
    assert_eq!(gateway.admin_get("/readyz").status, 200);
    // HEAD wherever GET: the GET answer's head without its body; other methods are 405
    // with what the endpoint takes.
    let admin = gateway.admin.to_string();
    for path in ["/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"] {
        let get = http1::send(&admin, "GET", path, &[], None).unwrap();
        let head = http1::send(&admin, "HEAD", path, &[], None).unwrap();
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path}");
        assert_eq!(head.header("content-type"), get.header("content-type"));
        let post = http1::send(&admin, "POST", path, &[], Some(b"{}")).unwrap();
        assert_eq!(post.status, 405, "POST {path}");
        assert_eq!(post.header("allow"), Some("GET, HEAD"), "POST {path}");
    }
}

#[test]
fn explain_prints_the_bytes_the_partner_receives() {
    let (mock, gateway) = start();
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", SHIPMENT)
            .status,
        200
    );
    let output = explain_post(&gateway, "/v1/shipments");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), mock.only_body());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("shipments[0].email"), "{stderr}");
    assert!(
        stderr.contains("shipments[0].card_number (last4)"),
        "{stderr}"
    );

    // The path at the partner starts with `/`: without it, a usage error, not another partner.
    let output = std::process::Command::new(BIN)
        .args(["explain", "--policy"])
        .arg(gateway.policy.policy())
        .args(["--partner", "acme-ship", "--path", "v1/shipments"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("starts with `/`"), "{stderr}");
}

/// A fragment in the request target is dropped before anything is judged (the HTTP library
/// drops it; it is never part of what a server is asked for), and `explain` judges the same URL.
#[test]
fn a_fragment_in_the_target_is_dropped_by_the_proxy_and_explain_alike() {
    let (mock, gateway) = start();
    let target = "/v1/shipments?page=2#x&page=3";
    let head = format!(
        "POST /acme-ship{target} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        SHIPMENT.len()
    );
    let r = gateway.raw(format!("{head}{SHIPMENT}").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(mock.received()[0]["query"], "page=2");
    let output = explain_post(&gateway, target);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("/v1/shipments?page=2\n"), "{stderr}");
    // A target the HTTP library refuses is refused by both.
    let head = head.replace("?page=2#x&page=3", "?page=2<");
    assert_refused(
        &gateway.raw(format!("{head}{SHIPMENT}").as_bytes()),
        400,
        "bad_request",
    );
    let output = explain_post(&gateway, "/v1/shipments?page=2<");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("400 bad_request"), "{stderr}");
    assert_eq!(mock.received().len(), 1);
    // A target with a space is percent-encoded by the HTTP library (and `<` with it) and
    // then judged: `explain` judges the same escaped target.
    let head = head.replace("?page=2<", "?page=2 <3");
    let r = gateway.raw(format!("{head}{SHIPMENT}").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(mock.received()[1]["query"], "page=2%20%3C3");
    let output = explain_post(&gateway, "/v1/shipments?page=2 <3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("/v1/shipments?page=2%20%3C3\n"), "{stderr}");
    // Unless the space comes before a version the parser reads: then both refuse.
    let head = head.replace("?page=2 <3", "?page=2 HTTP/1.1");
    assert_refused(
        &gateway.raw(format!("{head}{SHIPMENT}").as_bytes()),
        400,
        "bad_request",
    );
    let output = explain_post(&gateway, "/v1/shipments?page=2 HTTP/1.1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(mock.received().len(), 2);
}

/// `explain` of a POST of [`SHIPMENT`] to acme-ship's `path`.
fn explain_post(gateway: &Gateway, path: &str) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["explain", "--policy"])
        .arg(gateway.policy.policy())
        .args(["--partner", "acme-ship", "--method", "POST", "--path", path])
        .env("SHIP_TOKEN", "partner-secret")
        .stdin(body_file(SHIPMENT).reopen().unwrap())
        .output()
        .unwrap()
}

/// `text` in a temporary file, removed when the handle is dropped.
fn body_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

#[test]
fn government_requests_need_a_legal_basis_of_the_configured_format() {
    let mock = Mock::start();
    let partner = format!(
        "kind: government\npurpose: tax-reporting\nupstream: {}\nroutes:\n  - path: /v1/filings\n    methods: [POST]\n    allow: [year]\nallowed_callers: [finance-service]\nlegal_basis_format: '(case|order)-[0-9]{{4}}-[0-9]+'\n",
        mock.url()
    );
    let gateway = Gateway::start("", &[("tax", &partner)], &[]);
    let send = |basis: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(basis) = basis {
            headers.push(("ohsoft-legal-basis", basis));
        }
        gateway.send(
            "POST",
            "/tax/v1/filings",
            &headers,
            Some(br#"{"year":2025,"name":"Ada"}"#),
        )
    };
    assert_refused(&send(None), 403, "legal_basis_missing");
    assert_refused(&send(Some("because")), 403, "legal_basis_missing");
    assert_refused(
        &send(Some("case-2026-0042; DROP")),
        403,
        "legal_basis_missing",
    );
    assert!(mock.received().is_empty());
    assert_eq!(send(Some("order-2026-7")).status, 200);
    let headers = mock.only_headers();
    assert!(headers.contains(&("ohsoft-legal-basis".to_string(), "order-2026-7".to_string())));
    assert!(headers.iter().any(|(n, v)| n == "ohsoft-data-use"
        && v.contains(r#"use="legal-obligation""#)
        && v.contains(r#"legal-basis="order-2026-7""#)));
}

/// A partner that answers keep-alive but closes every connection right after: the gateway's
/// pooled connection is dead by the next request, and it must take a fresh one, not 502.
/// Each request waits until the partner has closed the last connection: a close that races
/// the next request's head is the keep-alive race no client can win for a POST, which is
/// answered 502 and never sent twice (see `tests/answers.rs`).
#[test]
fn a_partner_closing_idle_connections_costs_no_request() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, partner_closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut stream = reader.into_inner();
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            );
            drop(stream); // closed without saying so
            let _ = closed.send(());
        }
    });
    let gateway = Gateway::start(
        "",
        &[("acme-ship", &ship_partner(&format!("http://{addr}")))],
        SHIP_ENV,
    );
    for _ in 0..20 {
        let response = gateway.post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#);
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        partner_closed
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the partner closed the connection");
        // Idle for a moment, as a pooled connection is between requests: the close has
        // reached the gateway before the next request does.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An upstream whose name does not resolve is a JSON 502 (or 504 if the resolver is slow), not a crash.
#[test]
fn an_unresolvable_partner_is_a_json_error() {
    let gateway = Gateway::start(
        "",
        &[("acme-ship", &ship_partner("http://partner.invalid:9001"))],
        SHIP_ENV,
    );
    let response = gateway.post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#);
    let code = if response.status == 504 {
        "upstream_timeout"
    } else {
        "upstream_error"
    };
    assert_refused(
        &response,
        if response.status == 504 { 504 } else { 502 },
        code,
    );
    // The gateway is still serving.
    assert_eq!(gateway.admin_get("/healthz").status, 200);
}

#[test]
fn head_requests_are_relayed_without_a_body() {
    let mock = Mock::start();
    let partner = format!(
        "kind: contractor\npurpose: shipping\nupstream: {}\nroutes:\n  - path: /v1/status\n    methods: [HEAD, GET]\nallowed_callers: [orders-service]\n",
        mock.url()
    );
    let gateway = Gateway::start("", &[("acme-ship", &partner)], &[]);
    let head = gateway.send("HEAD", "/acme-ship/v1/status", &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(
        gateway
            .send("GET", "/acme-ship/v1/status", &[], None)
            .status,
        200
    );
}
