//! Each step of [`plan`] on its own (tables of input → outcome), then [`resolve`] and [`plan`]
//! as a whole, on a small policy loaded from YAML the way the gateway loads it.
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::body::check_json_content_type;
use super::headers::{connection_tokens, forward_headers};
use super::legal_basis::legal_basis;
use super::query::filter_query;
use super::url::check_url_for_opted_out_ids;
use super::*;
use crate::optout::{OptOutSet, Scope};
use crate::policy::{load, Policy, PolicySource, SourceFile};

/// Request headers of a test case.
type Headers<'a> = &'a [(&'a str, &'a str)];

const GATEWAY: &str = "\
optouts: { path: data/optouts }
callers: { allow_unauthenticated: true }
signing: { disabled: true }
";

/// A contractor: no opt-outs, one body route, one bodyless route with a query parameter.
const SHOP: &str = "\
kind: contractor
purpose: shipping
upstream: http://127.0.0.1:9001
allowed_callers: [orders]
routes:
  - path: /v1/orders
    methods: [POST]
    allow: [order_id, name]
    headers: [x-request-id]
    json_types: [application/merge-patch+json]
  - path: /v1/orders/{id}
    methods: [GET, DELETE]
    query: [page, q]
";

/// A business partner: honours `partner_sharing` and `partner:ads` by default.
const ADS: &str = "\
kind: business_partner
purpose: advertising
upstream: http://127.0.0.1:9002
allowed_callers: [marketing]
routes:
  - path: /v1/customers
    methods: [POST]
    records: $
    subject: customer_id
    allow: [customer_id, city]
  - path: /v1/customers/{id}
    methods: [GET]
    query: [ref]
  - path: /v1/people/{cid:subject}
    methods: [GET]
  - path: /v1/lookup
    methods: [GET]
    query: [ref:subject, page]
";

/// A government body: a legal basis of the form `CASE-<digits>` on every request.
const TAX: &str = "\
kind: government
purpose: tax audit
upstream: http://127.0.0.1:9003
allowed_callers: [finance]
legal_basis_format: 'CASE-[0-9]+'
routes:
  - path: /v1/cases/{id}
    methods: [GET]
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
            file("partners/shop.yaml", SHOP),
            file("partners/ads.yaml", ADS),
            file("partners/tax.yaml", TAX),
        ],
    };
    let env: BTreeMap<String, String> = BTreeMap::new();
    match load(&source, Some(&env)) {
        Ok(loaded) => loaded.policy,
        Err(errors) => panic!("test policy does not load: {errors:?}"),
    }
}

fn target(policy: &Policy, method: &str, path: &str) -> Target {
    resolve(&policy.partners, method, path).unwrap_or_else(|r| panic!("{path}: {r}"))
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// An opt-out set in which `c-out` opted out of `partner_sharing`.
fn opted_out() -> OptOutSet {
    let mut set = OptOutSet::new();
    let scope = Scope::parse(Scope::PARTNER_SHARING).unwrap();
    set.insert("c-out", std::slice::from_ref(&scope)).unwrap();
    set.insert("300", &[scope]).unwrap();
    set
}

/// The refusal code of an outcome, or "ok".
fn code<T>(outcome: &Result<T, Refusal>) -> &'static str {
    outcome.as_ref().map_or_else(Refusal::code, |_| "ok")
}

#[test]
fn resolve_finds_partner_route_and_upstream_path() {
    let policy = policy();
    let cases = [
        ("POST", "/shop/v1/orders", Ok(("shop", 0, "/v1/orders"))),
        ("GET", "/shop/v1/orders/7", Ok(("shop", 1, "/v1/orders/7"))),
        ("GET", "/shop/v1/./orders/7", Err("bad_request")),
        (
            "DELETE",
            "/shop/v1/orders/7",
            Ok(("shop", 1, "/v1/orders/7")),
        ),
        (
            "GET",
            "/ads/v1/customers/c-1",
            Ok(("ads", 1, "/v1/customers/c-1")),
        ),
        ("GET", "/nobody/v1/orders", Err("unknown_partner")),
        ("GET", "/shop/v1/orders", Err("method_not_allowed")),
        ("GET", "/shop/v1/invoices", Err("route_not_allowed")),
        ("GET", "/shop", Err("route_not_allowed")),
        ("CONNECT", "/shop/v1/orders", Err("bad_request")),
        ("connect", "/shop/v1/orders", Err("bad_request")),
        ("GET", "/shop/v1/%2e%2e/x", Err("bad_request")),
    ];
    for (method, path, expected) in cases {
        let got = resolve(&policy.partners, method, path);
        match (&got, expected) {
            (Ok(t), Ok((partner, route, upstream))) => {
                assert_eq!(t.partner.id, partner, "{method} {path}");
                assert_eq!(t.route_index, route, "{method} {path}");
                assert_eq!(t.upstream_path, upstream, "{method} {path}");
            }
            (Err(r), Err(code)) => assert_eq!(r.code(), code, "{method} {path}: {r}"),
            _ => panic!("{method} {path}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn a_path_is_owned_by_its_route_whatever_the_method() {
    let policy = policy();
    let shop = &policy.partners["shop"];
    let ok = target(&policy, "POST", "/shop/v1/orders");
    // `GET /shop/v1/orders` is refused for its method: counted on the route owning the path.
    assert_eq!(path_owner(shop, "/shop/v1/orders"), Some(ok.route_index));
    for nobody in [
        "/shop/v1/invoices",
        "/shop",
        "/ads/v1/orders",
        "/shop/v1/%2e%2e/x",
    ] {
        assert_eq!(path_owner(shop, nobody), None, "{nobody}");
    }
}

#[test]
fn framing_refuses_upgrades_and_unreadable_codings() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "ok"),
        (&[("upgrade", "websocket")], "bad_request"),
        (&[("content-encoding", "identity")], "ok"),
        (&[("content-encoding", "Identity, identity")], "ok"),
        (&[("content-encoding", "gzip")], "unsupported_media_type"),
        (
            &[("content-encoding", "identity"), ("content-encoding", "br")],
            "unsupported_media_type",
        ),
        (&[("transfer-encoding", "chunked")], "ok"),
        (&[("transfer-encoding", "chunked, chunked")], "bad_request"),
        (
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "Chunked"),
            ],
            "bad_request",
        ),
        (
            &[("transfer-encoding", "gzip, chunked")],
            "unsupported_media_type",
        ),
        (
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "gzip"),
            ],
            "unsupported_media_type",
        ),
    ];
    for (list, expected) in cases {
        let list = list.to_vec();
        let outcome =
            framing::refuse_upgrade(&list).and_then(|()| framing::check_codings(&list, &[]));
        assert_eq!(code(&outcome), *expected, "{list:?}");
    }
    // A route that decodes gzip: exactly one gzip coding, nothing stacked, nothing else.
    let gzip = [crate::policy::ContentCoding::Gzip];
    let decodes: &[(Headers, Option<&str>)] = &[
        (&[("content-encoding", "gzip")], Some("gzip")),
        (&[("content-encoding", "X-GZIP")], Some("gzip")),
        (&[("content-encoding", "identity, gzip")], Some("gzip")),
        (&[("content-encoding", "gzip, gzip")], None),
        (&[("content-encoding", "gzip,")], None),
        (
            &[("content-encoding", "gzip"), ("content-encoding", "gzip")],
            None,
        ),
        (&[("content-encoding", "br")], None),
        (&[("content-encoding", "compress")], None),
    ];
    for (list, expected) in decodes {
        let outcome = framing::check_codings(list, &gzip);
        match (outcome, expected) {
            (Ok(Some(c)), Some(name)) => assert_eq!(c.as_str(), *name, "{list:?}"),
            (Err(r), None) => assert_eq!(r.code(), "unsupported_media_type", "{list:?}"),
            (other, _) => panic!("{list:?}: {other:?}"),
        }
    }
    let limits = Limits {
        max_body_bytes: 4,
        ..Limits::default()
    };
    for (body, expected) in [
        (&b""[..], "ok"),
        (b"1234", "ok"),
        (b"12345", "body_too_large"),
    ] {
        assert_eq!(code(&framing::check_body_size(body, &limits)), expected);
    }
}

#[test]
fn legal_basis_is_one_well_formed_header_for_government_partners_only() {
    let policy = policy();
    let tax = &policy.partners["tax"];
    let shop = &policy.partners["shop"];
    let cases: &[(Headers, Result<Option<&str>, &str>)] = &[
        (&[("ohsoft-legal-basis", "CASE-12")], Ok(Some("CASE-12"))),
        (&[("ohsoft-legal-basis", "  CASE-12 ")], Ok(Some("CASE-12"))),
        (&[], Err("legal_basis_missing")),
        (&[("ohsoft-legal-basis", " ")], Err("legal_basis_missing")),
        (
            &[("ohsoft-legal-basis", "case-12")],
            Err("legal_basis_missing"),
        ),
        (
            &[("ohsoft-legal-basis", "CASE-12x")],
            Err("legal_basis_missing"),
        ),
        (
            &[
                ("ohsoft-legal-basis", "CASE-1"),
                ("ohsoft-legal-basis", "CASE-2"),
            ],
            Err("legal_basis_missing"),
        ),
        (
            &[("ohsoft-legal-basis", "CASE-1\u{e9}")],
            Err("legal_basis_missing"),
        ),
    ];
    for (list, expected) in cases {
        let got = legal_basis(tax, list);
        match (&got, expected) {
            (Ok(v), Ok(e)) => assert_eq!(v.as_deref(), *e, "{list:?}"),
            (Err(r), Err(c)) => assert_eq!(r.code(), *c, "{list:?}: {r}"),
            _ => panic!("{list:?}: got {got:?}, expected {expected:?}"),
        }
    }
    let ignored = [("ohsoft-legal-basis", "anything")];
    assert_eq!(legal_basis(shop, &ignored).unwrap(), None);
}

#[test]
fn body_step_filters_json_and_refuses_what_it_cannot_read() {
    let policy = policy();
    let json = [("content-type", "application/json")];
    let merge = [("content-type", "application/merge-patch+json")];
    let two = [
        ("content-type", "application/json"),
        ("content-type", "application/json"),
    ];
    let text = [("content-type", "text/plain")];
    let cases: &[(&str, Headers, &str, Result<&str, &str>)] = &[
        (
            "/shop/v1/orders",
            &json,
            r#"{"order_id":1,"card":"4111"}"#,
            Ok(r#"{"order_id":1}"#),
        ),
        (
            "/shop/v1/orders",
            &merge,
            r#"{"name":"x"}"#,
            Ok(r#"{"name":"x"}"#),
        ),
        // No body bytes: no body, whatever the content-type says.
        ("/shop/v1/orders", &json, "", Ok("")),
        ("/shop/v1/orders", &text, "", Ok("")),
        ("/shop/v1/orders", &[], "", Ok("")),
        ("/shop/v1/orders", &[], "{}", Err("unsupported_media_type")),
        (
            "/shop/v1/orders",
            &text,
            "{}",
            Err("unsupported_media_type"),
        ),
        ("/shop/v1/orders", &two, "{}", Err("unsupported_media_type")),
        ("/shop/v1/orders", &json, "{", Err("bad_request")),
        ("/shop/v1/orders/7", &json, "{}", Err("bad_request")),
    ];
    for (path, list, body, expected) in cases {
        let method = if path.ends_with('7') { "GET" } else { "POST" };
        let t = target(&policy, method, path);
        let list = list.to_vec();
        let incoming = Incoming {
            query: None,
            headers: &list,
            body: body.as_bytes(),
        };
        let step = body::BodyStep {
            partner: &t.partner,
            route: t.route(),
            limits: &Limits::default(),
            optouts: OptOuts::NotLoaded,
            collect: Collect {
                detail: false,
                forwarded: false,
                subjects: true,
            },
        };
        let got = step.filter(&incoming);
        match (&got, expected) {
            (Ok((b, _)), Ok(e)) => assert_eq!(String::from_utf8_lossy(b), *e, "{path} {body}"),
            (Err(r), Err(c)) => assert_eq!(r.code(), *c, "{path} {body}: {r}"),
            _ => panic!("{path} {body}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn body_step_drops_opted_out_records_and_refuses_without_the_set() {
    let policy = policy();
    let t = target(&policy, "POST", "/ads/v1/customers");
    let set = opted_out();
    let list = [("content-type", "application/json")];
    let cases: &[(&str, OptOuts<'_>, Result<&str, &str>)] = &[
        (
            r#"{"customer_id":"c-in","city":"x"}"#,
            OptOuts::Loaded(&set),
            Ok(r#"{"customer_id":"c-in","city":"x"}"#),
        ),
        (
            r#"{"customer_id":"c-out","city":"x"}"#,
            OptOuts::Loaded(&set),
            Err("subject_opted_out"),
        ),
        (
            r#"{"city":"x"}"#,
            OptOuts::Loaded(&set),
            Err("subject_missing"),
        ),
        (
            r#"{"customer_id":"c-in"}"#,
            OptOuts::NotLoaded,
            Err("not_ready"),
        ),
    ];
    for (body, optouts, expected) in cases {
        let incoming = Incoming {
            query: None,
            headers: &list,
            body: body.as_bytes(),
        };
        let step = body::BodyStep {
            partner: &t.partner,
            route: t.route(),
            limits: &Limits::default(),
            optouts: *optouts,
            collect: Collect {
                detail: false,
                forwarded: false,
                subjects: true,
            },
        };
        let got = step.filter(&incoming);
        match (&got, expected) {
            (Ok((b, _)), Ok(e)) => assert_eq!(String::from_utf8_lossy(b), *e, "{body}"),
            (Err(r), Err(c)) => assert_eq!(r.code(), *c, "{body}: {r}"),
            _ => panic!("{body}: got {got:?}, expected {expected:?}"),
        }
    }
}

/// While opt-outs are not loaded, every request to a partner that honours them is refused,
/// whether or not it names a customer (an empty body, a route without ids); a contractor, which
/// honours none, is served.
#[test]
fn a_partner_honouring_opt_outs_gets_nothing_while_they_are_not_loaded() {
    let policy = policy();
    let list = [("content-type", "application/json")];
    for (method, path, body) in [
        ("POST", "/ads/v1/customers", ""),
        ("GET", "/ads/v1/customers/c-1", ""),
        ("GET", "/ads/v1/lookup", ""),
    ] {
        let t = target(&policy, method, path);
        let incoming = Incoming {
            query: None,
            headers: &list,
            body: body.as_bytes(),
        };
        let got = plan(&t, &incoming, &Limits::default(), OptOuts::NotLoaded, false);
        assert_eq!(code(&got), "not_ready", "{method} {path}");
    }
    let t = target(&policy, "POST", "/shop/v1/orders");
    let incoming = Incoming {
        query: None,
        headers: &list,
        body: b"",
    };
    let got = plan(&t, &incoming, &Limits::default(), OptOuts::NotLoaded, false);
    assert_ne!(code(&got), "not_ready");
}

#[test]
fn forwarded_headers_are_the_allowed_ones_minus_connection_names() {
    let policy = policy();
    let shop = target(&policy, "POST", "/shop/v1/orders");
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        bool,
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    let cases: &[Case<'_>] = &[
        (
            &[
                ("accept", "*/*"),
                ("x-request-id", "r1"),
                ("cookie", "s"),
                ("x-other", "1"),
            ],
            false,
            &[("accept", "*/*"), ("x-request-id", "r1")],
            &["cookie", "x-other"],
        ),
        (
            &[("content-type", "application/json; charset=UTF-8")],
            true,
            &[("content-type", "application/json")],
            &[],
        ),
        (&[("content-type", "application/json")], false, &[], &[]),
        // A `+json` type the route lists reaches the partner as itself, without parameters.
        (
            &[(
                "content-type",
                "Application/Merge-Patch+JSON; charset=utf-8",
            )],
            true,
            &[("content-type", "application/merge-patch+json")],
            &[],
        ),
        (
            &[
                ("connection", "X-Request-Id"),
                ("x-request-id", "r1"),
                ("x-request-id", "r2"),
            ],
            false,
            &[],
            &["connection", "x-request-id"],
        ),
        (
            &[("authorization", "Bearer t"), ("host", "h")],
            false,
            &[],
            &["authorization", "host"],
        ),
        // The gateway describes the body it made: a caller naming `content-type` in
        // `Connection` does not send the partner a body without one.
        (
            &[
                ("connection", "content-type, accept"),
                ("content-type", "application/json"),
                ("accept", "*/*"),
            ],
            true,
            &[("content-type", "application/json")],
            &["connection", "accept"],
        ),
    ];
    for (incoming, with_body, kept, removed) in cases {
        let (got, gone) = forward_headers(&shop.partner, shop.route(), incoming, None, *with_body);
        assert_eq!(got, headers(kept), "{incoming:?}");
        assert_eq!(gone, *removed, "{incoming:?}");
    }
}

#[test]
fn the_legal_basis_header_goes_last_whatever_connection_says() {
    let policy = policy();
    let tax = target(&policy, "GET", "/tax/v1/cases/1");
    let incoming = [
        ("ohsoft-legal-basis", "CASE-1"),
        ("connection", "ohsoft-legal-basis"),
        ("accept", "*/*"),
    ];
    let (got, gone) = forward_headers(&tax.partner, tax.route(), &incoming, Some("CASE-1"), false);
    assert_eq!(
        got,
        headers(&[("accept", "*/*"), ("ohsoft-legal-basis", "CASE-1")])
    );
    assert_eq!(gone, ["connection"]);
}

#[test]
fn connection_tokens_are_lowercased() {
    let headers = [
        ("connection", "X-Request-Id, close"),
        ("connection", " ,te"),
    ];
    assert_eq!(
        connection_tokens(&headers),
        vec!["x-request-id", "close", "te"]
    );
}

#[test]
fn query_keeps_allowed_parameters_and_encodes_semicolons() {
    let allowed = vec!["page".to_string(), "q".to_string()];
    let cases = [
        ("page=2&secret=x", "page=2", vec!["secret"]),
        ("page=2;secret=x", "page=2%3Bsecret%3Dx", vec![]),
        ("p%61ge=3", "p%61ge=3", vec![]),
        ("q=a b&q=c%20d", "q=a%20b&q=c%20d", vec![]),
        ("&&page&", "page", vec![]),
        ("email=a@b", "", vec!["email"]),
        ("q=%zz", "q=%25zz", vec![]),
    ];
    for (query, expected, removed) in cases {
        let (kept, gone) = filter_query(Some(query), &allowed);
        assert_eq!(kept, expected, "{query}");
        assert_eq!(gone, removed, "{query}");
    }
    assert_eq!(filter_query(None, &allowed), (String::new(), vec![]));
}

#[test]
fn json_content_types() {
    for ok in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
        "Application/JSON; charset=UTF-8",
        "application/json ;charset=\"utf-8\"",
        " APPLICATION/json ; ; CHARSET = \"Utf-8\" ;",
        "application/json;",
    ] {
        assert!(check_json_content_type(Some(ok), &[]).is_ok(), "{ok}");
    }
    // Only ASCII letters are folded: nothing non-ASCII may pass for the media type.
    for bad in [
        "applicatión/json",
        "APPLİCATION/JSON",
        "application/jſon",
        "application/json; charset=utf-8; q=1",
        "application/json, text/plain",
    ] {
        assert!(check_json_content_type(Some(bad), &[]).is_err(), "{bad}");
    }
    for bad in [
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-16"),
        Some("application/vnd.x+json"),
        Some("application/json; boundary=x"),
    ] {
        assert!(check_json_content_type(bad, &[]).is_err(), "{bad:?}");
    }
    let merge_patch = vec!["application/merge-patch+json".to_string()];
    assert!(check_json_content_type(Some("application/merge-patch+json"), &merge_patch).is_ok());
    assert!(check_json_content_type(Some("Application/Merge-Patch+JSON"), &merge_patch).is_ok());
    assert!(check_json_content_type(Some("application/vnd.x+json"), &merge_patch).is_err());
}

static LONG_CURSOR: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("page={}", "ab".repeat(200)));
static LONG_PADDED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("page=c-out{}", "%20".repeat(300)));
static LONG_NUMBER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("page=1{}", "0".repeat(300)));

#[test]
fn url_check_refuses_opted_out_ids_in_path_and_forwarded_query() {
    let policy = policy();
    let set = opted_out();
    let loaded = OptOuts::Loaded(&set);
    let cases: &[(&str, &str, OptOuts<'_>, &str)] = &[
        ("/ads/v1/customers/c-in", "", loaded, "ok"),
        ("/ads/v1/customers/c-out", "", loaded, "subject_opted_out"),
        ("/ads/v1/customers/c%2Dout", "", loaded, "subject_opted_out"),
        (
            "/ads/v1/customers/c-in",
            "ref=c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/customers/c-in",
            "ref=c%2dout",
            loaded,
            "subject_opted_out",
        ),
        ("/ads/v1/customers/c-in", "ref=", loaded, "ok"),
        // Spellings a partner may read as an opted-out id: refused, typed or not.
        ("/ads/v1/customers/C-OUT", "", loaded, "subject_opted_out"),
        ("/ads/v1/customers/300", "", loaded, "subject_opted_out"),
        ("/ads/v1/customers/c-out;v=1", "", loaded, "bad_request"),
        ("/ads/v1/customers/c-out%3Bv=1", "", loaded, "bad_request"),
        ("/ads/v1/customers/0300", "", loaded, "bad_request"),
        ("/ads/v1/customers/+300", "", loaded, "bad_request"),
        ("/ads/v1/customers/300.0", "", loaded, "bad_request"),
        ("/ads/v1/customers/c-out%20", "", loaded, "bad_request"),
        ("/ads/v1/customers/c-out+", "", loaded, "bad_request"),
        (
            "/ads/v1/customers/c-in",
            "ref=c-in,c-out",
            loaded,
            "bad_request",
        ),
        (
            "/ads/v1/customers/c-in",
            "ref=c-out%00",
            loaded,
            "bad_request",
        ),
        (
            "/ads/v1/customers/c-in",
            "ref=c-out+",
            loaded,
            "bad_request",
        ),
        ("/ads/v1/customers/c-in", "ref=%ff", loaded, "bad_request"),
        // A format suffix (`.json`) that web frameworks strip from a path segment.
        (
            "/ads/v1/customers/c-out.json",
            "",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/customers/C-OUT.xml",
            "",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/customers/c-out.v1.json",
            "",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/customers/c-out.%6Ason",
            "",
            loaded,
            "subject_opted_out",
        ),
        ("/ads/v1/people/c-out.json", "", loaded, "subject_opted_out"),
        ("/ads/v1/customers/c-in.json", "", loaded, "ok"),
        // What is left without the suffix is judged as a whole value is.
        ("/ads/v1/customers/0300.json", "", loaded, "bad_request"),
        ("/ads/v1/customers/%2B300.json", "", loaded, "bad_request"),
        ("/ads/v1/customers/c-out%20.json", "", loaded, "bad_request"),
        ("/ads/v1/people/0300.json", "", loaded, "subject_missing"),
        ("/ads/v1/customers/.json", "", loaded, "ok"),
        ("/ads/v1/customers/c-in", "ref=c-out.json", loaded, "ok"),
        ("/ads/v1/customers/c-in", "ref=a+b", loaded, "ok"),
        ("/ads/v1/customers/c-in", "ref=12.5", loaded, "ok"),
        ("/ads/v1/people/c-in", "", loaded, "ok"),
        ("/ads/v1/people/c-out", "", loaded, "subject_opted_out"),
        ("/ads/v1/people/0300", "", loaded, "subject_missing"),
        ("/ads/v1/people/c-in%20", "", loaded, "subject_missing"),
        ("/ads/v1/people/c-in,c-out", "", loaded, "subject_missing"),
        // A query parameter typed as the customer id (`query: [ref:subject]`).
        ("/ads/v1/lookup", "ref=c-in&page=2", loaded, "ok"),
        ("/ads/v1/lookup", "ref=c-out", loaded, "subject_opted_out"),
        ("/ads/v1/lookup", "ref=C-OUT", loaded, "subject_opted_out"),
        ("/ads/v1/lookup", "ref=0300", loaded, "subject_missing"),
        ("/ads/v1/lookup", "ref=", loaded, "subject_missing"),
        ("/ads/v1/lookup", "ref", loaded, "subject_missing"),
        ("/ads/v1/lookup", "page=2&ref", loaded, "subject_missing"),
        ("/ads/v1/customers/c-in", "ref", loaded, "ok"),
        ("/ads/v1/lookup", "ref=c-in%20", loaded, "subject_missing"),
        ("/ads/v1/lookup", "page=0300", loaded, "bad_request"),
        ("/ads/v1/lookup", "page=c-out", loaded, "subject_opted_out"),
        // Ids listed in one value, the way searches and lists join them: each is compared.
        (
            "/ads/v1/lookup",
            "page=c-in+c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=c-in%20c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=c-in|c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=c-in%7CC-OUT",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=c-in/c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=name:c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=(c-out)",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=%22c-out%22",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "ref=c-in+c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/customers/c-in%20c-out",
            "",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/customers/c-in%7Cc-out",
            "",
            loaded,
            "subject_opted_out",
        ),
        ("/ads/v1/lookup", "page=running+shoes", loaded, "ok"),
        // A piece in a number's other spelling is compared as the integer it reads as.
        (
            "/ads/v1/lookup",
            "page=a%200300",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=name:300.0",
            loaded,
            "subject_opted_out",
        ),
        ("/ads/v1/lookup", "page=x+3e2", loaded, "subject_opted_out"),
        ("/ads/v1/lookup", "page=(0300)", loaded, "subject_opted_out"),
        ("/ads/v1/lookup", "ref=a+0300", loaded, "subject_opted_out"),
        ("/ads/v1/lookup", "page=a+0454", loaded, "subject_opted_out"),
        (
            "/ads/v1/lookup",
            "page=a+3e%2B2",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "ref=a+3e%2B2",
            loaded,
            "subject_opted_out",
        ),
        // Punctuation a partner may trim from a piece's edges.
        (
            "/ads/v1/lookup",
            "page=x+c-out.",
            loaded,
            "subject_opted_out",
        ),
        ("/ads/v1/lookup", "page=_c-out", loaded, "subject_opted_out"),
        // Numbers no reader takes for a safe integer are compared as spelled, not refused.
        ("/ads/v1/lookup", "page=lat+52.52000812345678", loaded, "ok"),
        ("/ads/v1/lookup", "page=avogadro+6.022e23", loaded, "ok"),
        ("/ads/v1/people/a%200300", "", loaded, "subject_opted_out"),
        (
            "/ads/v1/lookup",
            "page=a|%D9%A3%D9%A0%D9%A0",
            loaded,
            "bad_request",
        ),
        // Other scripts' quotes and list marks split too.
        (
            "/ads/v1/lookup",
            "page=%E2%80%9Cc-out%E2%80%9D",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=c-in%E3%80%81c-out",
            loaded,
            "subject_opted_out",
        ),
        (
            "/ads/v1/lookup",
            "page=c-in$c-out",
            loaded,
            "subject_opted_out",
        ),
        // Times, dates and cursors pass.
        ("/ads/v1/lookup", "page=2026-12-03T10:00:00Z", loaded, "ok"),
        ("/ads/v1/lookup", "page=09:30", loaded, "ok"),
        ("/ads/v1/lookup", "page=abc/def==", loaded, "ok"),
        ("/ads/v1/lookup", "page=ana@example.com", loaded, "ok"),
        ("/ads/v1/lookup", "page=c-in%7Cc-in2", loaded, "ok"),
        // Longer than any recorded id: compared when clean, refused when not, or a number.
        ("/ads/v1/lookup", LONG_CURSOR.as_str(), loaded, "ok"),
        (
            "/ads/v1/lookup",
            LONG_PADDED.as_str(),
            loaded,
            "bad_request",
        ),
        (
            "/ads/v1/lookup",
            LONG_NUMBER.as_str(),
            loaded,
            "bad_request",
        ),
        (
            "/ads/v1/lookup",
            "page=%D9%A3%D9%A0%D9%A0",
            loaded,
            "bad_request",
        ),
        (
            "/ads/v1/customers/c-in",
            "",
            OptOuts::NotLoaded,
            "not_ready",
        ),
        // A partner that honours no opt-outs needs no set at all.
        (
            "/shop/v1/orders/c-out",
            "page=c-out",
            OptOuts::NotLoaded,
            "ok",
        ),
    ];
    for (path, query, optouts, expected) in cases {
        let t = target(&policy, "GET", path);
        let outcome = check_url_for_opted_out_ids(&t, query, *optouts);
        assert_eq!(code(&outcome), *expected, "{path}?{query}");
    }
}

#[test]
fn customer_ids_the_route_types_in_its_url_are_noted_for_the_ledger() {
    let policy = policy();
    let set = opted_out();
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("/ads/v1/people/c-5", None, &["c-5"]),
        ("/ads/v1/people/c%2D5", None, &["c-5"]),
        // Every form the partner may read it as, as the opt-out check judges it.
        ("/ads/v1/people/c-5.json", None, &["c-5.json", "c-5"]),
        // And each id it may list (`+` joins lists as it stands for a space).
        ("/ads/v1/lookup", Some("ref=a+b"), &["a+b", "a", "b", "a b"]),
        // And the integers its pieces read as.
        (
            "/ads/v1/lookup",
            Some("ref=b+0x1c6"),
            &["b+0x1c6", "b", "0x1c6", "454", "b 0x1c6"],
        ),
        ("/ads/v1/lookup", Some("ref=c-7&page=2"), &["c-7"]),
        (
            "/ads/v1/lookup",
            Some("ref=c-7&ref=c-7&ref=c-8"),
            &["c-7", "c-8"],
        ),
        // Untyped parameters may or may not hold ids: not noted (but checked, see above).
        ("/ads/v1/customers/c-9", Some("ref=c-8"), &[]),
        ("/ads/v1/lookup", Some("page=2"), &[]),
    ];
    for (path, query, expected) in cases {
        let t = target(&policy, "GET", path);
        let incoming = Incoming {
            query: *query,
            headers: &[],
            body: b"",
        };
        let out = plan(
            &t,
            &incoming,
            &Limits::default(),
            OptOuts::Loaded(&set),
            false,
        );
        let out = out.unwrap_or_else(|r| panic!("{path}: {r}"));
        assert_eq!(out.url_subjects, *expected, "{path}?{query:?}");
    }
}

#[test]
fn plan_runs_every_step_in_order() {
    let policy = policy();
    let set = opted_out();
    let t = target(&policy, "GET", "/shop/v1/orders/7");
    let list = [("accept", "*/*"), ("cookie", "s")];
    let incoming = Incoming {
        query: Some("page=2&token=x"),
        headers: &list,
        body: b"",
    };
    let out = plan(
        &t,
        &incoming,
        &Limits::default(),
        OptOuts::Loaded(&set),
        false,
    )
    .unwrap();
    assert_eq!(out.path_and_query, "/v1/orders/7?page=2");
    assert_eq!(out.headers, headers(&[("accept", "*/*")]));
    assert_eq!(out.headers_removed, ["cookie"]);
    assert_eq!(out.query_removed, ["token"]);
    assert!(out.body.is_empty());
    assert_eq!(out.legal_basis, None);

    // The first refusal wins: an upgrade is refused before the missing legal basis is noticed.
    let tax = target(&policy, "GET", "/tax/v1/cases/1");
    let list = [("upgrade", "h2c")];
    let incoming = Incoming {
        query: None,
        headers: &list,
        body: b"",
    };
    let outcome = plan(
        &tax,
        &incoming,
        &Limits::default(),
        OptOuts::NotLoaded,
        false,
    );
    assert_eq!(code(&outcome), "bad_request");
    let list = [("ohsoft-legal-basis", "CASE-9")];
    let incoming = Incoming {
        query: None,
        headers: &list,
        body: b"",
    };
    let out = plan(
        &tax,
        &incoming,
        &Limits::default(),
        OptOuts::NotLoaded,
        false,
    )
    .unwrap();
    assert_eq!(out.legal_basis.as_deref(), Some("CASE-9"));
    assert_eq!(out.headers, headers(&[("ohsoft-legal-basis", "CASE-9")]));
}
