//! Request `Content-Encoding` through the real gateway in front of the recording partner: a route
//! that lists `decode: [...]` takes gzip, deflate and br bodies, decodes them (bounded by
//! `max_decoded_bytes`), filters them and forwards them plain, with a data-use token over the
//! forwarded bytes; everything else (bombs, stacked or unlisted codings, corrupt streams) is
//! refused and never reaches the partner.
mod util;

use std::io::Write;

use util::*;

const ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "ship-secret")];

fn partner(upstream: &str) -> String {
    format!(
        r#"kind: contractor
purpose: shipping
upstream: {upstream}
routes:
  - path: /v1/shipments
    methods: [POST]
    allow:
      - order_id
      - shipments[*].name
    decode: [gzip, deflate, br]
  - path: /v1/gz
    methods: [POST]
    allow: [order_id]
    decode: [gzip]
  - path: /v1/plain
    methods: [POST]
    allow: [order_id]
allowed_callers: [orders-service]
"#
    )
}

fn start() -> (Mock, Gateway) {
    let mock = Mock::start();
    let gateway = Gateway::start(&signing_yaml(), &[("ship", &partner(&mock.url()))], ENV);
    (mock, gateway)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn br(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    e.write_all(data).unwrap();
    drop(e);
    out
}

/// A refused case: path, content codings, body, status, code.
type Refused<'a> = (&'a str, &'a [&'a str], Vec<u8>, u16, &'a str);

fn post(gateway: &Gateway, path: &str, codings: &[&str], body: &[u8]) -> Response {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(codings.iter().map(|c| ("content-encoding", *c)));
    gateway.send("POST", path, &headers, Some(body))
}

const SENT: &[u8] =
    br#"{"order_id":"o-1","note":"SECRET","shipments":[{"name":"Ann","card":"SECRET"}]}"#;
const FORWARDED: &str = r#"{"order_id":"o-1","shipments":[{"name":"Ann"}]}"#;

/// One gateway and partner for both halves (the second checks that nothing more arrived).
#[test]
fn request_content_encodings() {
    let (mock, gateway) = start();
    encoded_bodies_are_decoded_filtered_and_forwarded_plain(&mock, &gateway);
    bombs_and_codings_the_route_does_not_decode_never_reach_the_partner(&mock, &gateway);
}

fn encoded_bodies_are_decoded_filtered_and_forwarded_plain(mock: &Mock, gateway: &Gateway) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let cases = [
        ("gzip", gzip(SENT)),
        ("deflate", zlib(SENT)),
        ("br", br(SENT)),
        ("X-Gzip", gzip(SENT)),
    ];
    for (coding, body) in &cases {
        let r = post(gateway, "/ship/v1/shipments", &[coding], body);
        assert_eq!(
            r.status,
            200,
            "{coding}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Chunked framing around a gzip body.
    let encoded = gzip(SENT);
    let mut raw = b"POST /ship/v1/gz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for part in encoded.chunks(7) {
        raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(gateway.raw(&raw).status, 200);

    let received = mock.received();
    assert_eq!(received.len(), cases.len() + 1);
    let jwks = format!("http://{}/.well-known/jwks.json", gateway.admin);
    let dir = tempfile::tempdir().unwrap();
    for (i, rec) in received.iter().enumerate() {
        let body = rec["body"].as_str().unwrap();
        let expected = if i < cases.len() {
            FORWARDED
        } else {
            r#"{"order_id":"o-1"}"#
        };
        assert_eq!(body, expected, "request {i}");
        let headers = headers_of(rec);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(find("content-encoding"), None, "request {i}: {headers:?}");
        assert_eq!(find("content-length"), Some(body.len().to_string()));
        // The token covers the forwarded (decoded, filtered) bytes.
        let token = find("ohsoft-data-use-token").unwrap();
        let file = dir.path().join(format!("body-{i}"));
        std::fs::write(&file, body).unwrap();
        let claims = partner_gateway::cli::token::verify(&jwks, Some(&file), &token).unwrap();
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(body.as_bytes()));
        assert_eq!(claims["body_sha256"], digest.as_str());
    }
}

fn bombs_and_codings_the_route_does_not_decode_never_reach_the_partner(
    mock: &Mock,
    gateway: &Gateway,
) {
    let before = mock.received().len();
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let mut json_bomb = br#"{"order_id":""#.to_vec();
    json_bomb.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    json_bomb.extend_from_slice(br#""}"#);
    let bombs = [
        ("gzip", gzip(&zeros)),
        ("deflate", zlib(&zeros)),
        ("br", br(&zeros)),
        ("gzip", gzip(&json_bomb)),
    ];
    for (coding, bomb) in &bombs {
        assert!(bomb.len() < 20 * 1024, "{coding}: {} bytes", bomb.len());
        let r = post(gateway, "/ship/v1/shipments", &[coding], bomb);
        assert_refused(&r, 413, "body_too_large");
    }
    let twice = gzip(&gzip(SENT));
    let refused: [Refused; 8] = [
        (
            "/ship/v1/shipments",
            &["gzip, gzip"],
            twice.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "/ship/v1/shipments",
            &["gzip", "gzip"],
            twice,
            415,
            "unsupported_media_type",
        ),
        (
            "/ship/v1/shipments",
            &["compress"],
            gzip(SENT),
            415,
            "unsupported_media_type",
        ),
        (
            "/ship/v1/gz",
            &["br"],
            br(SENT),
            415,
            "unsupported_media_type",
        ),
        (
            "/ship/v1/plain",
            &["gzip"],
            gzip(SENT),
            415,
            "unsupported_media_type",
        ),
        // Said to be gzip, but plain JSON (it would pass the filter unread otherwise).
        (
            "/ship/v1/shipments",
            &["gzip"],
            SENT.to_vec(),
            400,
            "bad_request",
        ),
        (
            "/ship/v1/shipments",
            &["br"],
            gzip(SENT)[..20].to_vec(),
            400,
            "bad_request",
        ),
        // Decodes fine, but to something that is not JSON.
        (
            "/ship/v1/shipments",
            &["deflate"],
            zlib(b"order_id=o-1"),
            400,
            "bad_request",
        ),
    ];
    for (path, codings, body, status, code) in &refused {
        let r = post(gateway, path, codings, body);
        assert_refused(&r, *status, code);
    }
    let received = mock.received();
    assert_eq!(received.len(), before, "{received:#?}");
    let text = gateway.metrics();
    let refused_total = |reason: &str| {
        metric(
            &text,
            &format!(
                r#"partner_gateway_requests_refused_total{{partner="ship",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(refused_total("body_too_large"), 4.0);
    assert_eq!(refused_total("unsupported_media_type"), 5.0);
    assert_eq!(refused_total("bad_request"), 3.0);
}
