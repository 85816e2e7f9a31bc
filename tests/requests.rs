//! What callers send on the wire, through the real gateway in front of the recording partner:
//! pipelined requests, `Expect: 100-continue`, request ids and headers given twice.
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::*;

const ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret")];
const SHIPMENT: &str = r#"{"order_id":7,"shipments":[{"customer_id":"c-1","name":"Ada"}]}"#;

fn start() -> (Mock, Gateway) {
    let mock = Mock::start();
    let gateway = Gateway::start("", &[("acme-ship", &ship_partner(&mock.url()))], ENV);
    (mock, gateway)
}

fn post_head(extra: &str, length: usize, close: bool) -> String {
    format!(
        "POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\n{}content-type: application/json\r\n{extra}content-length: {length}\r\n\r\n",
        if close { "connection: close\r\n" } else { "" }
    )
}

/// Reads until `done(text)` holds, the connection closes, or `wait` passes. Returns the text
/// and whether the connection was closed by the gateway.
fn read_until(
    stream: &mut TcpStream,
    wait: Duration,
    done: impl Fn(&str) -> bool,
) -> (String, bool) {
    let deadline = Instant::now() + wait;
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&all).into_owned(), false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&all).into_owned(), true),
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&all).into_owned();
                if done(&text) {
                    return (text, false);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&all).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&all).into_owned(), false),
        }
    }
}

fn status_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("HTTP/1."))
        .map(str::to_string)
        .collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).unwrap()
}

#[test]
fn pipelined_requests_are_answered_in_order_or_the_connection_closes() {
    let (mock, gateway) = start();
    let first = format!(
        "{}{SHIPMENT}",
        post_head("x-request-id: first\r\n", SHIPMENT.len(), false)
    );
    let second = format!(
        "{}{SHIPMENT}",
        post_head("x-request-id: second\r\n", SHIPMENT.len(), true)
    );
    let mut stream = connect(gateway.addr);
    stream
        .write_all(format!("{first}{second}").as_bytes())
        .unwrap();
    let (text, closed) = read_until(&mut stream, Duration::from_secs(5), |t| {
        t.matches("HTTP/1.1 200").count() >= 2
    });
    let statuses = status_lines(&text);
    let received = mock.received();
    match statuses.len() {
        // Answered both, in order: the partner saw both, in order.
        2 => {
            assert_eq!(received.len(), 2, "{received:#?}");
            let ids: Vec<String> = received
                .iter()
                .map(|r| {
                    headers_of(r)
                        .into_iter()
                        .find(|(n, _)| n == "x-request-id")
                        .map(|(_, v)| v)
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(ids, vec!["first", "second"]);
        }
        // Answered the first and closed: the client knows to resend the second.
        1 => {
            assert!(closed, "one answer and the connection left open: {text}");
            assert_eq!(received.len(), 1);
        }
        _ => panic!("{text}"),
    }
}

#[test]
fn expect_continue_is_answered_once_the_head_is_accepted() {
    let (mock, gateway) = start();
    let mut stream = connect(gateway.addr);
    stream
        .write_all(post_head("expect: 100-continue\r\n", SHIPMENT.len(), true).as_bytes())
        .unwrap();
    let (text, _) = read_until(&mut stream, Duration::from_secs(3), |t| {
        t.contains("\r\n\r\n")
    });
    assert!(
        text.starts_with("HTTP/1.1 100 Continue\r\n"),
        "no 100 Continue before the body: {text:?}"
    );
    stream.write_all(SHIPMENT.as_bytes()).unwrap();
    let (text, _) = read_until(&mut stream, Duration::from_secs(5), |t| {
        t.contains(r#""shipments""#)
    });
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(mock.received().len(), 1);
}

#[test]
fn expect_continue_refusals_decided_by_the_head_come_first() {
    let (mock, gateway) = start();
    let heads = [
        // Not JSON.
        (
            post_head("expect: 100-continue\r\n", 10, true)
                .replace("application/json", "text/plain"),
            "415",
        ),
        // Over the limit.
        (post_head("expect: 100-continue\r\n", 10_000_000, true), "413"),
        // No such route.
        (
            post_head("expect: 100-continue\r\n", 10, true).replace("/v1/shipments", "/v1/nope"),
            "403",
        ),
        // A route that takes no body.
        (
            "POST /acme-ship/v1/shipments/1 HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n".to_string(),
            "40",
        ),
        // An encoding the gateway cannot read.
        (
            post_head("expect: 100-continue\r\ncontent-encoding: zstd\r\n", 10, true),
            "415",
        ),
    ];
    for (head, status) in heads {
        let mut stream = connect(gateway.addr);
        stream.write_all(head.as_bytes()).unwrap();
        let (text, _) = read_until(&mut stream, Duration::from_secs(3), |t| {
            t.contains("\"message\"")
        });
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{head}\n---\n{text}"
        );
        assert!(!text.contains("100 Continue"), "{text}");
    }
    assert!(mock.received().is_empty());
}

#[test]
fn request_ids_toward_partners_are_tokens() {
    let (mock, gateway) = start();
    let send = |id: &str| {
        gateway.send(
            "POST",
            "/acme-ship/v1/shipments",
            &[("content-type", "application/json"), ("x-request-id", id)],
            Some(SHIPMENT.as_bytes()),
        )
    };
    for bad in [
        "ada.lovelace@example.com",
        "Ada Lovelace",
        "a\"b",
        &"x".repeat(129),
    ] {
        assert_refused(&send(bad), 400, "bad_request");
    }
    assert!(mock.received().is_empty());
    let good = "7f3c2a1e-5b4d-4c3a-9e8f-1a2b3c4d5e6f";
    assert_eq!(send(good).status, 200);
    let headers = mock.only_headers();
    assert!(headers.contains(&("x-request-id".to_string(), good.to_string())));
}

#[test]
fn single_valued_headers_given_twice_are_refused() {
    let (mock, gateway) = start();
    // Two content types are not one media type the route accepts (415); any other
    // single-valued header given twice is a malformed request (400).
    for (name, a, b, status, code) in [
        ("x-request-id", "one", "two", 400, "bad_request"),
        (
            "content-type",
            "application/json",
            "application/json",
            415,
            "unsupported_media_type",
        ),
        ("x-correlation-id", "a", "b", 400, "bad_request"),
    ] {
        let r = gateway.send(
            "POST",
            "/acme-ship/v1/shipments",
            &[("content-type", "application/json"), (name, a), (name, b)]
                [usize::from(name == "content-type")..],
            Some(SHIPMENT.as_bytes()),
        );
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (status, Some(code)),
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert!(mock.received().is_empty());
}

/// Header names are decided on whatever their case on the wire: a refusal a lowercase name
/// gets, the same name in capitals gets too, and an allowed one reaches the partner lowercase.
#[test]
fn header_names_in_any_case_are_decided_and_forwarded_as_lowercase() {
    let (mock, gateway) = start();
    let send = |headers: &[(&str, &str)]| {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        gateway.send(
            "POST",
            "/acme-ship/v1/shipments",
            &all,
            Some(SHIPMENT.as_bytes()),
        )
    };
    assert_refused(&send(&[("UPGRADE", "h2c")]), 400, "bad_request");
    assert_refused(
        &send(&[("Content-Encoding", "br")]),
        415,
        "unsupported_media_type",
    );
    let twice = [("X-Request-Id", "one"), ("x-request-id", "two")];
    assert_refused(&send(&twice), 400, "bad_request");
    assert_refused(&send(&[("X-Request-ID", "a b")]), 400, "bad_request");
    assert!(mock.received().is_empty());

    assert_eq!(send(&[("X-Request-ID", "abc-1")]).status, 200);
    let headers = mock.only_headers();
    assert!(
        headers.contains(&("x-request-id".to_string(), "abc-1".to_string())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("content-type".to_string(), "application/json".to_string())),
        "{headers:?}"
    );
}

/// What reaches the partner of a caller's headers, whatever their spelling: allowed ones
/// given twice both arrive, in order and byte for byte; hop-by-hop, caller-identifying and
/// `Connection`-named ones never do; a value that is not UTF-8 refuses the request even in
/// a header that would have been stripped; and an `accept` that is not a list of media ranges
/// (free text: a name, an email address) is refused.
#[test]
fn headers_toward_the_partner_in_any_spelling() {
    let (mock, gateway) = start();
    let raw = |lines: &[&[u8]]| {
        let mut raw = post_head("", SHIPMENT.len(), true).into_bytes();
        let end = raw.len() - 2; // before the blank line
        let mut extra = Vec::new();
        for line in lines {
            extra.extend_from_slice(line);
            extra.extend_from_slice(b"\r\n");
        }
        raw.splice(end..end, extra);
        raw.extend_from_slice(SHIPMENT.as_bytes());
        gateway.raw(&raw)
    };

    for value in [&b"s=\xff"[..], b"\xc3\x28", b"\x80"] {
        let line = [&b"Cookie: "[..], value].concat();
        let r = raw(&[&line]);
        assert_refused(&r, 400, "bad_request");
    }
    assert!(mock.received().is_empty());
    for line in [
        &b"Accept: text/x-caf\xc3\xa9"[..],
        b"Accept: alice@example.com",
        b"Accept: text/plain; email=alice@example.com",
        b"Accept: application/json, Ana Lima",
    ] {
        let r = raw(&[line]);
        assert_refused(&r, 400, "bad_request");
    }
    assert!(mock.received().is_empty());

    let r = raw(&[
        b"Accept: application/json",
        b"ACCEPT: text/x-cafe;q=0.5",
        b"TE: trailers",
        b"Keep-Alive: timeout=5",
        b"Proxy-Connection: keep-alive",
        b"Trailer: X-Secret",
        b"Via: 1.1 caller-proxy",
        b"X-Forwarded-For: 203.0.113.7",
        b"Forwarded: for=203.0.113.7",
        b"User-Agent: caller/1.0",
        b"Cookie: s=1",
        b"X-Secret: s3cr3t",
        b"X-Request-Id: abc-1",
        b"Connection: X-REQUEST-ID, close",
    ]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let headers = mock.only_headers();
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        values("accept"),
        ["application/json", "text/x-cafe;q=0.5"],
        "{headers:?}"
    );
    for name in [
        "te",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "via",
        "x-forwarded-for",
        "forwarded",
        "user-agent",
        "cookie",
        "x-secret",
        "x-request-id",
    ] {
        assert!(
            values(name).is_empty(),
            "{name} reached the partner: {headers:?}"
        );
    }
    for (n, v) in &headers {
        assert!(
            !v.contains("203.0.113.7") && !v.contains("s3cr3t"),
            "{n}: {v}"
        );
    }
}

/// A `+json` type a route lists in `json_types` is filtered like `application/json` and reaches
/// the partner as itself (a JSON merge patch stays a merge patch); a route that does not list it
/// refuses it.
#[test]
fn listed_json_types_are_filtered_and_forwarded_as_themselves() {
    let mock = Mock::start();
    let patching = ship_partner(&mock.url()).replace(
        "    headers: [x-request-id]\n",
        "    headers: [x-request-id]\n    json_types: [application/merge-patch+json]\n",
    );
    let gateway = Gateway::start("", &[("acme-ship", &patching)], ENV);
    let body = r#"{"order_id":7,"secret":"s3cr3t"}"#;
    let send = |content_type: &str| {
        gateway.send(
            "POST",
            "/acme-ship/v1/shipments",
            &[("content-type", content_type)],
            Some(body.as_bytes()),
        )
    };
    let r = send("application/merge-patch+json; charset=UTF-8");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.only_body(), r#"{"order_id":7}"#);
    let types: Vec<String> = mock
        .only_headers()
        .into_iter()
        .filter(|(n, _)| n == "content-type")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(types, ["application/merge-patch+json"]);

    let (mock, gateway) = start();
    let r = gateway.send(
        "POST",
        "/acme-ship/v1/shipments",
        &[("content-type", "application/merge-patch+json")],
        Some(body.as_bytes()),
    );
    assert_refused(&r, 415, "unsupported_media_type");
    assert!(mock.received().is_empty());
}

/// Chunked framing may carry no byte: on a route that takes no body such a request has no
/// body and is forwarded; one whose chunks hold bytes is refused, and nothing reaches the
/// partner.
#[test]
fn an_empty_chunked_body_on_a_route_that_takes_none_is_no_body() {
    let (mock, gateway) = start();
    let head = "GET /acme-ship/v1/shipments/s-1 HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n";
    let r = gateway.raw(format!("{head}0\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.received().len(), 1);
    assert_eq!(mock.received()[0]["body"], "");
    let r = gateway.raw(format!("{head}2\r\n{{}}\r\n0\r\n\r\n").as_bytes());
    assert_refused(&r, 400, "bad_request");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("takes no body"));
    assert_eq!(mock.received().len(), 1);
}
