//! Adversarial requests against the real gateway in front of a recording partner. Each test
//! tries to get a field the policy does not allow, an opted-out customer's record, a client
//! header, or anything at all for a refused request past the gateway. A passing test documents
//! a defence; an `#[ignore = "LEAK: .."]` or `#[ignore = "WRONG STATUS: .."]` one documents an
//! open finding.
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use util::*;

const SECRET: &str = "SECRET";

fn biz_partner(upstream: &str) -> String {
    marketing_partner(
        upstream,
        r#"  - path: /v1/profile
    methods: [POST]
    records: $
    subject: customer_id
    allow:
      - customer_id
      - name
allowed_callers: [marketing-service]
upstream_auth: { header: x-api-key, env: BIZ_KEY }
"#,
    )
}

fn gov_partner(upstream: &str) -> String {
    format!(
        r#"kind: government
purpose: tax-reporting
upstream: {upstream}
routes:
  - path: /v1/filings
    methods: [POST]
    allow:
      - year
      - name
legal_basis_header: ohsoft-legal-basis
allowed_callers: [orders-service]
"#
    )
}

const ENV: &[(&str, &str)] = &[
    ("SHIP_TOKEN", "partner-secret"),
    ("BIZ_KEY", "biz-secret"),
    ("ADV_ADMIN_TOKEN", "admin-secret"),
];

const EXTRA_YAML: &str = "admin_token_env: ADV_ADMIN_TOKEN\noptouts: { path: data/optouts }\n";

/// An upstream that only counts connections: any connection at all is a failure. The count is
/// taken from the listener's accept queue when asked, so a connection the gateway opened
/// before it answered is counted without waiting for a thread to see it.
struct Tripwire {
    addr: SocketAddr,
    listener: TcpListener,
    accepted: AtomicUsize,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Tripwire {
            addr: listener.local_addr().unwrap(),
            listener,
            accepted: AtomicUsize::new(0),
        }
    }

    fn connections(&self) -> usize {
        while let Ok((stream, _)) = self.listener.accept() {
            self.accepted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
        self.accepted.load(Ordering::SeqCst)
    }
}

struct Setup {
    mock: Mock,
    trip: Tripwire,
    gateway: Gateway,
}

/// `acme-ship`, `biz` and `gov` in front of the recording mock; `trip-ship` (acme-ship's
/// policy) in front of a tripwire that counts connections.
fn start() -> Setup {
    let mock = Mock::start();
    let trip = Tripwire::start();
    let gateway = Gateway::start(
        EXTRA_YAML,
        &[
            ("acme-ship", &ship_partner(&mock.url())),
            ("trip-ship", &ship_partner(&format!("http://{}", trip.addr))),
            ("biz", &biz_partner(&mock.url())),
            ("gov", &gov_partner(&mock.url())),
        ],
        ENV,
    );
    Setup {
        mock,
        trip,
        gateway,
    }
}

impl Setup {
    #[track_caller]
    fn assert_nothing_forwarded(&self) {
        let received = self.mock.received();
        assert!(
            received.is_empty(),
            "refused requests reached the partner: {received:#?}"
        );
        assert_eq!(
            self.trip.connections(),
            0,
            "the gateway opened a connection to a partner for a refused request"
        );
    }

    fn put_optout(&self, id: &str, scopes: &[&str]) {
        let body = serde_json::json!({ "scopes": scopes }).to_string();
        let r = http1::send(
            &self.gateway.admin.to_string(),
            "PUT",
            &format!("/optouts/{id}"),
            &[
                ("authorization", "Bearer admin-secret"),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

/// A raw HTTP/1.1 request with `host`, `connection: close` and the given extra header lines.
fn raw_request(request_line: &str, header_lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{request_line}\r\nhost: gw\r\nconnection: close\r\n").into_bytes();
    for line in header_lines {
        raw.extend_from_slice(line.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `raw` on one connection and reads everything until the gateway closes it (or 3 s
/// pass): returns the status code of every response seen.
fn statuses_on_one_connection(addr: SocketAddr, raw: &[u8]) -> (Vec<u16>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&all).into_owned();
    let statuses = text
        .match_indices("HTTP/1.")
        .filter_map(|(i, _)| text[i..].split_whitespace().nth(1)?.parse().ok())
        .collect();
    (statuses, text)
}

const SHIPMENT: &str = r#"{"order_id":7,"shipments":[{"customer_id":"c-1","name":"Ada","email":"SECRET","card_number":"4111 1111 1111 1234","address":{"street":"1 Main"},"items":[{"sku":"A","price":"SECRET"}]}]}"#;
const SHIPMENT_FILTERED: &str = r#"{"order_id":7,"shipments":[{"customer_id":"c-1","name":"Ada","card_number":"***1234","address":{"street":"1 Main"},"items":[{"sku":"A"}]}]}"#;

// ---------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------

#[test]
fn client_identifying_headers_never_reach_the_partner() {
    let s = start();
    let headers: &[(&str, &str)] = &[
        ("content-type", "application/json; charset=UTF-8"),
        ("authorization", "Bearer CALLER-SECRET"),
        ("Authorization", "Basic Q0FMTEVSOlNFQ1JFVA=="),
        ("proxy-authorization", "Basic SECRET"),
        ("cookie", "session=SECRET"),
        ("Cookie", "other=SECRET"),
        ("cookie2", "SECRET"),
        ("user-agent", "SECRET-UA"),
        ("referer", "https://SECRET/"),
        ("referrer", "https://SECRET/"),
        ("origin", "https://SECRET"),
        ("x-forwarded-for", "203.0.113.9"),
        ("X-Forwarded-Host", "SECRET"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
        ("true-client-ip", "203.0.113.9"),
        ("cf-connecting-ip", "203.0.113.9"),
        ("x-client-ip", "203.0.113.9"),
        ("client-ip", "203.0.113.9"),
        ("x-cluster-client-ip", "203.0.113.9"),
        ("x-original-forwarded-for", "203.0.113.9"),
        ("via", "1.1 SECRET"),
        ("sec-ch-ua", "SECRET"),
        ("dnt", "1"),
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/SECRET"),
        ("ohsoft-data-use", "use=\"SECRET\""),
        ("ohsoft-data-use-token", "SECRET"),
        ("x-api-key", "SECRET"),
        ("te", "trailers"),
        ("x-request-id", "req-1"),
    ];
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/shipments",
        headers,
        Some(SHIPMENT.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let received = s.mock.only_headers();
    let text = format!("{received:?}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.contains("203.0.113.9"), "{text}");
    let names: Vec<&str> = received.iter().map(|(n, _)| n.as_str()).collect();
    for name in &names {
        assert!(
            [
                "host",
                "content-type",
                "content-length",
                "x-request-id",
                "authorization",
                "ohsoft-data-use",
                "ohsoft-data-use-token"
            ]
            .contains(name),
            "unexpected header {name} at the partner: {received:?}"
        );
    }
    let auth: Vec<_> = received
        .iter()
        .filter(|(n, _)| n == "authorization")
        .collect();
    assert_eq!(auth.len(), 1, "{received:?}");
    assert_eq!(auth[0].1, "Bearer partner-secret");
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);

    // A partner with another credential header: the caller's authorization must not ride along.
    let s = start();
    let r = s.gateway.send(
        "POST",
        "/biz/v1/audiences",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer CALLER-SECRET"),
            ("x-api-key", "CALLER-SECRET"),
        ],
        Some(br#"{"contacts":[{"customer_id":1,"name":"a"}]}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let received = s.mock.only_headers();
    assert!(
        !format!("{received:?}").contains("CALLER-SECRET"),
        "{received:?}"
    );
    assert!(received
        .iter()
        .any(|(n, v)| n == "x-api-key" && v == "biz-secret"));
}

#[test]
fn connection_header_cannot_remove_what_the_gateway_adds() {
    let s = start();
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/shipments",
        &[
            ("content-type", "application/json"),
            (
                "connection",
                "ohsoft-data-use-token, ohsoft-data-use, authorization, content-length, host, content-type",
            ),
            ("Connection", "x-request-id, keep-alive"),
            ("x-request-id", "SECRET"),
        ],
        Some(SHIPMENT.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let headers = s.mock.only_headers();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert!(get("ohsoft-data-use").is_some(), "{headers:?}");
    assert_eq!(
        get("authorization").as_deref(),
        Some("Bearer partner-secret")
    );
    assert_eq!(
        get("content-length"),
        Some(SHIPMENT_FILTERED.len().to_string())
    );
    assert!(get("host").is_some(), "{headers:?}");
    // The gateway describes the body it made, whatever the caller's `Connection` says.
    assert_eq!(get("content-type").as_deref(), Some("application/json"));
    assert_eq!(get("x-request-id"), None, "named in Connection: hop-by-hop");
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);
}

#[test]
fn legal_basis_header_tricks() {
    let s = start();
    let body: &[u8] = br#"{"year":2024,"name":"a","ssn":"SECRET"}"#;
    let json = ("content-type", "application/json");
    assert_refused(
        &s.gateway
            .send("POST", "/gov/v1/filings", &[json], Some(body)),
        403,
        "legal_basis_missing",
    );
    assert_refused(
        &s.gateway.send(
            "POST",
            "/gov/v1/filings",
            &[json, ("ohsoft-legal-basis", "  ")],
            Some(body),
        ),
        403,
        "legal_basis_missing",
    );
    assert_refused(
        &s.gateway.send(
            "POST",
            "/gov/v1/filings",
            &[
                json,
                ("ohsoft-legal-basis", "case-1"),
                ("Ohsoft-Legal-Basis", "case-2"),
            ],
            Some(body),
        ),
        403,
        "legal_basis_missing",
    );
    for bad in ["case-\u{e9}", "case\t1"] {
        assert_refused(
            &s.gateway.send(
                "POST",
                "/gov/v1/filings",
                &[json, ("ohsoft-legal-basis", bad)],
                Some(body),
            ),
            403,
            "legal_basis_missing",
        );
    }
    s.assert_nothing_forwarded();
}

/// The legal basis named in `Connection` would be dropped on the way out: the partner would get
/// a request with no legal basis header. Either refuse or forward it anyway; never forward a
/// government request without it.
#[test]
fn legal_basis_cannot_be_made_hop_by_hop() {
    let s = start();
    let r = s.gateway.send(
        "POST",
        "/gov/v1/filings",
        &[
            ("content-type", "application/json"),
            ("ohsoft-legal-basis", "case-1"),
            ("connection", "ohsoft-legal-basis"),
        ],
        Some(br#"{"year":2024}"#),
    );
    if r.status == 200 {
        let headers = s.mock.only_headers();
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "ohsoft-legal-basis" && v == "case-1"),
            "a government partner received a request without its legal basis: {headers:?}"
        );
    } else {
        assert_refused(&r, 400, "bad_request");
        s.assert_nothing_forwarded();
    }
}

// ---------------------------------------------------------------------------------------
// Media types and encodings
// ---------------------------------------------------------------------------------------

#[test]
fn only_plain_utf8_json_bodies_are_filtered() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    for content_type in [
        "application/json; charset=utf-16",
        "application/json; charset=UTF-16LE",
        "application/json; charset=utf-32",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf-8; charset=utf-16",
        "application/json;charset=utf-8;x=1",
        "application/json-seq",
        "application/jsonl",
        "application/x-ndjson",
        "application/vnd.api+json",
        "application/problem+json",
        "application/json, text/plain",
        "text/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application /json",
        "",
    ] {
        let r = s.gateway.send(
            "POST",
            "/trip-ship/v1/shipments",
            &[("content-type", content_type)],
            Some(body),
        );
        assert_refused(&r, 415, "unsupported_media_type");
    }
    // No content-type at all.
    let r = s
        .gateway
        .send("POST", "/trip-ship/v1/shipments", &[], Some(body));
    assert_refused(&r, 415, "unsupported_media_type");
    // Two content-type headers, either order.
    for pair in [
        [
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ],
        [
            ("content-type", "text/plain"),
            ("content-type", "application/json"),
        ],
        [
            ("content-type", "application/json"),
            ("Content-Type", "application/json"),
        ],
    ] {
        let r = s
            .gateway
            .send("POST", "/trip-ship/v1/shipments", &pair, Some(body));
        assert_refused(&r, 415, "unsupported_media_type");
    }
    // Bytes that are not ASCII in the media type: never taken for JSON.
    for content_type in [
        &b"application/json\xc3\xa9"[..],
        b"APPLICATION/JSON\xff",
        b"\xc3\x84pplication/json",
    ] {
        let mut raw = format!(
            "POST /trip-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-length: {}\r\ncontent-type: ",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(content_type);
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(body);
        let r = s.gateway.raw(&raw);
        assert!(matches!(r.status, 400 | 415), "{}", r.status);
    }
    // UTF-16 bytes under a UTF-8 label are malformed JSON.
    let utf16: Vec<u8> = r#"{"order_id":1}"#.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let r = s.gateway.send(
        "POST",
        "/trip-ship/v1/shipments",
        &[("content-type", "application/json")],
        Some(&utf16),
    );
    assert_refused(&r, 400, "bad_request");
    s.assert_nothing_forwarded();
}

#[test]
fn content_encodings_the_gateway_cannot_read_are_refused() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    let json = ("content-type", "application/json");
    for encodings in [
        vec![("content-encoding", "gzip")],
        vec![("content-encoding", "identity, gzip")],
        vec![("content-encoding", "gzip, identity")],
        vec![("content-encoding", "br")],
        vec![("content-encoding", "x-gzip")],
        vec![
            ("content-encoding", "identity"),
            ("content-encoding", "gzip"),
        ],
        vec![("content-encoding", "")],
    ] {
        let mut headers = vec![json];
        headers.extend(encodings.iter().copied());
        let r = s
            .gateway
            .send("POST", "/trip-ship/v1/shipments", &headers, Some(body));
        assert_refused(&r, 415, "unsupported_media_type");
    }
    s.assert_nothing_forwarded();
    // `identity` (any case) is no encoding at all.
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/shipments",
        &[json, ("content-encoding", "IDENTITY")],
        Some(body),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

#[test]
fn chunked_with_content_length_and_extensions_is_filtered_whole() {
    let s = start();
    // Transfer-Encoding wins over a lying Content-Length; chunk extensions and trailers are
    // ignored. Whatever the framing, the partner sees the filtered body only.
    let mut body = Vec::new();
    for (i, chunk) in SHIPMENT.as_bytes().chunks(7).enumerate() {
        body.extend_from_slice(format!("{:x};ext{i}=\"v\"\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\ncookie: SECRET\r\nx-forwarded-for: 203.0.113.9\r\n\r\n");
    let raw = raw_request(
        "POST /acme-ship/v1/shipments HTTP/1.1",
        &[
            "content-type: application/json",
            "content-length: 5",
            "transfer-encoding: chunked",
        ],
        &body,
    );
    let r = s.gateway.raw(&raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);
    let headers = format!("{:?}", s.mock.only_headers());
    assert!(!headers.contains("SECRET") && !headers.contains("203.0.113.9"));
}

#[test]
fn framing_tricks_are_refused_before_any_connection() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "gzip, chunked transfer coding",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &[
                    "content-type: application/json",
                    "transfer-encoding: gzip, chunked",
                ],
                &chunked(body, 10),
            ),
        ),
        (
            "transfer-encoding gzip then chunked, two headers",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &[
                    "content-type: application/json",
                    "transfer-encoding: gzip",
                    "transfer-encoding: chunked",
                ],
                &chunked(body, 10),
            ),
        ),
        (
            "non-chunked final transfer coding",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &["content-type: application/json", "transfer-encoding: gzip"],
                body,
            ),
        ),
        (
            "chunked, identity",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &[
                    "content-type: application/json",
                    "transfer-encoding: chunked, identity",
                ],
                &chunked(body, 10),
            ),
        ),
        (
            "chunked given twice",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &[
                    "content-type: application/json",
                    "transfer-encoding: chunked, chunked",
                ],
                &chunked(body, 10),
            ),
        ),
        (
            "differing content-lengths",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &[
                    "content-type: application/json",
                    &format!("content-length: {}", body.len()),
                    "content-length: 3",
                ],
                body,
            ),
        ),
        (
            "chunked with HTTP/1.0",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.0",
                &[
                    "content-type: application/json",
                    "transfer-encoding: chunked",
                ],
                &chunked(body, 10),
            ),
        ),
        (
            "bad chunk size",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &[
                    "content-type: application/json",
                    "transfer-encoding: chunked",
                ],
                b"zz\r\n{}\r\n0\r\n\r\n",
            ),
        ),
        (
            "content-length not a number",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &["content-type: application/json", "content-length: 1e3"],
                body,
            ),
        ),
        (
            "negative content-length",
            raw_request(
                "POST /trip-ship/v1/shipments HTTP/1.1",
                &["content-type: application/json", "content-length: -1"],
                body,
            ),
        ),
    ];
    for (what, raw) in cases {
        let (statuses, text) = statuses_on_one_connection(s.gateway.addr, &raw);
        assert!(
            statuses.first().is_some_and(|s| (400..500).contains(s)),
            "{what}: expected a 4xx refusal, got {statuses:?}: {text}"
        );
    }
    // A body shorter than its content-length (the caller gives up): nothing is forwarded.
    let mut stream = TcpStream::connect(s.gateway.addr).unwrap();
    stream
        .write_all(&raw_request(
            "POST /trip-ship/v1/shipments HTTP/1.1",
            &["content-type: application/json", "content-length: 500"],
            br#"{"order_id":1}"#,
        ))
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // The gateway closes the connection once it is done with the request: anything it
    // forwarded was sent (and any connection to the tripwire made) before that.
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    s.assert_nothing_forwarded();
}

/// Every refusal is `{"error": code, "message": ..}` with its status. Framing errors are
/// answered by pingora before any phase of the proxy runs, with an empty 400.
#[test]
fn framing_refusals_are_json() {
    let s = start();
    let raw = raw_request(
        "POST /trip-ship/v1/shipments HTTP/1.1",
        &["content-type: application/json", "transfer-encoding: gzip"],
        SHIPMENT.as_bytes(),
    );
    assert_refused(&s.gateway.raw(&raw), 400, "bad_request");
    s.assert_nothing_forwarded();
}

#[test]
fn expect_continue_is_filtered_or_refused_as_usual() {
    let s = start();
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/shipments",
        &[
            ("content-type", "application/json"),
            ("expect", "100-continue"),
        ],
        Some(SHIPMENT.as_bytes()),
    );
    // The client sent the body without waiting; the gateway's interim 100 Continue is
    // skipped by the client, and the final answer is the partner's.
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);
    let headers = format!("{:?}", s.mock.only_headers());
    assert!(!headers.contains("100-continue"), "{headers}");

    // Refused before the body is read: answered at once, without waiting for the body.
    let s = start();
    let raw = raw_request(
        "POST /trip-ship/v1/nothing HTTP/1.1",
        &[
            "content-type: application/json",
            "expect: 100-continue",
            "content-length: 10",
        ],
        b"",
    );
    let (statuses, text) = statuses_on_one_connection(s.gateway.addr, &raw);
    assert_eq!(statuses, vec![403], "{text}");
    assert!(text.contains("route_not_allowed"), "{text}");
    // Refused after the body is read.
    let raw = raw_request(
        "POST /trip-ship/v1/shipments HTTP/1.1",
        &[
            "content-type: text/plain",
            "expect: 100-continue",
            "content-length: 2",
        ],
        b"{}",
    );
    let (statuses, text) = statuses_on_one_connection(s.gateway.addr, &raw);
    assert_eq!(
        statuses.iter().filter(|s| **s >= 200).collect::<Vec<_>>(),
        vec![&415],
        "{text}"
    );
    assert!(text.contains("unsupported_media_type"), "{text}");
    s.assert_nothing_forwarded();
}

/// A refused request's unread body must never be parsed as a second request on the same
/// connection (request smuggling past the refusal).
#[test]
fn body_of_a_refused_request_is_not_parsed_as_a_new_request() {
    let s = start();
    let smuggled = format!(
        "POST /acme-ship/v1/shipments?page=smuggled HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{SHIPMENT}",
        SHIPMENT.len()
    );
    let firsts: Vec<(&str, &str)> = vec![
        (
            "POST /nobody/v1/shipments HTTP/1.1",
            "content-type: application/json",
        ),
        (
            "POST /acme-ship/v1/nothing HTTP/1.1",
            "content-type: application/json",
        ),
        (
            "PUT /acme-ship/v1/shipments HTTP/1.1",
            "content-type: application/json",
        ),
        (
            "POST /acme-ship/v1/shipments HTTP/1.1",
            "content-type: text/plain",
        ),
        (
            "POST /acme-ship/v1/shipments HTTP/1.1",
            "content-encoding: gzip",
        ),
        (
            "POST /acme-ship/v1/../shipments HTTP/1.1",
            "content-type: application/json",
        ),
        (
            "POST /gov/v1/filings HTTP/1.1",
            "content-type: application/json",
        ),
        ("POST /acme-ship/v1/shipments HTTP/1.1", "upgrade: h2c"),
        (
            "GET /acme-ship/v1/shipments/7 HTTP/1.1",
            "content-type: application/json",
        ),
    ];
    for (line, header) in &firsts {
        for expect in [None, Some("expect: 100-continue")] {
            let mut headers = vec![
                *header,
                // keep-alive on purpose: the connection must still not carry a second request.
            ];
            headers.extend(expect);
            let length = format!("content-length: {}", smuggled.len());
            headers.push(&length);
            let mut raw = format!("{line}\r\nhost: gw\r\n").into_bytes();
            for h in &headers {
                raw.extend_from_slice(h.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            raw.extend_from_slice(smuggled.as_bytes());
            let (statuses, text) = statuses_on_one_connection(s.gateway.addr, &raw);
            let finals: Vec<u16> = statuses.iter().copied().filter(|s| *s >= 200).collect();
            assert_eq!(
                finals.len(),
                1,
                "{line} / {header}: expected exactly one answer, got {statuses:?}: {text}"
            );
            assert!(finals[0] >= 400, "{line}: {text}");
        }
    }
    // Over the limit by content-length: refused before reading, the body is never parsed.
    let mut raw =
        b"POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 200000\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(smuggled.as_bytes());
    let (statuses, text) = statuses_on_one_connection(s.gateway.addr, &raw);
    assert_eq!(statuses, vec![413], "{text}");
    let received = s.mock.received();
    assert!(
        received.is_empty(),
        "a smuggled request reached the partner: {received:#?}"
    );
    assert_eq!(s.trip.connections(), 0);
}

// ---------------------------------------------------------------------------------------
// Request targets
// ---------------------------------------------------------------------------------------

#[test]
fn request_target_tricks_are_refused() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    let json = [("content-type", "application/json")];
    let cases: &[(&str, u16, &str)] = &[
        ("/trip-ship/v1/%2e%2e/v1/shipments", 400, "bad_request"),
        ("/trip-ship/v1/%2E%2E/v1/shipments", 400, "bad_request"),
        ("/trip-ship/v1/x/%2e%2e/shipments", 400, "bad_request"),
        ("/trip-ship/v1/./shipments", 400, "bad_request"),
        ("/trip-ship/v1/x/../shipments", 400, "bad_request"),
        ("/trip-ship/v1%2fshipments", 400, "bad_request"),
        ("/trip-ship/v1%252fshipments", 400, "bad_request"),
        ("/trip-ship/v1%25%32%66shipments", 400, "bad_request"),
        ("/trip-ship/v1%5cshipments", 400, "bad_request"),
        ("/trip-ship/v1\\shipments", 400, "bad_request"),
        ("/trip-ship//v1/shipments", 400, "bad_request"),
        ("//trip-ship/v1/shipments", 400, "bad_request"),
        ("/trip-ship/v1/shipments%00", 400, "bad_request"),
        ("/trip-ship/v1/shipments%2e", 400, "bad_request"),
        ("/trip-ship%2fv1/shipments", 400, "bad_request"),
        ("/trip-ship/v1/shipments/", 403, "route_not_allowed"),
        ("/trip-ship/v1/shipments;x", 403, "route_not_allowed"),
        ("/trip-ship/v1/shipments;/", 403, "route_not_allowed"),
        ("/trip-ship/v1/SHIPMENTS", 403, "route_not_allowed"),
        ("/trip-ship/v1/shipments.json", 403, "route_not_allowed"),
        ("/trip-ship/V1/shipments", 403, "route_not_allowed"),
        (
            "/trip-ship/v1/shipments/7/../../shipments",
            400,
            "bad_request",
        ),
        ("/TRIP-SHIP/v1/shipments", 404, "unknown_partner"),
        ("/trip-ship%20/v1/shipments", 404, "unknown_partner"),
        ("/trip-ship", 403, "route_not_allowed"),
        ("/trip-ship/", 403, "route_not_allowed"),
        ("/", 404, "unknown_partner"),
    ];
    let mut failures = Vec::new();
    for (target, status, code) in cases {
        let r = s.gateway.send("POST", target, &json, Some(body));
        let got = r.json();
        if r.status != *status || got["error"] != *code {
            failures.push(format!("{target}: {} {got}", r.status));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    s.assert_nothing_forwarded();
}

#[test]
fn odd_request_targets_that_are_forwarded_are_filtered() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    // Decoded unreserved escapes name the same route: filtered like any request.
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/ship%6Dents",
        &[("content-type", "application/json")],
        Some(body),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rec = &s.mock.received()[0];
    assert_eq!(rec["path"], "/v1/shipments");
    assert_eq!(rec["body"], SHIPMENT_FILTERED);

    // Absolute-form target (Host matches the authority): routed by its path, filtered, and sent
    // to the partner's own host.
    let s = start();
    let raw = format!(
        "POST http://gw/acme-ship/v1/shipments?page=1&email=SECRET HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{SHIPMENT}",
        SHIPMENT.len()
    );
    let r = s.gateway.raw(raw.as_bytes());
    if r.status == 200 {
        let rec = &s.mock.received()[0];
        assert_eq!(rec["path"], "/v1/shipments");
        assert_eq!(rec["query"], "page=1");
        assert_eq!(rec["body"], SHIPMENT_FILTERED);
        let headers = headers_of(rec);
        let host = headers.iter().find(|(n, _)| n == "host").unwrap();
        assert_eq!(host.1, s.mock.addr.to_string());
    } else {
        assert_refused(&r, 400, "bad_request");
        s.assert_nothing_forwarded();
    }
    // Absolute-form with a Host that differs: refused by pingora, never forwarded.
    let s = start();
    let raw = format!(
        "POST http://evil.example/trip-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{SHIPMENT}",
        SHIPMENT.len()
    );
    let (statuses, text) = statuses_on_one_connection(s.gateway.addr, raw.as_bytes());
    assert!(
        statuses.first().is_some_and(|s| (400..500).contains(s)),
        "{statuses:?} {text}"
    );
    s.assert_nothing_forwarded();
}

#[test]
fn query_smuggling_is_re_encoded() {
    let s = start();
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/shipments?page=1;email=SECRET&email=SECRET&page=2&pa%67e=3&page%3Demail=SECRET&PAGE=SECRET&page[]=SECRET&page.x=SECRET&%70age=4%26email%3DSECRET&;page=5&page=6%3bx=SECRET&page=a&page=%zz&page%00=SECRET",
        &[("content-type", "application/json")],
        Some(SHIPMENT.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rec = &s.mock.received()[0];
    let query = rec["query"].as_str().unwrap().to_string();
    // Every parameter the partner can split off by `&` or `;` must be named `page`.
    for pair in query.split(['&', ';']) {
        let name = pair.split('=').next().unwrap();
        let decoded = name.replace("%67", "g").replace("%70", "p");
        assert_eq!(decoded, "page", "parameter {pair:?} in {query:?}");
    }
    assert!(!query.contains(';'), "{query}");
}

#[test]
fn upgrade_connect_and_http10() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    for headers in [
        vec![
            ("content-type", "application/json"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        vec![
            ("content-type", "application/json"),
            ("upgrade", "websocket"),
        ],
        vec![("content-type", "application/json"), ("Upgrade", "")],
    ] {
        let r = s
            .gateway
            .send("POST", "/trip-ship/v1/shipments", &headers, Some(body));
        assert_refused(&r, 400, "bad_request");
    }
    // HTTP/2 prior knowledge on the HTTP/1 listener.
    let (statuses, text) = statuses_on_one_connection(
        s.gateway.addr,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    );
    assert!(statuses.iter().all(|s| *s >= 400), "{statuses:?}: {text}");
    // Upgrade over HTTP/1.0 is still an Upgrade.
    let raw = raw_request(
        "POST /trip-ship/v1/shipments HTTP/1.0",
        &[
            "content-type: application/json",
            "upgrade: websocket",
            &format!("content-length: {}", body.len()),
        ],
        body,
    );
    assert_refused(&s.gateway.raw(&raw), 400, "bad_request");
    s.assert_nothing_forwarded();

    // HTTP/1.0 with a content-length is filtered like HTTP/1.1.
    let s = start();
    let raw = raw_request(
        "POST /acme-ship/v1/shipments HTTP/1.0",
        &[
            "content-type: application/json",
            &format!("content-length: {}", body.len()),
            "cookie: SECRET",
        ],
        body,
    );
    let r = s.gateway.raw(&raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);
    assert!(!format!("{:?}", s.mock.only_headers()).contains("SECRET"));
}

#[test]
fn connect_is_refused_before_any_connection() {
    let s = start();
    for target in [
        "CONNECT trip-ship:443 HTTP/1.1",
        "CONNECT /trip-ship/v1/shipments HTTP/1.1",
    ] {
        let (statuses, text) =
            statuses_on_one_connection(s.gateway.addr, &raw_request(target, &[], b""));
        assert!(
            statuses.first().is_some_and(|s| (400..500).contains(s)),
            "{target}: {statuses:?} {text}"
        );
    }
    s.assert_nothing_forwarded();
}

/// An absolute-form target is for forward proxies: refused with the JSON 400 whatever its
/// scheme, also when its host is the `Host` header's (which pingora lets through).
#[test]
fn absolute_form_targets_are_refused() {
    let s = start();
    for target in [
        "POST http://gw/trip-ship/v1/shipments HTTP/1.1",
        "POST HTTP://gw/trip-ship/v1/shipments HTTP/1.1",
        "POST ftp://gw/trip-ship/v1/shipments HTTP/1.1",
        "POST http://other.example/trip-ship/v1/shipments HTTP/1.1",
    ] {
        let raw = raw_request(
            target,
            &[
                "content-type: application/json",
                &format!("content-length: {}", SHIPMENT.len()),
            ],
            SHIPMENT.as_bytes(),
        );
        let r = s.gateway.raw(&raw);
        assert_refused(&r, 400, "bad_request");
        let message = r.json()["message"].as_str().unwrap().to_string();
        // (pingora refuses a host other than the `Host` header's before the gateway sees it.)
        let ours = !target.contains("other.example");
        assert!(
            !ours || message.contains("absolute-form"),
            "{target}: {message}"
        );
    }
    // The asterisk form is no absolute form, and is told so.
    let r = s.gateway.raw(&raw_request("OPTIONS * HTTP/1.1", &[], b""));
    assert_refused(&r, 400, "bad_request");
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("must be a path"), "{message}");
    s.assert_nothing_forwarded();
}

/// `Upgrade` requests and `CONNECT` are refused (400) with the JSON body.
#[test]
fn connect_is_refused_with_400_json() {
    let s = start();
    let raw = raw_request("CONNECT /trip-ship/v1/shipments HTTP/1.1", &[], b"");
    assert_refused(&s.gateway.raw(&raw), 400, "bad_request");
    s.assert_nothing_forwarded();
}

#[test]
fn bodyless_route_refuses_bodies_in_any_framing() {
    let s = start();
    let body = br#"{"email":"SECRET"}"#;
    let r = s.gateway.raw(&raw_request(
        "GET /trip-ship/v1/shipments/7 HTTP/1.1",
        &[
            "content-type: application/json",
            "transfer-encoding: chunked",
        ],
        &chunked(body, 4),
    ));
    assert_refused(&r, 400, "bad_request");
    let r = s.gateway.raw(&raw_request(
        "GET /trip-ship/v1/shipments/7 HTTP/1.1",
        &[
            "content-type: text/plain",
            &format!("content-length: {}", body.len()),
        ],
        body,
    ));
    assert_refused(&r, 400, "bad_request");
    // Whitespace is a body too.
    let r = s.gateway.raw(&raw_request(
        "GET /trip-ship/v1/shipments/7 HTTP/1.1",
        &["content-length: 1"],
        b" ",
    ));
    assert_refused(&r, 400, "bad_request");
    s.assert_nothing_forwarded();
}

// ---------------------------------------------------------------------------------------
// JSON through the whole gateway
// ---------------------------------------------------------------------------------------

#[test]
fn json_tricks_through_the_gateway() {
    let s = start();
    let json = [("content-type", "application/json")];
    let refused: Vec<Vec<u8>> = vec![
        br#"{"order_id":1,"order_id":2}"#.to_vec(),
        br#"{"shipments":[{"customer_id":"c","customer_id":"d"}]}"#.to_vec(),
        br#"{"shipments":[{"customer_id":"c","customer\u005fid":"d"}]}"#.to_vec(),
        br#"{"debug":{"a":{"b":1,"b":2}}}"#.to_vec(),
        br#"{"shipments":[{"address":{"zip":1,"\u007aip":2}}]}"#.to_vec(),
        br#"{"x":"\ud800"}"#.to_vec(),
        b"{\"x\":\"\xc0\xaf\"}".to_vec(),
        b"\xef\xbb\xbf{\"order_id\":1}".to_vec(),
        b"{\"order_id\":1}\x00".to_vec(),
        br#"{"order_id":1} {"order_id":2}"#.to_vec(),
        br#"[{"order_id":1}]"#.to_vec(),
        br#""SECRET""#.to_vec(),
        br#"{"order_id":{"email":"SECRET"}}"#.to_vec(),
        br#"{"shipments":[{"card_number":true}]}"#.to_vec(),
        br#"{"shipments":[{"card_number":["4111111111111111"]}]}"#.to_vec(),
        br#"{"shipments":["SECRET"]}"#.to_vec(),
        br#"{"shipments":[null]}"#.to_vec(),
        br#"{"shipments":{"0":{"name":"SECRET"}}}"#.to_vec(),
        format!("{{\"x\":{}1{}}}", "[".repeat(16), "]".repeat(16)).into_bytes(),
        format!(
            "{{\"shipments\":[{{\"address\":{}1{}}}]}}",
            "[".repeat(14),
            "]".repeat(14)
        )
        .into_bytes(),
        b"{\"order_id\":1,\"x\":\"\xed\xa0\x80\"}".to_vec(),
    ];
    for body in &refused {
        let r = s
            .gateway
            .send("POST", "/trip-ship/v1/shipments", &json, Some(body));
        assert!(
            r.status == 400 && r.json()["error"] == "bad_request",
            "{}: {} {}",
            String::from_utf8_lossy(body),
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    s.assert_nothing_forwarded();
    // Right at the depth limit (16 in the test gateway.yaml) inside a removed subtree: passes.
    let at_limit = format!("{{\"x\":{}1{}}}", "[".repeat(15), "]".repeat(15));
    let r = s.gateway.send(
        "POST",
        "/acme-ship/v1/shipments",
        &json,
        Some(at_limit.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.only_body(), "{}");
}

// ---------------------------------------------------------------------------------------
// Opt-outs
// ---------------------------------------------------------------------------------------

#[test]
fn opted_out_records_never_reach_a_business_partner() {
    let s = start();
    s.put_optout("123", &["partner_sharing"]);
    s.put_optout("c-9", &["partner:biz"]);
    let json = [("content-type", "application/json")];
    for id in [
        "123",
        r#""123""#,
        r#""\u0031\u0032\u0033""#,
        r#""12\u0033""#,
        r#""c-9""#,
        r#""c\u002d9""#,
    ] {
        let body = format!(
            r#"{{"campaign":"x","contacts":[{{"customer_id":{id},"name":"SECRET"}},{{"customer_id":5,"name":"ok"}}]}}"#
        );
        let r = s
            .gateway
            .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
        assert_eq!(r.status, 200, "{id}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("ohsoft-records-dropped"), Some("1"), "{id}");
        // The subject key spelled with escapes.
        let body = format!(r#"{{"contacts":[{{"name":"SECRET","customer\u005fid":{id}}}]}}"#);
        let r = s
            .gateway
            .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
        assert_eq!(r.status, 200, "{id}: {}", String::from_utf8_lossy(&r.body));
    }
    for rec in s.mock.received() {
        assert!(
            !rec["body"].as_str().unwrap().contains(SECRET),
            "opted-out record reached the partner: {rec}"
        );
    }
    let forwarded = s.mock.received().len();

    // Not a valid subject: 422; subject twice: 400. Nothing more reaches the partner.
    for (id, status, code) in [
        ("123.0", 422, "subject_missing"),
        ("1.23e2", 422, "subject_missing"),
        ("1e2", 422, "subject_missing"),
        ("true", 422, "subject_missing"),
        ("null", 422, "subject_missing"),
        (r#""""#, 422, "subject_missing"),
        ("0123", 400, "bad_request"),
        ("[123]", 422, "subject_missing"),
        (r#"{"id":123}"#, 422, "subject_missing"),
    ] {
        let body = format!(r#"{{"contacts":[{{"customer_id":{id},"name":"SECRET"}}]}}"#);
        let r = s
            .gateway
            .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
        assert_refused(&r, status, code);
    }
    for body in [
        r#"{"contacts":[{"name":"SECRET"}]}"#,
        r#"{"contacts":[{"Customer_id":1,"name":"SECRET"}]}"#,
    ] {
        let r = s
            .gateway
            .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
        assert_refused(&r, 422, "subject_missing");
    }
    for body in [
        r#"{"contacts":[{"customer_id":5,"customer_id":123,"name":"SECRET"}]}"#,
        r#"{"contacts":[{"customer_id":5,"name":"SECRET","customer\u005fid":"123"}]}"#,
    ] {
        let r = s
            .gateway
            .send("POST", "/biz/v1/audiences", &json, Some(body.as_bytes()));
        assert_refused(&r, 400, "bad_request");
    }
    // A single-record body about an opted-out customer: 451.
    for body in [
        r#"{"customer_id":123,"name":"SECRET"}"#,
        r#"{"name":"SECRET","customer_id":"\u0031\u0032\u0033"}"#,
    ] {
        let r = s
            .gateway
            .send("POST", "/biz/v1/profile", &json, Some(body.as_bytes()));
        assert_refused(&r, 451, "subject_opted_out");
    }
    assert_eq!(
        s.mock.received().len(),
        forwarded,
        "refused requests reached the partner"
    );
}

/// pingora undoes `chunked` only: `gzip, chunked` reached the filter as if unencoded, and the
/// request was forwarded instead of being refused like an unreadable content-encoding.
#[test]
fn transfer_codings_other_than_chunked_are_refused() {
    let s = start();
    for codings in [
        vec!["transfer-encoding: gzip, chunked"],
        vec!["transfer-encoding: deflate,chunked"],
        vec!["transfer-encoding: gzip", "transfer-encoding: chunked"],
        vec!["transfer-encoding: identity, chunked"],
    ] {
        let mut headers = vec!["content-type: application/json"];
        headers.extend(codings.iter().copied());
        let raw = raw_request(
            "POST /trip-ship/v1/shipments HTTP/1.1",
            &headers,
            &chunked(SHIPMENT.as_bytes(), 10),
        );
        assert_refused(&s.gateway.raw(&raw), 415, "unsupported_media_type");
    }
    s.assert_nothing_forwarded();
    // Chunked alone (any case) is plain framing.
    let raw = raw_request(
        "POST /acme-ship/v1/shipments HTTP/1.1",
        &[
            "content-type: application/json",
            "transfer-encoding: Chunked",
        ],
        &chunked(SHIPMENT.as_bytes(), 10),
    );
    let r = s.gateway.raw(&raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.mock.only_body(), SHIPMENT_FILTERED);
}

/// Header values that are not visible ASCII must not vanish from the decision: an `Upgrade`,
/// `Content-Encoding` or second `Content-Type` the gateway cannot read as text still counts.
#[test]
fn non_ascii_header_values_still_count_for_refusals() {
    let s = start();
    let body = SHIPMENT.as_bytes();
    let length = format!("content-length: {}", body.len());
    let raw = |extra: &[&[u8]]| {
        let mut raw = b"POST /trip-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\n".to_vec();
        for line in extra {
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(length.as_bytes());
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(body);
        raw
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "upgrade, invalid UTF-8",
            raw(&[b"upgrade: h2c\xff"]),
            400,
            "bad_request",
        ),
        (
            "upgrade, UTF-8",
            raw(&["upgrade: w\u{e9}bsocket".as_bytes()]),
            400,
            "bad_request",
        ),
        (
            "content-encoding, invalid UTF-8",
            raw(&[b"content-encoding: gzip\xff"]),
            400,
            "bad_request",
        ),
        (
            "content-encoding, UTF-8",
            raw(&["content-encoding: gzip\u{e9}".as_bytes()]),
            415,
            "unsupported_media_type",
        ),
        (
            "second content-type, UTF-8",
            raw(&["content-type: text/plain; x=\u{e9}".as_bytes()]),
            415,
            "unsupported_media_type",
        ),
    ];
    let mut failures = Vec::new();
    for (what, raw, status, code) in cases {
        let r = s.gateway.raw(&raw);
        if r.status != status || r.json()["error"] != code {
            failures.push(format!(
                "{what}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    s.assert_nothing_forwarded();
}

// ---------------------------------------------------------------------------------------
// Second review: opt-outs end to end, the store failing mid-run, reloads, data-use tokens
// ---------------------------------------------------------------------------------------

fn admin_call(gw: &Gateway, method: &str, target: &str, body: Option<&str>) -> Response {
    http1::send(
        &gw.admin.to_string(),
        method,
        target,
        &[
            ("authorization", "Bearer admin-secret"),
            ("content-type", "application/json"),
        ],
        body.map(str::as_bytes),
    )
    .unwrap()
}

/// Sends one contact with subject `id` (JSON as written) next to a control contact; returns
/// whether the contact reached the partner (false when it was dropped). Anything but a 200
/// fails the test.
fn contact_forwarded(s: &Setup, id: &str) -> bool {
    let body = format!(
        r#"{{"campaign":"c","contacts":[{{"customer_id":{id},"name":"SECRET"}},{{"customer_id":"control","name":"ok"}}]}}"#
    );
    let before = s.mock.received().len();
    let r = s.gateway.post_json("/biz/v1/audiences", &body);
    assert_eq!(r.status, 200, "{id}: {}", String::from_utf8_lossy(&r.body));
    let received = s.mock.received();
    assert_eq!(received.len(), before + 1, "{id}");
    let got = received[before]["body"].as_str().unwrap().to_string();
    assert!(got.contains("control"), "{id}: {got}");
    let forwarded = got.contains("SECRET");
    assert_eq!(
        r.header("ohsoft-records-dropped").is_some(),
        !forwarded,
        "{id}: {got}"
    );
    forwarded
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

/// An admin change is in force for the very next request, however the id is spelled in the
/// admin URL (percent-escapes are decoded, `+` is not a space) or in the body (escapes,
/// integer or string); a partial DELETE that leaves another honoured scope keeps dropping;
/// malformed DELETE bodies never remove everything; `-0` never passes as customer 0.
#[test]
fn admin_opt_outs_hold_from_the_next_request_in_every_spelling() {
    let s = start();
    // Each PUT is followed at once by a request on a new connection: never a window.
    for i in 0..15 {
        let id = format!("race-{i}");
        assert!(contact_forwarded(&s, &format!("\"{id}\"")), "{id} before");
        s.put_optout(&id, &["partner_sharing"]);
        assert!(
            !contact_forwarded(&s, &format!("\"{id}\"")),
            "{id} after PUT"
        );
    }
    // Admin path spellings → body spellings of the same customer.
    for (admin_id, body_ids) in [
        ("c%2D1", vec![r#""c-1""#, r#""c\u002d1""#]),
        ("%E2%82%AC9", vec!["\"\u{20ac}9\"", r#""\u20ac9""#]),
        ("a%2Fb", vec![r#""a/b""#, r#""a\/b""#]),
        ("a+b", vec![r#""a+b""#]),
        ("%37%37", vec!["77", r#""77""#]),
        ("0", vec!["0", r#""0""#]),
    ] {
        for id in &body_ids {
            assert!(contact_forwarded(&s, id), "{admin_id} {id} before");
        }
        let r = admin_call(
            &s.gateway,
            "PUT",
            &format!("/optouts/{admin_id}"),
            Some(r#"{"scopes":["partner:biz"]}"#),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        for id in &body_ids {
            assert!(!contact_forwarded(&s, id), "{admin_id} {id} after");
        }
    }
    // `+` is not a space; ids differing only in case are judged as the same customer (a
    // partner may compare them case-insensitively).
    assert!(contact_forwarded(&s, r#""a b""#));
    assert!(!contact_forwarded(&s, r#""C-1""#));
    // -0 is customer 0 to the partner: refused, never forwarded.
    let before = s.mock.received().len();
    let r = s.gateway.post_json(
        "/biz/v1/audiences",
        r#"{"contacts":[{"customer_id":-0,"name":"SECRET"}]}"#,
    );
    assert_refused(&r, 422, "subject_missing");
    assert_eq!(s.mock.received().len(), before);

    // Two honoured scopes; removing one keeps the record dropped.
    s.put_optout("two", &["partner_sharing", "partner:biz"]);
    assert!(!contact_forwarded(&s, r#""two""#));
    let r = admin_call(
        &s.gateway,
        "DELETE",
        "/optouts/two",
        Some(r#"{"scopes":["partner_sharing"]}"#),
    );
    assert_eq!(r.status, 200);
    assert!(!contact_forwarded(&s, r#""two""#));
    // Bodies that are not a scope list are refused; they never mean "remove everything".
    for body in [
        "{}",
        r#"{"scopes":[]}"#,
        r#"{"scopes":null}"#,
        "[]",
        r#"{"scopes":["partner:biz"],"x":1}"#,
        "null",
    ] {
        let r = admin_call(&s.gateway, "DELETE", "/optouts/two", Some(body));
        assert_eq!(
            r.status,
            400,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!contact_forwarded(&s, r#""two""#), "{body}");
    }
    // Scopes are partner-specific: these do not concern `biz`.
    for scope in ["partner:biz2", "partner:acme-ship"] {
        let id = format!("other-{}", scope.replace(':', "-"));
        s.put_optout(&id, &[scope]);
        assert!(contact_forwarded(&s, &format!("\"{id}\"")), "{scope}");
    }
    // Scopes are case-sensitive, and one with capitals would be honoured by nobody: refused
    // instead of acknowledged.
    for scope in ["Partner_Sharing", "partner:BIZ"] {
        let body = serde_json::json!({ "scopes": [scope] }).to_string();
        let r = http1::send(
            &s.gateway.admin.to_string(),
            "PUT",
            "/optouts/other-capitals",
            &[("authorization", "Bearer admin-secret")],
            Some(body.as_bytes()),
        )
        .unwrap();
        assert_refused(&r, 400, "bad_request");
    }
    assert!(contact_forwarded(&s, "\"other-capitals\""));
}

/// The journal cannot grow (the process's file size limit stands in for a full disk): every
/// PUT that cannot be made durable answers 503 `not_ready` (retry), never 200, and is not applied; acknowledged
/// opt-outs keep being enforced; after a restart exactly the acknowledged ones are there.
#[test]
fn a_journal_that_cannot_be_written_never_acknowledges() {
    let mock = Mock::start();
    let addr = free_addr();
    let admin = free_addr();
    let policy = PolicyDir::new(
        &gateway_yaml(addr, admin, EXTRA_YAML),
        &[("biz", &biz_partner(&mock.url()))],
    );
    // SIGXFSZ ignored (inherited through exec), files limited to one 512-byte block: a write
    // past it fails with EFBIG, as on a full disk.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            r#"trap "" XFSZ; ulimit -f 1 || exit 99; exec "$0" serve --policy "$1""#,
            BIN,
        ])
        .arg(policy.policy())
        .current_dir(policy.root())
        .envs(ENV.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the limited gateway listens", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the limited gateway exited: {status}");
        }
        TcpStream::connect(admin).is_ok() && TcpStream::connect(addr).is_ok()
    });
    let limited = Proc { child };
    let admin_s = admin.to_string();
    let put = |id: &str| {
        http1::send(
            &admin_s,
            "PUT",
            &format!("/optouts/{id}"),
            &[("authorization", "Bearer admin-secret")],
            Some(br#"{"scopes":["partner_sharing"]}"#),
        )
        .unwrap()
    };
    let forwarded = |id: &str| {
        let before = mock.received().len();
        let r = http1::send(
            &addr.to_string(),
            "POST",
            "/biz/v1/audiences",
            &[("content-type", "application/json")],
            Some(
                format!(r#"{{"contacts":[{{"customer_id":"{id}","name":"SECRET"}}]}}"#).as_bytes(),
            ),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{id}: {}", String::from_utf8_lossy(&r.body));
        let received = mock.received();
        assert_eq!(received.len(), before + 1);
        received[before]["body"]
            .as_str()
            .unwrap()
            .contains("SECRET")
    };
    let mut acknowledged = Vec::new();
    let mut failed = None;
    for i in 0..100 {
        let id = format!("c-{i:02}");
        let r = put(&id);
        match r.status {
            200 => acknowledged.push(id),
            503 => {
                assert_eq!(r.json()["error"], "not_ready");
                failed = Some(id);
                break;
            }
            other => panic!("PUT {id}: {other} {}", String::from_utf8_lossy(&r.body)),
        }
    }
    let failed = failed.expect("the journal never filled up");
    assert!(!acknowledged.is_empty());
    // Not acknowledged, not applied (the admin knows to retry); later PUTs fail the same way.
    let r = http1::send(
        &admin_s,
        "GET",
        &format!("/optouts/{failed}"),
        &[("authorization", "Bearer admin-secret")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    for i in 0..3 {
        let r = put(&format!("later-{i}"));
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    }
    // Acknowledged opt-outs are still enforced while the store cannot write.
    for id in &acknowledged {
        assert!(!forwarded(id), "{id}");
    }
    drop(limited);

    // Restart without the limit on the same store.
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(policy.policy())
        .current_dir(policy.root())
        .envs(ENV.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the gateway listens again", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the gateway exited: {status}");
        }
        TcpStream::connect(admin).is_ok() && TcpStream::connect(addr).is_ok()
    });
    let _restarted = Proc { child };
    wait_until("ready", || {
        http1::send(&admin_s, "GET", "/readyz", &[], None).is_ok_and(|r| r.status == 200)
    });
    for id in &acknowledged {
        assert!(!forwarded(id), "{id} after restart");
    }
    assert!(
        forwarded(&failed),
        "the unacknowledged {failed} appeared after restart"
    );
    // And the store writes again.
    assert_eq!(put(&failed).status, 200);
    assert!(!forwarded(&failed));
}

/// Reloads cannot switch opt-out enforcement off behind the gateway's back: removing the
/// store, or a route's records/subject, is rejected and the old policy keeps dropping. (An
/// explicit `honor_optouts: []` is the documented override; `check` warns about it.)
#[test]
fn reloads_that_would_stop_honouring_opt_outs_are_rejected() {
    let s = start();
    s.put_optout("gone", &["partner_sharing"]);
    assert!(!contact_forwarded(&s, r#""gone""#));
    let policy = s.gateway.policy.policy();
    let gateway_file = policy.join("gateway.yaml");
    let biz_file = policy.join("partners").join("biz.yaml");
    let original_gateway = std::fs::read_to_string(&gateway_file).unwrap();
    let original_biz = std::fs::read_to_string(&biz_file).unwrap();
    let errors = |gw: &Gateway| {
        metric(
            &gw.metrics(),
            r#"partner_gateway_policy_reloads_total{result="error"}"#,
        )
    };
    let mut expected_errors = errors(&s.gateway);

    let edits: Vec<(&std::path::Path, String)> = vec![
        // No store any more.
        (
            &gateway_file,
            original_gateway.replace("optouts: { path: data/optouts }\n", ""),
        ),
        // The store moved.
        (
            &gateway_file,
            original_gateway.replace("data/optouts", "data/elsewhere"),
        ),
        // The route no longer names its records and subject.
        (
            &biz_file,
            original_biz.replacen(
                "    records: contacts[*]\n    subject: customer_id\n",
                "",
                1,
            ),
        ),
        // Only the subject is gone.
        (
            &biz_file,
            original_biz.replacen("    subject: customer_id\n", "", 1),
        ),
    ];
    for (file, text) in edits {
        assert_ne!(
            text,
            std::fs::read_to_string(file).unwrap(),
            "the edit changed nothing"
        );
        std::fs::write(file, &text).unwrap();
        expected_errors += 1.0;
        wait_until("the reload is rejected", || {
            errors(&s.gateway) >= expected_errors
        });
        assert!(!contact_forwarded(&s, r#""gone""#), "after {text}");
        std::fs::write(&gateway_file, &original_gateway).unwrap();
        std::fs::write(&biz_file, &original_biz).unwrap();
        // Restoring the files is a good reload (or no change at all once it settles).
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!contact_forwarded(&s, r#""gone""#), "after restoring");
    }
}

/// The data-use token covers exactly the bytes the partner received: after fields were removed
/// and records dropped, for an empty GET body, and twice for one body (a fresh `jti` each
/// time). A legal basis full of quotes and commas cannot add members to the tag or claims.
#[test]
fn data_use_tokens_cover_the_forwarded_bytes_and_resist_injection() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mock = Mock::start();
    let signing = format!("{EXTRA_YAML}{}", signing_yaml());
    let gw = Gateway::start(
        &signing,
        &[
            ("acme-ship", &ship_partner(&mock.url())),
            ("biz", &biz_partner(&mock.url())),
            ("gov", &gov_partner(&mock.url())),
        ],
        ENV,
    );
    let put = admin_call(
        &gw,
        "PUT",
        "/optouts/out",
        Some(r#"{"scopes":["partner_sharing"]}"#),
    );
    assert_eq!(put.status, 200);
    let json = ("content-type", "application/json");
    let biz_body = br#"{"campaign":"c","extra":"SECRET","contacts":[{"customer_id":"out","name":"SECRET"},{"customer_id":"in","name":"ok","email":"SECRET"}]}"#;
    for _ in 0..2 {
        let r = gw.send("POST", "/biz/v1/audiences", &[json], Some(biz_body));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = gw.send("GET", "/acme-ship/v1/shipments/A-1", &[], None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let basis = r#"case-1", use="partner-sharing", legal-basis="x"#;
    let r = gw.send(
        "POST",
        "/gov/v1/filings",
        &[json, ("ohsoft-legal-basis", basis)],
        Some(br#"{"year":2024,"name":"a"}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let received = mock.received();
    assert_eq!(received.len(), 4, "{received:#?}");
    let jwks = format!("http://{}/.well-known/jwks.json", gw.admin);
    let dir = tempfile::tempdir().unwrap();
    let mut jtis = Vec::new();
    for (i, rec) in received.iter().enumerate() {
        let body = rec["body"].as_str().unwrap();
        let headers = headers_of(rec);
        let token = headers
            .iter()
            .filter(|(n, _)| n == "ohsoft-data-use-token")
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>();
        assert_eq!(token.len(), 1, "request {i}: {headers:?}");
        let body_file = dir.path().join(format!("body-{i}"));
        std::fs::write(&body_file, body).unwrap();
        let claims = partner_gateway::cli::token::verify(&jwks, Some(&body_file), &token[0])
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(body.as_bytes()));
        assert_eq!(claims["body_sha256"], digest.as_str(), "request {i}");
        // A token never verifies against the body the caller sent (when they differ).
        if i < 2 {
            assert!(!body.contains("SECRET"), "{body}");
            std::fs::write(&body_file, biz_body).unwrap();
            assert!(
                partner_gateway::cli::token::verify(&jwks, Some(&body_file), &token[0]).is_err(),
                "request {i}: the token also covers the unfiltered body"
            );
            assert_eq!(claims["aud"], "biz");
            assert_eq!(claims["use"], "partner-sharing");
        }
        if i == 2 {
            assert_eq!(body, "", "GET forwarded a body");
            assert_eq!(claims["aud"], "acme-ship");
        }
        if i == 3 {
            assert_eq!(claims["legal_basis"], basis);
            assert_eq!(claims["use"], "legal-obligation");
            assert_eq!(claims["aud"], "gov");
            let version = claims["policy_version"].as_str().unwrap();
            let tags: Vec<&String> = headers
                .iter()
                .filter(|(n, _)| n == "ohsoft-data-use")
                .map(|(_, v)| v)
                .collect();
            assert_eq!(
                tags,
                vec![&format!(
                    r#"use="legal-obligation", purpose="tax-reporting", policy="{version}", legal-basis="case-1\", use=\"partner-sharing\", legal-basis=\"x""#
                )],
            );
        }
        jtis.push(claims["jti"].as_str().unwrap().to_string());
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 4, "a jti was reused");
}

/// A business partner's route without a body (`GET /v1/contacts/{id}`, or a query parameter)
/// can carry a customer id in the URL: every path parameter and forwarded query value is
/// checked against the opt-outs, so an opted-out customer's id never reaches the partner.
#[test]
fn opted_out_ids_in_the_url_of_a_business_partner_route() {
    let mock = Mock::start();
    let partner = format!(
        r#"kind: business_partner
purpose: marketing
upstream: {}
routes:
  - path: /v1/contacts/{{id}}
    methods: [GET]
    query: [customer]
allowed_callers: [marketing-service]
"#,
        mock.url()
    );
    let gw = Gateway::start(EXTRA_YAML, &[("biz", &partner)], ENV);
    let r = admin_call(
        &gw,
        "PUT",
        "/optouts/c-404",
        Some(r#"{"scopes":["partner_sharing"]}"#),
    );
    assert_eq!(r.status, 200);
    for target in [
        "/biz/v1/contacts/c-404",
        "/biz/v1/contacts/x?customer=c-404",
    ] {
        let r = gw.send("GET", target, &[], None);
        assert_refused(&r, 451, "subject_opted_out");
    }
    for rec in mock.received() {
        assert!(!rec.to_string().contains("c-404"), "{rec}");
    }
    // Everyone else's URLs pass.
    assert_eq!(
        gw.send("GET", "/biz/v1/contacts/c-405?customer=c-406", &[], None)
            .status,
        200
    );
    assert_eq!(mock.received().len(), 1);
}

#[test]
fn broken_chunk_framing_is_not_quoted_back() {
    let s = start();
    // One data byte, then `Q7` where the chunk's CRLF belongs: pingora's own description of
    // this quotes those bytes, which are the caller's body.
    let raw = raw_request(
        "POST /trip-ship/v1/shipments HTTP/1.1",
        &[
            "content-type: application/json",
            "transfer-encoding: chunked",
        ],
        b"1\r\n{Q7\r\n0\r\n\r\n",
    );
    let r = s.gateway.raw(&raw);
    assert_refused(&r, 400, "bad_request");
    let text = String::from_utf8_lossy(&r.body);
    assert!(!text.contains("Q7"), "the error quotes the body: {text}");
    s.assert_nothing_forwarded();
}
