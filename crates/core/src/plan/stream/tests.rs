//! Line framing and per-line decisions of streaming routes, on a policy loaded from YAML.
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::optout::{OptOutSet, Scope};
use crate::plan::{plan, resolve};
use crate::policy::{load, Policy, PolicySource, SourceFile};

const GATEWAY: &str = "\
optouts: { path: data/optouts }
callers: { allow_unauthenticated: true }
signing: { disabled: true }
limits: { max_body_bytes: 64, max_depth: 4 }
";

/// A business partner taking a stream of customer records.
const ADS: &str = "\
kind: business_partner
purpose: advertising
upstream: http://127.0.0.1:9002
allowed_callers: [marketing]
routes:
  - path: /v1/customers
    methods: [POST]
    stream: ndjson
    subject: customer_id
    allow: [customer_id, city]
";

/// A contractor streaming without subjects.
const SHOP: &str = "\
kind: contractor
purpose: shipping
upstream: http://127.0.0.1:9001
allowed_callers: [orders]
routes:
  - path: /v1/orders
    methods: [POST, PUT]
    stream: ndjson
    allow: [order_id, 'items[*].sku']
";

fn policy() -> Policy {
    let file = |name: &str, text: &str| SourceFile {
        path: format!("policy/{name}"),
        text: text.to_string(),
    };
    let source = PolicySource {
        dir: PathBuf::from("policy"),
        gateway: file("gateway.yaml", GATEWAY),
        partners: vec![
            file("partners/ads.yaml", ADS),
            file("partners/shop.yaml", SHOP),
        ],
    };
    let env: BTreeMap<String, String> = BTreeMap::new();
    match load(&source, Some(&env)) {
        Ok(loaded) => loaded.policy,
        Err(errors) => panic!("test policy does not load: {errors:?}"),
    }
}

fn opted_out() -> OptOutSet {
    let mut set = OptOutSet::new();
    let scope = Scope::parse(Scope::PARTNER_SHARING).unwrap();
    set.insert("c-out", &[scope]).unwrap();
    set
}

/// Runs `chunks` through a splitter and the per-line decision: the forwarded bytes, the
/// report, and the refusal that stopped it (with the bytes forwarded before it).
fn run(
    policy: &Policy,
    path: &str,
    chunks: &[&[u8]],
    optouts: OptOuts<'_>,
) -> (Vec<u8>, Report, Option<Refusal>) {
    let target = resolve(&policy.partners, "POST", path).unwrap();
    let limits = &policy.gateway.limits;
    let mut splitter = LineSplitter::new(limits.max_body_bytes);
    let mut stream = NdjsonStream::new(&target, limits, true);
    let mut out = Vec::new();
    let mut refusal = None;
    {
        let mut each = |n: u64, line: &[u8]| {
            stream
                .decide(optouts, n, line, &mut out, &mut |_| {})
                .map(|_| ())
        };
        for chunk in chunks {
            if let Err(r) = splitter.feed(chunk, &mut each) {
                refusal = Some(r);
                break;
            }
        }
        if refusal.is_none() {
            refusal = splitter.finish(&mut each).err();
        }
    }
    (out, stream.report, refusal)
}

#[test]
fn lines_are_filtered_one_by_one_and_opted_out_ones_dropped() {
    let policy = policy();
    let set = opted_out();
    let body: &[u8] = b"{\"customer_id\":\"c-1\",\"city\":\"x\",\"email\":\"a@b\"}\n\
{\"customer_id\":\"c-out\",\"city\":\"y\"}\n\
{\"customer_id\":7,\"city\":\"z\"}\n";
    // Any cut of the body into chunks gives the same result.
    for cut in [1, 2, 5, 17, body.len()] {
        let chunks: Vec<&[u8]> = body.chunks(cut).collect();
        let (out, report, refusal) =
            run(&policy, "/ads/v1/customers", &chunks, OptOuts::Loaded(&set));
        assert_eq!(refusal, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"customer_id\":\"c-1\",\"city\":\"x\"}\n{\"customer_id\":7,\"city\":\"z\"}\n",
            "chunks of {cut}"
        );
        assert_eq!(report.records_forwarded, 2);
        assert_eq!(report.records_dropped, 1);
        assert_eq!(report.fields_removed, 1);
        assert_eq!(report.matched, vec![2, 2]);
    }
}

/// Unknown fields count as drift in every line, also in a line dropped for its opt-out (as in a
/// record dropped from a whole body), so a new field that only opted-out customers' records
/// carry still shows.
#[test]
fn unknown_fields_of_opted_out_lines_count_as_drift() {
    let policy = policy();
    let set = opted_out();
    let body: &[u8] = b"{\"customer_id\":\"c-out\",\"barz\":1,\"fax\":2}\n\
{\"customer_id\":\"c-1\",\"fax\":3}\n";
    let (out, report, refusal) = run(&policy, "/ads/v1/customers", &[body], OptOuts::Loaded(&set));
    assert_eq!(refusal, None);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"customer_id\":\"c-1\"}\n"
    );
    assert_eq!(report.records_dropped, 1);
    assert_eq!(report.unknown_fields, 3);
    let mut paths: Vec<(&str, u64)> = report
        .unknown
        .iter()
        .map(|f| (f.path.as_str(), f.count))
        .collect();
    paths.sort();
    assert_eq!(paths, [("barz", 1), ("fax", 2)]);
}

#[test]
fn blank_lines_crlf_and_a_last_line_without_newline() {
    let policy = policy();
    let body: &[u8] = b"\r\n{\"order_id\":1}\r\n  \n\t\r\n{\"order_id\":2,\"x\":3}";
    // Any cut, a CRLF split between two chunks included.
    for cut in [1, 2, 3, 16, body.len()] {
        let chunks: Vec<&[u8]> = body.chunks(cut).collect();
        let (out, report, refusal) = run(&policy, "/shop/v1/orders", &chunks, OptOuts::NotLoaded);
        assert_eq!(refusal, None, "chunks of {cut}");
        assert_eq!(
            out, b"{\"order_id\":1}\n{\"order_id\":2}\n",
            "chunks of {cut}"
        );
        assert_eq!(report.records_forwarded, 2);
    }
}

#[test]
fn a_bad_line_stops_the_stream_and_names_the_line() {
    let policy = policy();
    let set = opted_out();
    let cases: &[(&[u8], &str, &str)] = &[
        (b"{\"order_id\":1}\n{\"order_id\":", "bad_request", "line 2"),
        (
            b"{\"order_id\":1}\n{\"order_id\":1,\"order_id\":2}\n",
            "bad_request",
            "line 2",
        ),
        (b"{\"order_id\":{\"a\":1}}\n", "bad_request", "line 1"),
        (b"[1]\n", "bad_request", "line 1"),
        (b"5\n", "bad_request", "line 1"),
        (b"\xef\xbb\xbf{\"order_id\":1}\n", "bad_request", "line 1"),
        (
            b"{\"order_id\":1}\r{\"order_id\":2}\n",
            "bad_request",
            "line 1",
        ),
        // A lone CR between tokens is JSON whitespace, but readers that take it for a line
        // end would see two broken lines: refused like the CR between two records above.
        (b"{\"order_id\":1,\r\"x\":2}\n", "bad_request", "line 1"),
        (b"{\"order_id\":1}\r \r\n", "bad_request", "line 1"),
        (b"{\"order_id\":1}\0\n", "bad_request", "line 1"),
        (b"{\"order_id\":\"a\0b\"}\n", "bad_request", "line 1"),
        (
            b"{\"order_id\":1} {\"order_id\":2}\n",
            "bad_request",
            "line 1",
        ),
        (
            b"{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}\n",
            "bad_request",
            "line 1",
        ),
        (b"{\"order_id\":\"\xff\"}\n", "bad_request", "line 1"),
    ];
    for (body, code, line) in cases {
        let (_, _, refusal) = run(&policy, "/shop/v1/orders", &[body], OptOuts::NotLoaded);
        let r = refusal.unwrap_or_else(|| panic!("{:?} passed", String::from_utf8_lossy(body)));
        assert_eq!(r.code(), *code, "{:?}: {r}", String::from_utf8_lossy(body));
        assert!(r.message.starts_with(line), "{r}");
    }
    // A record without its subject on a route honouring opt-outs: 422, even mid-stream.
    let body: &[u8] = b"{\"customer_id\":\"c-1\"}\n{\"city\":\"x\"}\n{\"customer_id\":\"c-2\"}\n";
    let (out, _, refusal) = run(&policy, "/ads/v1/customers", &[body], OptOuts::Loaded(&set));
    assert_eq!(refusal.unwrap().code(), "subject_missing");
    assert_eq!(
        out, b"{\"customer_id\":\"c-1\"}\n",
        "nothing after the bad line"
    );
    // A subject given twice is a duplicate key, whichever copy is opted out.
    let body: &[u8] = b"{\"customer_id\":\"c-1\",\"customer_id\":\"c-out\"}\n";
    let (out, _, refusal) = run(&policy, "/ads/v1/customers", &[body], OptOuts::Loaded(&set));
    assert_eq!(refusal.unwrap().code(), "bad_request");
    assert!(out.is_empty());
}

#[test]
fn an_overlong_line_is_measured_without_its_line_end() {
    // 64 bytes per line; this line has 65 and a CRLF, and comes in one chunk with the next
    // line, so the whole line is judged at once.
    let policy = policy();
    let line = format!("{{\"order_id\":\"{}\"}}\r\n{{}}\n", "a".repeat(50));
    let (_, _, refusal) = run(
        &policy,
        "/shop/v1/orders",
        &[line.as_bytes()],
        OptOuts::NotLoaded,
    );
    let r = refusal.unwrap();
    assert_eq!(r.code(), "body_too_large");
    assert!(r.message.starts_with("line 1: 65 bytes"), "{r}");
}

#[test]
fn max_body_bytes_limits_one_line() {
    let policy = policy(); // 64 bytes per line
    let short = format!("{{\"order_id\":\"{}\"}}\n", "a".repeat(40));
    let long = format!("{{\"order_id\":\"{}\"}}\n", "a".repeat(60));
    let many = short.repeat(100);
    let (out, _, refusal) = run(
        &policy,
        "/shop/v1/orders",
        &[many.as_bytes()],
        OptOuts::NotLoaded,
    );
    assert_eq!(refusal, None, "the body may be any size");
    assert_eq!(out.len(), many.len());
    // Refused as soon as 65 bytes of a line have arrived, before its end.
    let body = format!("{short}{long}");
    let (out, _, refusal) = run(
        &policy,
        "/shop/v1/orders",
        &[&body.as_bytes()[..short.len() + 65]],
        OptOuts::NotLoaded,
    );
    let r = refusal.unwrap();
    assert_eq!(r.code(), "body_too_large");
    assert!(r.message.starts_with("line 2"), "{r}");
    assert_eq!(out, short.as_bytes());
    // The same when the long line arrives in pieces after a whole line.
    for cut in [1, 7, 40] {
        let chunks: Vec<&[u8]> = body.as_bytes()[..short.len() + 65].chunks(cut).collect();
        let (out, _, refusal) = run(&policy, "/shop/v1/orders", &chunks, OptOuts::NotLoaded);
        let r = refusal.unwrap();
        assert_eq!(r.code(), "body_too_large", "chunks of {cut}");
        assert!(r.message.starts_with("line 2"), "{r}");
        assert_eq!(out, short.as_bytes());
    }
    // Exactly 64 bytes before `\n` (and a `\r`) pass, however they arrive.
    let exact = format!("{{\"order_id\":\"{}\"}}", "a".repeat(49));
    assert_eq!(exact.len(), 64);
    let body = format!("{short}{exact}\r\n");
    for cut in [1, 64, 65, short.len() + 64, short.len() + 65, body.len()] {
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(cut).collect();
        let (out, _, refusal) = run(&policy, "/shop/v1/orders", &chunks, OptOuts::NotLoaded);
        assert_eq!(refusal, None, "chunks of {cut}");
        assert_eq!(
            out,
            format!("{short}{exact}\n").as_bytes(),
            "chunks of {cut}"
        );
    }
}

#[test]
fn the_head_is_decided_before_any_line() {
    let policy = policy();
    let t = resolve(&policy.partners, "POST", "/ads/v1/customers").unwrap();
    let set = opted_out();
    let h = |ct| [("content-type", ct)];
    let head = plan_stream_head(&t, None, &h("application/x-ndjson"), OptOuts::Loaded(&set));
    let head = head.unwrap();
    assert_eq!(head.path_and_query, "/v1/customers");
    assert_eq!(
        head.headers,
        vec![(
            "content-type".to_string(),
            "application/x-ndjson".to_string()
        )]
    );
    for (ct, code) in [
        ("application/x-ndjson; charset=utf-8", "ok"),
        ("Application/X-NDJSON", "ok"),
        ("application/json", "unsupported_media_type"),
        (
            "application/x-ndjson; charset=latin1",
            "unsupported_media_type",
        ),
        ("text/plain", "unsupported_media_type"),
    ] {
        let got = plan_stream_head(&t, None, &h(ct), OptOuts::Loaded(&set));
        assert_eq!(got.map_or_else(|r| r.code(), |_| "ok"), code, "{ct}");
    }
    let got = plan_stream_head(&t, None, &[], OptOuts::Loaded(&set));
    assert_eq!(got.unwrap_err().code(), "unsupported_media_type");
    let got = plan_stream_head(&t, None, &h("application/x-ndjson"), OptOuts::NotLoaded);
    assert_eq!(got.unwrap_err().code(), "not_ready");
    let gzip = [
        ("content-type", "application/x-ndjson"),
        ("content-encoding", "gzip"),
    ];
    let got = plan_stream_head(&t, None, &gzip, OptOuts::Loaded(&set));
    assert_eq!(got.unwrap_err().code(), "unsupported_media_type");
}

#[test]
fn plan_decides_a_whole_stream_like_the_proxy() {
    let policy = policy();
    let t = resolve(&policy.partners, "POST", "/ads/v1/customers").unwrap();
    let set = opted_out();
    let headers = [("content-type", "application/x-ndjson")];
    // Bigger than max_body_bytes as a whole: the limit is per line.
    let body = "{\"customer_id\":\"c-1\",\"city\":\"x\"}\n{\"customer_id\":\"c-out\"}\n".repeat(3);
    let incoming = Incoming {
        query: None,
        headers: &headers,
        body: body.as_bytes(),
    };
    let out = plan(
        &t,
        &incoming,
        &policy.gateway.limits,
        OptOuts::Loaded(&set),
        false,
    )
    .unwrap();
    assert_eq!(
        out.body,
        "{\"customer_id\":\"c-1\",\"city\":\"x\"}\n"
            .repeat(3)
            .as_bytes()
    );
    assert_eq!(out.report.records_forwarded, 3);
    assert_eq!(out.report.records_dropped, 3);
    assert_eq!(out.report.subjects, vec!["c-1"; 3]);
}

#[test]
#[ignore = "timing probe: cargo test -p partner-gateway-core --release -- --ignored stream_speed --nocapture"]
fn stream_speed() {
    let policy = policy();
    let set = opted_out();
    let target = resolve(&policy.partners, "POST", "/ads/v1/customers").unwrap();
    let mut limits = policy.gateway.limits;
    limits.max_body_bytes = 1 << 16;
    let body: String = (0..100_000)
        .map(|i| {
            format!("{{\"customer_id\":\"c-{i}\",\"city\":\"Ulm\",\"phone\":\"0123456789\"}}\n")
        })
        .collect();
    for optouts in [OptOuts::NotLoaded, OptOuts::Loaded(&set)] {
        let t = std::time::Instant::now();
        let mut stream = NdjsonStream::new(&target, &limits, true);
        let mut splitter = LineSplitter::new(limits.max_body_bytes);
        let mut out = Vec::new();
        let mut each = |n: u64, line: &[u8]| {
            stream
                .decide(optouts, n, line, &mut out, &mut |_| {})
                .map(|_| ())
        };
        let r = body
            .as_bytes()
            .chunks(65536)
            .try_for_each(|c| splitter.feed(c, &mut each));
        let e = t.elapsed();
        eprintln!(
            "{:?}: {} bytes in {e:?} = {:.1} MB/s",
            r.err(),
            body.len(),
            body.len() as f64 / e.as_secs_f64() / 1e6
        );
    }
}
