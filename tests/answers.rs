//! Partner answers through the real gateway, from a scripted partner on a raw socket:
//! informational answers, broken answers, answer headers that must not reach callers, answers
//! relayed as they arrive, and requests that must reach a partner at most once.
#[path = "support/scripted.rs"]
mod scripted;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use scripted::{json_answer, Act, Scripted};
use util::*;

const ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret")];
const SHIPMENT: &str = r#"{"order_id":7,"shipments":[{"customer_id":"c-1","name":"Ada"}]}"#;

fn gateway_for(partner: &Scripted) -> Gateway {
    Gateway::start("", &[("acme-ship", &ship_partner(&partner.url()))], ENV)
}

fn post(gateway: &Gateway) -> Response {
    gateway.post_json("/acme-ship/v1/shipments", SHIPMENT)
}

/// [`everything_on_one_connection`] as text.
fn text_on_one_connection(addr: SocketAddr, raw: &[u8]) -> String {
    String::from_utf8_lossy(&everything_on_one_connection(addr, raw)).into_owned()
}

fn status_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("HTTP/1.")).collect()
}

fn post_raw() -> Vec<u8> {
    format!(
        "POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{SHIPMENT}",
        SHIPMENT.len()
    )
    .into_bytes()
}

fn upstream_errors(gateway: &Gateway, kind: &str) -> f64 {
    metric(
        &gateway.metrics(),
        &format!(r#"partner_gateway_upstream_errors_total{{kind="{kind}",partner="acme-ship"}}"#),
    )
}

#[test]
fn informational_answers_are_consumed_and_the_final_one_relayed() {
    let partner = Scripted::start(|_, _, _| {
        let mut answer = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n".to_vec();
        answer.extend(json_answer("201 Created", "", r#"{"id":1}"#));
        Act::Answer(answer)
    });
    let gateway = gateway_for(&partner);
    let text = text_on_one_connection(gateway.addr, &post_raw());
    assert_eq!(status_lines(&text), vec!["HTTP/1.1 201 Created"], "{text}");
    assert!(text.ends_with(r#"{"id":1}"#), "{text}");
    assert!(!text.to_ascii_lowercase().contains("link:"), "{text}");
    assert_eq!(partner.requests().len(), 1);
    // The gateway keeps serving.
    assert_eq!(post(&gateway).status, 201);
}

#[test]
fn a_switching_protocols_answer_is_a_counted_502() {
    let partner = Scripted::start(|_, _, _| {
        Act::AnswerClose(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw bytes".to_vec())
    });
    let gateway = gateway_for(&partner);
    assert_refused(&post(&gateway), 502, "upstream_error");
    assert_eq!(upstream_errors(&gateway, "protocol"), 1.0);
}

#[test]
fn broken_answers_are_counted_502s() {
    let answers: Vec<&'static [u8]> = vec![
        b"HTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
        b"HTTP/1.1 99999 What\r\n\r\n",
        // RFC 9110 defines no status past 599: relayed, it would be a metric label of its own.
        b"HTTP/1.1 600 Beyond\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 999 Beyond\r\ncontent-length: 2\r\n\r\n{}",
        b"",
    ];
    for (i, answer) in answers.iter().enumerate() {
        let bytes = answer.to_vec();
        let partner = Scripted::start(move |_, _, _| Act::AnswerClose(bytes.clone()));
        let gateway = gateway_for(&partner);
        let r = post(&gateway);
        assert_refused(&r, 502, "upstream_error");
        let counted = upstream_errors(&gateway, "protocol") + upstream_errors(&gateway, "connect");
        assert_eq!(counted, 1.0, "answer {i}: {}", gateway.metrics());
    }
}

#[test]
fn endless_informational_answers_are_a_502() {
    let partner = Scripted::start(|_, _, _| {
        Act::AnswerClose(b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(100))
    });
    let gateway = gateway_for(&partner);
    assert_refused(&post(&gateway), 502, "upstream_error");
}

#[test]
fn partner_answer_headers_pass_an_allow_list() {
    let partner = Scripted::start(|_, _, _| {
        Act::Answer(json_answer(
            "401 Unauthorized",
            "set-cookie: session=partner-session; HttpOnly\r\n\
             www-authenticate: Bearer realm=\"partner\"\r\n\
             authorization: Bearer partner-secret\r\n\
             proxy-authenticate: Basic\r\n\
             x-echo-authorization: Bearer partner-secret\r\n\
             server: partner-httpd/1.0\r\n\
             x-powered-by: partner\r\n\
             cache-control: no-store\r\n\
             etag: \"v1\"\r\n\
             location: /v1/shipments/1\r\n\
             retry-after: 5\r\n\
             content-language: en\r\n\
             vary: accept\r\n",
            r#"{"error":"partner says no"}"#,
        ))
    });
    let gateway = gateway_for(&partner);
    let r = post(&gateway);
    assert_eq!(r.status, 401);
    assert_eq!(r.body, br#"{"error":"partner says no"}"#);
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    for never in [
        "set-cookie",
        "www-authenticate",
        "authorization",
        "proxy-authenticate",
        "x-echo-authorization",
        "server",
        "x-powered-by",
    ] {
        assert!(!names.contains(&never), "{never} relayed: {:?}", r.headers);
    }
    for kept in [
        "content-type",
        "cache-control",
        "etag",
        "location",
        "retry-after",
        "content-language",
        "vary",
        "content-length",
    ] {
        assert!(names.contains(&kept), "{kept} missing: {:?}", r.headers);
    }
    let all = format!("{:?}", r.headers);
    assert!(!all.contains("partner-secret"), "{all}");
}

/// Whatever the partner's framing, the first part of a body reaches the caller while the rest
/// is still on its way; a body sent with a `content-length` goes chunked then, since a
/// length-framed body is held back until it is complete (an HTTP/1.0 caller, which has no
/// chunks, keeps the length: see `a_sized_answer_broken_off_is_never_whole_for_http10`).
#[test]
fn answers_are_relayed_as_they_arrive() {
    let chunked = (
        "transfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n",
        "5\r\nlast\n\r\n0\r\n\r\n",
    );
    let sized = ("content-length: 11\r\n\r\nfirst\n", "last\n");
    for ((head, rest), version) in [(chunked, "1.1"), (sized, "1.1"), (chunked, "1.0")] {
        let partner = Scripted::start(move |_, _, _| {
            Act::AnswerSlowly(
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n{head}")
                    .into_bytes(),
                Duration::from_millis(1000),
                rest.as_bytes().to_vec(),
            )
        });
        let gateway = gateway_for(&partner);
        let started = Instant::now();
        let raw = String::from_utf8(post_raw()).unwrap().replacen(
            "HTTP/1.1",
            &format!("HTTP/{version}"),
            1,
        );
        let mut stream = send_raw(gateway.addr, raw.as_bytes());
        let mut seen = read_until(&mut stream, |seen| {
            String::from_utf8_lossy(seen).contains("first")
        });
        let first_after = started.elapsed();
        assert!(
            first_after < Duration::from_millis(800),
            "{head:?} to HTTP/{version}: the first part arrived only after {first_after:?}: the answer was held back"
        );
        let _ = stream.read_to_end(&mut seen);
        let text = String::from_utf8_lossy(&seen);
        assert!(text.contains("last"), "{text}");
        if version == "1.1" {
            assert!(text.contains("transfer-encoding: chunked"), "{text}");
            assert!(text.ends_with("0\r\n\r\n"), "{text}");
        } else {
            assert!(!text.contains("content-length"), "{text}");
            assert!(text.ends_with("first\nlast\n"), "{text}");
        }
    }
}

#[test]
fn an_answer_broken_off_midway_is_never_finished_toward_the_caller() {
    let partner = Scripted::start(|_, _, _| {
        Act::AnswerSlowly(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n[1,2,\r\n".to_vec(),
            Duration::from_millis(300),
            Vec::new(),
        )
    });
    let gateway = gateway_for(&partner);
    let text = text_on_one_connection(gateway.addr, &post_raw());
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("[1,2,"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a broken answer was finished: {text}"
    );
    assert_eq!(upstream_errors(&gateway, "protocol"), 1.0);
}

/// A partner that breaks off right behind the start of its body: the gateway may see the break
/// before it answers the caller (then a 502, as for any broken answer) or only while relaying
/// (then a body that is never finished). Either way it is counted, and never a whole answer.
#[test]
fn an_answer_broken_off_at_once_is_a_502_or_never_finished() {
    for head in [
        "transfer-encoding: chunked\r\n\r\n5\r\n[1,2,\r\n",
        "content-length: 10\r\n\r\n[1,2,",
    ] {
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{head}");
        let partner = Scripted::start(move |_, _, _| Act::AnswerClose(answer.clone().into_bytes()));
        let gateway = gateway_for(&partner);
        let text = text_on_one_connection(gateway.addr, &post_raw());
        if text.starts_with("HTTP/1.1 502") {
            assert!(text.contains(r#""error":"upstream_error""#), "{text}");
            assert!(!text.contains("[1,2,"), "{text}");
        } else {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(
                text.ends_with("[1,2,") || text.ends_with("[1,2,\r\n"),
                "{text}"
            );
        }
        assert_eq!(upstream_errors(&gateway, "protocol"), 1.0, "{head}");
    }
}

#[test]
fn a_request_written_whole_is_never_sent_twice() {
    // The first request is answered on a kept-alive connection; the second, on that same
    // pooled connection, is read whole and the connection closed without an answer.
    let partner = Scripted::start(|conn, index, _| match (conn, index) {
        (1, 1) => Act::Answer(json_answer("200 OK", "", "{}")),
        (1, _) => Act::Close,
        _ => Act::Answer(json_answer("200 OK", "", "{}")),
    });
    let gateway = gateway_for(&partner);
    assert_eq!(post(&gateway).status, 200);
    // Time for the first connection to go back to the pool.
    std::thread::sleep(Duration::from_millis(200));
    let second = post(&gateway);
    assert_refused(&second, 502, "upstream_error");
    assert_eq!(
        partner.requests().len(),
        2,
        "the partner received a request twice"
    );
    // The gateway keeps serving on a fresh connection.
    assert_eq!(post(&gateway).status, 200);
}

#[test]
fn a_route_may_relay_more_answer_headers() {
    let partner = Scripted::start(|_, _, _| {
        Act::Answer(json_answer(
            "200 OK",
            "x-rate-limit-remaining: 41\r\nx-partner-trace: abc\r\nx-echo: partner-secret\r\n",
            "{}",
        ))
    });
    let policy = ship_partner(&partner.url()).replace(
        "    headers: [x-request-id]\n",
        "    headers: [x-request-id]\n    response_headers: [X-Rate-Limit-Remaining, x-echo]\n",
    );
    let gateway = Gateway::start("", &[("acme-ship", &policy)], ENV);
    let r = post(&gateway);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rate-limit-remaining"), Some("41"));
    assert_eq!(r.header("x-partner-trace"), None);
    // Listed, but it carries the credential the gateway injected toward the partner.
    assert_eq!(r.header("x-echo"), None, "{:?}", r.headers);
}

/// Headers a partner names in its own `Connection` are hop-by-hop: not relayed, even the
/// default ones or one the route lists.
#[test]
fn answer_headers_the_partner_names_in_connection_are_not_relayed() {
    let partner = Scripted::start(|_, _, _| {
        Act::Answer(json_answer(
            "200 OK",
            "connection: ETag, x-rate-limit-remaining\r\n\
             etag: \"v1\"\r\n\
             x-rate-limit-remaining: 41\r\n\
             cache-control: no-store\r\n",
            "{}",
        ))
    });
    let policy = ship_partner(&partner.url()).replace(
        "    headers: [x-request-id]\n",
        "    headers: [x-request-id]\n    response_headers: [x-rate-limit-remaining]\n",
    );
    let gateway = Gateway::start("", &[("acme-ship", &policy)], ENV);
    let r = post(&gateway);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), None, "{:?}", r.headers);
    assert_eq!(r.header("x-rate-limit-remaining"), None, "{:?}", r.headers);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.body, b"{}");
}

/// A partner's `204` reaches the caller as a `204` without framing headers (no
/// `transfer-encoding`, no `content-length`: RFC 9110 forbids both on a 204), and the
/// caller's connection stays usable for its next request.
#[test]
fn a_no_content_answer_is_relayed_without_framing_and_keeps_the_connection() {
    let partner = Scripted::start(|_, _, _| {
        Act::Answer(b"HTTP/1.1 204 No Content\r\netag: \"v2\"\r\n\r\n".to_vec())
    });
    let gateway = gateway_for(&partner);
    let keep_alive = String::from_utf8(post_raw())
        .unwrap()
        .replace("connection: close\r\n", "");
    let mut stream = send_raw(gateway.addr, keep_alive.as_bytes());
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(head.contains("etag: \"v2\""), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    // Nothing follows the head, and the next request on the connection is answered.
    stream.write_all(&post_raw()).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 204"), "{rest}");
    assert_eq!(partner.requests().len(), 2);
}

/// An HTTP/1.0 caller cannot read chunked framing: a partner's chunked answer that is still
/// arriving reaches it unframed, ended by the gateway closing the connection (even one the
/// caller asked to keep alive), with the body whole.
#[test]
fn a_chunked_answer_reaches_an_http10_caller_close_delimited() {
    let partner = Scripted::start(|_, _, _| {
        Act::AnswerSlowly(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{\"ok\":1\r\n"
                .to_vec(),
            Duration::from_millis(300),
            b"1\r\n}\r\n0\r\n\r\n".to_vec(),
        )
    });
    let gateway = gateway_for(&partner);
    let raw = String::from_utf8(post_raw())
        .unwrap()
        .replace("HTTP/1.1\r\n", "HTTP/1.0\r\n")
        .replace("connection: close\r\n", "connection: keep-alive\r\n");
    let started = std::time::Instant::now();
    let text = text_on_one_connection(gateway.addr, raw.as_bytes());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the gateway closes the connection to end the body"
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") || head.starts_with("http/1.0 200"),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body, r#"{"ok":1}"#);
}

/// An HTTP/1.0 caller has no chunks to tell a broken-off body by: a sized answer keeps the
/// partner's length toward it, so one the partner breaks off arrives visibly short.
#[test]
fn a_sized_answer_broken_off_is_never_whole_for_http10() {
    let partner = Scripted::start(|_, _, _| {
        Act::AnswerSlowly(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n[1,2,"
                .to_vec(),
            Duration::from_millis(300),
            Vec::new(),
        )
    });
    let gateway = gateway_for(&partner);
    let raw = String::from_utf8(post_raw())
        .unwrap()
        .replace("HTTP/1.1\r\n", "HTTP/1.0\r\n");
    let text = text_on_one_connection(gateway.addr, raw.as_bytes());
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase().contains("content-length: 12"),
        "{head}"
    );
    assert_eq!(
        body, "[1,2,",
        "short of its length: the caller sees the break"
    );
}

/// A partner's chunked answer that arrived whole with its header goes to the caller with its
/// length (HTTP/1.1 and HTTP/1.0 callers alike), the body unchanged, and a caller that keeps
/// its connection can send the next request on it.
#[test]
fn a_chunked_answer_that_arrived_whole_is_relayed_with_its_length() {
    let partner = Scripted::start(|_, _, _| {
        Act::Answer(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{\"ok\":1\r\n1\r\n}\r\n0\r\n\r\n"
                .to_vec(),
        )
    });
    let gateway = gateway_for(&partner);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let raw = String::from_utf8(post_raw())
            .unwrap()
            .replace("HTTP/1.1\r\n", &format!("{version}\r\n"));
        let text = text_on_one_connection(gateway.addr, raw.as_bytes());
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.contains(" 200 ok"), "{head}");
        assert!(head.contains("content-length: 8"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!(body, r#"{"ok":1}"#, "{version}");
    }
    let keep_alive = String::from_utf8(post_raw())
        .unwrap()
        .replace("connection: close\r\n", "");
    let mut stream = send_raw(gateway.addr, keep_alive.as_bytes());
    read_until(&mut stream, |seen| seen.ends_with(br#"{"ok":1}"#));
    stream.write_all(&post_raw()).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with(r#"{"ok":1}"#), "{rest}");
}

/// The partner timeout of [`gateway_for`]'s policy, and what a refusal may take beyond it.
const TIMEOUT: Duration = Duration::from_millis(1500);
const GRACE: Duration = Duration::from_millis(1500);

#[test]
fn an_answer_header_trickled_past_the_timeout_is_a_504_in_time() {
    // Every byte comes well within the timeout; the whole header does not.
    let partner = Scripted::start(|_, _, _| {
        Act::Trickle(json_answer("200 OK", "", "{}"), Duration::from_millis(40))
    });
    let gateway = gateway_for(&partner);
    let started = Instant::now();
    assert_refused(&post(&gateway), 504, "upstream_timeout");
    assert!(
        started.elapsed() < TIMEOUT + GRACE,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(partner.requests().len(), 1, "the request was sent again");
    assert_eq!(upstream_errors(&gateway, "timeout"), 1.0);
}

#[test]
fn an_answer_body_that_stalls_is_never_finished_toward_the_caller() {
    let partner = Scripted::start(|_, _, _| {
        Act::AnswerSlowly(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n[1,2,"
                .to_vec(),
            Duration::from_secs(6),
            b"3,4]".to_vec(),
        )
    });
    let gateway = gateway_for(&partner);
    let started = Instant::now();
    let text = text_on_one_connection(gateway.addr, &post_raw());
    assert!(
        started.elapsed() < TIMEOUT + GRACE,
        "{:?}",
        started.elapsed()
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Relayed as it arrived (chunked: the rest was still to come), and never finished.
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.ends_with("5\r\n[1,2,\r\n"),
        "a stalled answer was finished: {text}"
    );
    assert_eq!(upstream_errors(&gateway, "timeout"), 1.0);
}

#[test]
fn a_partner_that_never_reads_a_large_body_is_a_504_in_time() {
    // Accepts, then reads nothing: the gateway's write of the body blocks once the socket
    // buffers are full.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().flatten().take(4).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let gateway = Gateway::start_with(
        |listen, admin| {
            gateway_yaml(listen, admin, "")
                .replace("max_body_bytes: 100000", "max_body_bytes: 16000000")
        },
        &[("acme-ship", &ship_partner(&format!("http://{addr}")))],
        ENV,
    );
    let name = "n".repeat(8000);
    let records: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"customer_id":"c-{i}","name":"{name}"}}"#))
        .collect();
    let body = format!(r#"{{"order_id":7,"shipments":[{}]}}"#, records.join(","));
    let started = Instant::now();
    let response = gateway.post_json("/acme-ship/v1/shipments", &body);
    // The filter's own time (a debug build) comes on top of the partner's timeout.
    assert_refused(&response, 504, "upstream_timeout");
    assert!(
        started.elapsed() < TIMEOUT + GRACE + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream_errors(&gateway, "timeout"), 1.0);
}

#[test]
fn partners_named_by_ipv6_address_or_host_name_are_reached() {
    let v6 = Scripted::start_at("[::1]:0", |_, _, _| {
        Act::Answer(json_answer("200 OK", "", "{}"))
    });
    assert!(v6.url().starts_with("http://[::1]:"), "{}", v6.url());
    // On the address the gateway's resolver gives first for the name.
    let first = std::net::ToSocketAddrs::to_socket_addrs("localhost:0")
        .unwrap()
        .next()
        .unwrap();
    let named = Scripted::start_at(&first.to_string(), |_, _, _| {
        Act::Answer(json_answer("200 OK", "", "{}"))
    });
    let by_name = format!("http://localhost:{}", named.addr.port());
    for (partner, upstream) in [(&v6, v6.url()), (&named, by_name)] {
        let gateway = Gateway::start("", &[("acme-ship", &ship_partner(&upstream))], ENV);
        for _ in 0..2 {
            let r = post(&gateway);
            assert_eq!(
                r.status,
                200,
                "{upstream}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
        let request = String::from_utf8_lossy(&partner.requests()[0]).to_ascii_lowercase();
        let authority = upstream.strip_prefix("http://").unwrap();
        assert!(
            request.contains(&format!("host: {authority}\r\n")),
            "{request}"
        );
    }
}

/// A streaming route in front of `partner` (contractors honour no opt-outs: none to load).
fn stream_gateway_for(partner: &Scripted) -> Gateway {
    let policy = format!(
        "kind: contractor\npurpose: shipping\nupstream: {}\nroutes:\n  - path: /v1/lines\n    methods: [POST]\n    stream: ndjson\n    allow: [order_id]\nallowed_callers: [orders-service]\n",
        partner.url()
    );
    Gateway::start("", &[("acme-ship", &policy)], ENV)
}

#[test]
fn a_streamed_request_whose_answer_header_trickles_is_a_504_in_time() {
    let partner = Scripted::start(|_, _, _| {
        Act::Trickle(json_answer("200 OK", "", "{}"), Duration::from_millis(40))
    });
    let gateway = stream_gateway_for(&partner);
    let line = "{\"order_id\":1,\"email\":\"a@b\"}\n";
    let body = format!("{:x}\r\n{line}\r\n0\r\n\r\n", line.len());
    let raw = format!(
        "POST /acme-ship/v1/lines HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{body}"
    );
    let started = Instant::now();
    let response = gateway.raw(raw.as_bytes());
    assert!(
        started.elapsed() < TIMEOUT + GRACE,
        "{:?}",
        started.elapsed()
    );
    assert_refused(&response, 504, "upstream_timeout");
    assert_eq!(partner.requests().len(), 1);
    assert!(String::from_utf8_lossy(&partner.requests()[0]).contains("{\"order_id\":1}\n"));
    assert_eq!(upstream_errors(&gateway, "timeout"), 1.0);
}

/// Sends with `send` and checks the answer is the partner timeout's 504, given once the
/// timeout has passed and not much later.
fn answered_504_in_time(send: impl FnOnce() -> Response) {
    let started = Instant::now();
    assert_refused(&send(), 504, "upstream_timeout");
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < TIMEOUT + GRACE, "{took:?}");
}

/// A partner that reads the request whole and never answers: one timeout, one request, a 504.
#[test]
fn a_partner_that_never_answers_is_a_504_in_time() {
    let partner = Scripted::start(|_, _, _| Act::Silent(Duration::from_secs(10)));
    let gateway = gateway_for(&partner);
    answered_504_in_time(|| post(&gateway));
    assert_eq!(partner.requests().len(), 1, "the request was sent again");
    assert_eq!(partner.connections(), 1);
    assert_eq!(upstream_errors(&gateway, "timeout"), 1.0);
}

/// The streamed twin: the whole body reaches the partner, whose answer header never comes.
#[test]
fn a_streamed_request_the_partner_never_answers_is_a_504_in_time() {
    let partner = Scripted::start(|_, _, _| Act::Silent(Duration::from_secs(10)));
    let gateway = stream_gateway_for(&partner);
    answered_504_in_time(|| gateway.raw(&stream_raw()));
    let requests = partner.requests();
    assert_eq!(requests.len(), 1, "the request was sent again");
    assert!(String::from_utf8_lossy(&requests[0]).ends_with("{\"order_id\":1}\n\r\n0\r\n\r\n"));
    assert_eq!(partner.connections(), 1);
    assert_eq!(upstream_errors(&gateway, "timeout"), 1.0);
}

/// One NDJSON line, chunked, to [`stream_gateway_for`]'s route.
fn stream_raw() -> Vec<u8> {
    let line = "{\"order_id\":1,\"email\":\"a@b\"}\n";
    format!(
        "POST /acme-ship/v1/lines HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{line}\r\n0\r\n\r\n",
        line.len()
    )
    .into_bytes()
}

/// A partner address whose accept queue is full and never drained: the kernel drops the
/// gateway's SYNs, so connecting hangs (a partner host gone behind a silent firewall). The
/// connections that filled the queue are returned with it, to be kept open.
fn a_partner_that_never_accepts() -> (std::net::TcpListener, Vec<TcpStream>) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Listening again on Linux only changes the backlog: one queued connection fills it.
    // SAFETY: `listen` on a socket this function owns; no memory is passed.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, queued),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the accept queue never filled");
}

#[test]
fn a_partner_that_never_accepts_the_connection_is_a_504_in_time() {
    let (listener, _queued) = a_partner_that_never_accepts();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let contractor = "kind: contractor\npurpose: shipping\nupstream: URL\nroutes:\n  - path: /v1/lines\n    methods: [POST]\n    stream: ndjson\n    allow: [order_id]\nallowed_callers: [orders-service]\n";
    let gateway = Gateway::start(
        "",
        &[
            ("acme-ship", &ship_partner(&url)),
            ("acme-lines", &contractor.replace("URL", &url)),
        ],
        ENV,
    );
    let lines = String::from_utf8(stream_raw())
        .unwrap()
        .replace("/acme-ship/v1/lines", "/acme-lines/v1/lines");
    answered_504_in_time(|| post(&gateway));
    answered_504_in_time(|| gateway.raw(lines.as_bytes()));
    let metrics = gateway.metrics();
    for partner in ["acme-ship", "acme-lines"] {
        let series = format!(
            r#"partner_gateway_upstream_errors_total{{kind="timeout",partner="{partner}"}}"#
        );
        assert_eq!(metric(&metrics, &series), 1.0, "{partner}");
    }
}

/// Every partner connection answers one request as if kept alive, then closes after a delay
/// that differs from one connection to the next (0 to 3 ms): the gateway's pooled connection
/// dies before, while or after it is taken again. Whatever the moment, no request reaches the
/// partner twice, and every answered one reached it once.
#[test]
fn a_partner_closing_pooled_connections_at_any_moment_gets_each_request_at_most_once() {
    let partner = Scripted::start(|conn, _, _| {
        let after = Duration::from_micros((conn as u64 * 769) % 3000);
        Act::AnswerSlowly(json_answer("200 OK", "", "{}"), after, Vec::new())
    });
    let gateway = gateway_for(&partner);
    let mut answered = Vec::new();
    for order in 0..80 {
        let body = format!(r#"{{"order_id":{order},"shipments":[]}}"#);
        let response = gateway.post_json("/acme-ship/v1/shipments", &body);
        match response.status {
            200 => answered.push(order),
            // The pooled connection closed after the request head was written: not resent.
            502 => assert_refused(&response, 502, "upstream_error"),
            other => panic!("{other}: {}", String::from_utf8_lossy(&response.body)),
        }
    }
    let seen: Vec<u64> = partner
        .requests()
        .iter()
        .map(|raw| {
            let text = String::from_utf8_lossy(raw);
            let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
            serde_json::from_str::<serde_json::Value>(body).unwrap()["order_id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for order in 0..80 {
        let times = seen.iter().filter(|&&o| o == order).count();
        assert!(
            times <= 1,
            "order {order} reached the partner {times} times"
        );
        if answered.contains(&order) {
            assert_eq!(times, 1, "order {order} was answered unseen");
        }
    }
    // A request the partner read is answered: only requests written into a closing
    // connection (never read by the partner) are refused.
    assert_eq!(seen.len(), answered.len(), "{seen:?} vs {answered:?}");
}

/// A small request goes to the partner in one write (head and body), a larger one as head and
/// then body: either way each arrives whole and exact, one after another on one kept
/// connection, and the answers are read as usual.
#[test]
fn small_and_large_requests_share_one_kept_partner_connection() {
    let partner = Scripted::start(|_, index, _| {
        Act::Answer(json_answer("200 OK", "", &format!(r#"{{"n":{index}}}"#)))
    });
    let gateway = gateway_for(&partner);
    let long_name = "A".repeat(40_000);
    let large = SHIPMENT.replace("Ada", &long_name);
    let bodies = [SHIPMENT, large.as_str(), SHIPMENT, large.as_str()];
    for (index, body) in bodies.iter().enumerate() {
        let response = gateway.post_json("/acme-ship/v1/shipments", body);
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["n"], index + 1);
    }
    let requests = partner.requests();
    assert_eq!(requests.len(), bodies.len());
    assert_eq!(
        partner.connections(),
        1,
        "the partner connection was not kept"
    );
    for (request, sent) in requests.iter().zip(bodies) {
        let text = String::from_utf8_lossy(request);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        assert_eq!(body.len(), length, "{head}");
        assert!(
            head.starts_with("POST /v1/shipments HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(body.contains(&long_name), sent.contains(&long_name));
        assert!(body.starts_with(r#"{"order_id":7,"#), "{body}");
    }
}
