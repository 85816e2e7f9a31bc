//! Slow and greedy clients against the real gateway in front of the recording partner: a head
//! that never finishes, a body that trickles, a head that keeps growing, too many connections,
//! and framing pingora refuses before any proxy phase. Each ends in a bounded time with a JSON
//! answer (or a plain close where there is no request to answer), counted, and nothing reaches
//! the partner; keep-alive between requests keeps working.
#[path = "support/scripted.rs"]
mod scripted;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use scripted::{json_answer, Act, Scripted};
use util::*;

const ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "ship-secret")];
const GOOD: &str = r#"{"order_id":"o-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#;

/// The shipping partner behind a gateway with short head and body deadlines.
fn start(max_connections: usize) -> (Mock, Gateway) {
    start_before(Mock::start(), max_connections)
}

/// The same, in front of `mock`.
fn start_before(mock: Mock, max_connections: usize) -> (Mock, Gateway) {
    let gateway = in_front_of(&mock.url(), max_connections);
    (mock, gateway)
}

/// The gateway with those limits in front of the partner at `upstream`.
fn in_front_of(upstream: &str, max_connections: usize) -> Gateway {
    Gateway::start_with(
        |listen, admin| {
            format!(
                "listen: {listen}\nadmin_listen: {admin}\nlimits: {{ max_body_bytes: 100000, \
                 max_depth: 16, upstream_timeout_ms: 1500, header_timeout_ms: 300, \
                 body_timeout_ms: 400, max_header_bytes: 4096, max_connections: {max_connections} }}\n\
                 callers:\n  allow_unauthenticated: true\nsigning: {{ disabled: true }}\n"
            )
        },
        &[("ship", &ship_partner(upstream))],
        ENV,
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn closed(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("partner_gateway_connections_closed_total{{reason=\"{reason}\"}}"),
    )
}

/// Reads until the gateway closes the connection (or 10 s pass): everything it sent.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn parse(bytes: &[u8]) -> Response {
    http1::read_response(bytes, false).unwrap()
}

const HEAD_START: &[u8] =
    b"POST /ship/v1/shipments HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n";

#[test]
fn a_head_that_never_finishes_is_answered_408_within_the_head_deadline() {
    let (mock, gateway) = start(100);
    // All at once but unfinished, and as a drip of one byte every 50 ms (each byte would
    // restart a per-read timeout; the head deadline is for the whole head).
    let mut waiting = connect(gateway.addr);
    waiting.write_all(HEAD_START).unwrap();
    let mut drip = connect(gateway.addr);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        if drip
            .write_all(&HEAD_START[sent % HEAD_START.len()..][..1])
            .is_err()
        {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    drip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let dripped = read_to_close(&mut drip);
    assert!(sent < 20, "the drip was not cut off: {sent} bytes sent");
    assert_refused(&parse(&dripped), 408, "request_timeout");
    let answer = read_to_close(&mut waiting);
    let answer = parse(&answer);
    assert_refused(&answer, 408, "request_timeout");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(3));

    // A connection that never sends a byte is closed at the deadline without an answer.
    let mut silent = connect(gateway.addr);
    let opened = Instant::now();
    assert!(read_to_close(&mut silent).is_empty());
    assert!(opened.elapsed() < Duration::from_secs(3));

    let text = gateway.metrics();
    assert_eq!(closed(&text, "header_timeout"), 3.0);
    assert_eq!(
        metric(
            &text,
            r#"partner_gateway_requests_refused_total{partner="unknown",reason="request_timeout"}"#
        ),
        2.0
    );
    assert!(mock.received().is_empty());
}

#[test]
fn a_head_over_max_header_bytes_is_431_and_one_under_it_passes() {
    let (mock, gateway) = start(100);
    let mut big = HEAD_START.to_vec();
    for i in 0..100 {
        big.extend_from_slice(format!("x-filler-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    // Never finished: the gateway must stop reading at the limit, not at the deadline.
    let mut stream = connect(gateway.addr);
    let started = Instant::now();
    let _ = stream.write_all(&big);
    let answer = parse(&read_to_close(&mut stream));
    assert_refused(&answer, 431, "header_too_large");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "answered by size, not time"
    );

    // A head of about 3.5 KiB is fine.
    let filler = "b".repeat(3000);
    let r = gateway.send(
        "POST",
        "/ship/v1/shipments",
        &[("content-type", "application/json"), ("x-filler", &filler)],
        Some(GOOD.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.received().len(), 1);
    assert_eq!(closed(&gateway.metrics(), "header_too_large"), 1.0);
}

#[test]
fn a_body_that_trickles_is_408_and_nothing_reaches_the_partner() {
    let (mock, gateway) = start(100);
    let mut stream = connect(gateway.addr);
    let mut head = HEAD_START.to_vec();
    head.extend_from_slice(format!("content-length: {}\r\n\r\n", GOOD.len()).as_bytes());
    stream.write_all(&head).unwrap();
    let started = Instant::now();
    for byte in GOOD.as_bytes()[..GOOD.len() - 1].iter() {
        if stream.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let answer = parse(&read_to_close(&mut stream));
    assert_refused(&answer, 408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = gateway.metrics();
    assert_eq!(closed(&text, "body_timeout"), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"partner_gateway_requests_refused_total{partner="ship",reason="request_timeout"}"#
        ),
        1.0
    );
    assert!(mock.received().is_empty());
}

#[test]
fn a_bare_lf_in_a_chunk_extension_ends_within_the_body_deadline() {
    let (mock, gateway) = start(100);
    let mut stream = connect(gateway.addr);
    let mut raw = HEAD_START.to_vec();
    raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n5;ext\n{\"a\":\r\n");
    stream.write_all(&raw).unwrap();
    let started = Instant::now();
    let answer = parse(&read_to_close(&mut stream));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        [400, 408].contains(&answer.status),
        "status {}",
        answer.status
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(mock.received().is_empty());
}

#[test]
fn framing_pingora_refuses_before_any_phase_is_a_counted_json_400() {
    let (mock, gateway) = start(100);
    let cases: [&[u8]; 3] = [
        b"POST /ship/v1/shipments HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
        b"POST /ship/v1/shipments HTTP/1.0\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /ship/v1/shipments HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: gzip\r\n\r\n",
    ];
    for raw in cases {
        let r = gateway.raw(raw);
        assert_refused(&r, 400, "bad_request");
    }
    let text = gateway.metrics();
    assert_eq!(
        metric(
            &text,
            r#"partner_gateway_requests_refused_total{partner="unknown",reason="bad_request"}"#
        ),
        3.0
    );
    assert!(mock.received().is_empty());
}

#[test]
fn more_header_fields_than_are_read_is_431_and_as_many_as_are_read_pass() {
    let (mock, gateway) = start(100);
    // Small fields, the whole head far under max_header_bytes (4096 here): 256 fields are read,
    // one more is too many.
    let head = |fields: usize| {
        let mut raw = b"GET /ship/v1/shipments HTTP/1.1\r\nhost: gw\r\n".to_vec();
        for _ in 1..fields {
            raw.extend_from_slice(b"a:b\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw
    };
    let r = gateway.raw(&head(257));
    assert_refused(&r, 431, "header_too_large");
    // Blank lines before the request line are no head's end.
    let r = gateway.raw(&[&b"\r\n\r\n"[..], &head(300)].concat());
    assert_refused(&r, 431, "header_too_large");
    assert!(r.json()["message"]
        .to_string()
        .contains("256 header fields"));
    assert_eq!(closed(&gateway.metrics(), "header_too_large"), 2.0);
    let r = gateway.raw(&head(256));
    assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(&r.body));
    assert!(mock.received().is_empty());
}

/// Sends one keep-alive GET on `stream` and reads its answer.
fn keepalive_get(stream: &mut TcpStream, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nhost: gw\r\n\r\n");
    stream.write_all(raw.as_bytes()).unwrap();
    http1::read_response(&mut *stream, false).unwrap()
}

#[test]
fn idle_time_between_keep_alive_requests_is_not_head_time() {
    let (mock, gateway) = start(100);
    let mut stream = connect(gateway.addr);
    for (i, pause) in [0, 700, 100].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(pause));
        let r = keepalive_get(&mut stream, &format!("/ship/v1/shipments/s-{i}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // A later head on the same connection has its own deadline, counted from its first byte.
    stream
        .write_all(b"GET /ship/v1/shipments/s-9 HTTP/1.1\r\n")
        .unwrap();
    assert_refused(&parse(&read_to_close(&mut stream)), 408, "request_timeout");
    assert_eq!(mock.received().len(), 3);
    assert_eq!(closed(&gateway.metrics(), "header_timeout"), 1.0);
}

/// An idle kept-alive connection is closed after the keep-alive idle timeout (60 s), also
/// when the caller asks for longer: idle connections cannot hold `max_connections` for ever.
#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (_mock, gateway) = start(100);
    let idle = |keep_alive: &str| {
        let mut stream = connect(gateway.addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(90)))
            .unwrap();
        let raw = format!("GET /ship/v1/shipments/s-1 HTTP/1.1\r\nhost: gw\r\n{keep_alive}\r\n");
        stream.write_all(raw.as_bytes()).unwrap();
        let r = http1::read_response(&mut stream, false).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let answered = std::time::Instant::now();
        let rest = read_to_close(&mut stream);
        (answered.elapsed(), rest)
    };
    std::thread::scope(|scope| {
        let plain = scope.spawn(|| idle(""));
        let asks_more = scope.spawn(|| idle("keep-alive: timeout=100000\r\n"));
        for waiter in [plain, asks_more] {
            let (waited, rest) = waiter.join().unwrap();
            assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
            assert!(
                waited >= Duration::from_secs(55) && waited <= Duration::from_secs(75),
                "closed after {waited:?}"
            );
        }
    });
}

/// Connections whose requests are under way hold their slots: one over `max_connections` is
/// closed unanswered and counted.
#[test]
fn connections_over_max_connections_are_closed_and_counted() {
    // Each request waits a second for the partner.
    let (mock, gateway) = start_before(Mock::start_with_delay(1000), 3);
    // The harness's readiness probe has closed its connection; on a busy machine the gateway
    // may not have released that slot yet, which would make the third held connection the
    // one over the limit.
    std::thread::sleep(Duration::from_millis(300));
    std::thread::scope(|scope| {
        let busy: Vec<_> = (0..3)
            .map(|i| {
                let addr = gateway.addr;
                scope.spawn(move || {
                    let mut stream = connect(addr);
                    keepalive_get(&mut stream, &format!("/ship/v1/shipments/h-{i}")).status
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400));
        let mut extra = connect(gateway.addr);
        let _ = extra.write_all(b"GET /ship/v1/shipments/s-1 HTTP/1.1\r\nhost: gw\r\n\r\n");
        assert!(
            read_to_close(&mut extra).is_empty(),
            "no answer over the limit"
        );
        for held in busy {
            assert_eq!(held.join().unwrap(), 200);
        }
    });
    // At least this one (the harness's own probe connection may still be counted as open).
    assert!(closed(&gateway.metrics(), "too_many_connections") >= 1.0);
    assert_eq!(mock.received().len(), 3);
}

/// Kept-alive connections idle between requests do not lock new callers out: with every slot
/// taken, the connection idle longest is closed (as if its caller had closed it) and the new
/// one is served; the others keep working.
#[test]
fn an_idle_kept_alive_connection_makes_room_for_a_new_one() {
    let (mock, gateway) = start(3);
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(gateway.addr)).collect();
    for (i, stream) in held.iter_mut().enumerate() {
        let r = keepalive_get(stream, &format!("/ship/v1/shipments/h-{i}"));
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused_before = closed(&gateway.metrics(), "too_many_connections");
    let mut extra = connect(gateway.addr);
    let r = keepalive_get(&mut extra, "/ship/v1/shipments/s-1");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The first held connection (idle longest) was closed without a byte.
    assert!(read_to_close(&mut held[0]).is_empty());
    for (i, stream) in held.iter_mut().enumerate().skip(1) {
        let r = keepalive_get(stream, &format!("/ship/v1/shipments/again-{i}"));
        assert_eq!(r.status, 200);
    }
    let refused_after = closed(&gateway.metrics(), "too_many_connections");
    assert_eq!(refused_before, refused_after, "nobody was refused");
    assert_eq!(mock.received().len(), 6);
}

#[test]
fn the_admin_listener_is_held_to_the_same_head_and_body_limits() {
    let (_mock, gateway) = start(100);
    let started = Instant::now();
    // A head that never finishes: 408 at the deadline.
    let mut waiting = connect(gateway.admin);
    waiting
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    assert_refused(&parse(&read_to_close(&mut waiting)), 408, "request_timeout");
    // A head over max_header_bytes: 431.
    let mut big = connect(gateway.admin);
    let filler = format!("x-filler: {}\r\n", "a".repeat(8000));
    let _ = big.write_all(format!("GET /metrics HTTP/1.1\r\nhost: x\r\n{filler}\r\n").as_bytes());
    assert_refused(&parse(&read_to_close(&mut big)), 431, "header_too_large");
    // A body announced over the admin limit: 413 before any of it is read.
    let mut huge = connect(gateway.admin);
    huge.write_all(
        b"PUT /optouts/c-5 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20000000\r\n\r\n",
    )
    .unwrap();
    assert_refused(&parse(&read_to_close(&mut huge)), 413, "body_too_large");
    // A body that trickles: 408 at the body deadline.
    let mut slow = connect(gateway.admin);
    slow.write_all(
        b"PUT /optouts/c-5 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{",
    )
    .unwrap();
    assert_refused(&parse(&read_to_close(&mut slow)), 408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A silent connection is closed without an answer; kept-alive requests go on working.
    let mut silent = connect(gateway.admin);
    assert!(read_to_close(&mut silent).is_empty());
    let mut alive = connect(gateway.admin);
    for _ in 0..3 {
        assert_eq!(keepalive_get(&mut alive, "/healthz").status, 200);
        std::thread::sleep(Duration::from_millis(400));
    }
    // The closes are counted; the refused admin heads are no proxy requests.
    let text = gateway.metrics();
    assert_eq!(closed(&text, "header_timeout"), 2.0, "{text}");
    assert_eq!(closed(&text, "header_too_large"), 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            r#"partner_gateway_requests_refused_total{partner="unknown",reason="request_timeout"}"#
        ),
        0.0
    );
}

#[test]
fn a_caller_that_stops_reading_its_answer_gives_up_its_slot() {
    // An answer far larger than the socket buffers between gateway and caller.
    let blob = "x".repeat(16 << 20);
    let partner = Scripted::start(move |_, _, _| {
        Act::Answer(json_answer(
            "200 OK",
            "",
            &format!("{{\"blob\":\"{blob}\"}}"),
        ))
    });
    let gateway = in_front_of(&partner.url(), 1);
    std::thread::sleep(Duration::from_millis(300));
    // The one slot: a caller that asks and never reads.
    let mut stalled = connect(gateway.addr);
    stalled
        .write_all(b"GET /ship/v1/shipments/s-1 HTTP/1.1\r\nhost: gw\r\n\r\n")
        .unwrap();
    // Once a write to it has waited body_timeout_ms (400 ms), it is cut off.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let mut next = connect(gateway.addr);
    let r = keepalive_get(&mut next, "/ship/v1/shipments/s-2");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), (16 << 20) + 11);
    // What the stalled caller still finds is a cut answer, then the end.
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let rest = read_to_close(&mut stalled);
    assert!(rest.len() < 16 << 20, "the whole answer");
    assert!(started.elapsed() < Duration::from_secs(9));
}
