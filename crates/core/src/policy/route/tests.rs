use super::*;
use crate::policy::model::{PartnerKind, Upstream};

#[test]
fn normalises_or_refuses_request_paths() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("/v1/shipments", Ok("/v1/shipments")),
        ("/", Ok("/")),
        ("/v1/shipments/", Ok("/v1/shipments/")),
        // unreserved escapes are decoded, any case
        ("/v1/ship%6dents", Ok("/v1/shipments")),
        ("/v1/ship%6Dents", Ok("/v1/shipments")),
        ("/v1/%41-%5f-%7E-%30", Ok("/v1/A-_-~-0")),
        // other escapes stay as sent
        ("/v1/a%20b", Ok("/v1/a%20b")),
        ("/v1/caf%C3%A9", Ok("/v1/caf%C3%A9")),
        ("/v1/a%3Ab%3a", Ok("/v1/a%3Ab%3a")),
        ("/v1/100%25", Ok("/v1/100%25")),
        ("/v1/100%25off", Ok("/v1/100%25off")),
        ("/v1/a.b/c..d/.e", Ok("/v1/a.b/c..d/.e")),
        ("/v1/a:b@c!$&'()*+,;=", Ok("/v1/a:b@c!$&'()*+,;=")),
        // refused
        ("", Err("does not start with `/`")),
        ("v1/shipments", Err("does not start with `/`")),
        ("/v1/../admin", Err("\"..\" path segment")),
        ("/v1/./shipments", Err("\".\" path segment")),
        ("/v1/shipments/..", Err("\"..\" path segment")),
        ("/v1/shipments/.", Err("\".\" path segment")),
        // dot segments as servers that drop `;parameters` or blanks read them
        ("/v1/tickets/..;", Err("read it as \"..\"")),
        ("/v1/..;x/admin", Err("read it as \"..\"")),
        ("/v1/tickets/.;", Err("read it as \".\"")),
        ("/v1/tickets/..%3B", Err("read it as \"..\"")),
        ("/v1/tickets/..%3bx", Err("read it as \"..\"")),
        ("/v1/tickets/..%20", Err("read it as \"..\"")),
        ("/v1/tickets/%20..%20", Err("read it as \"..\"")),
        ("/v1/tickets/..%20;x", Err("read it as \"..\"")),
        ("/v1/tickets/a..;", Ok("/v1/tickets/a..;")),
        ("/v1/tickets/...;", Ok("/v1/tickets/...;")),
        ("/v1/tickets/;..", Err("read it as \"\"")),
        ("/v1/customers/;/orders", Err("read it as \"\"")),
        ("/v1/customers/;jsessionid=1/orders", Err("read it as \"\"")),
        ("/v1/customers/%3B/orders", Err("read it as \"\"")),
        ("/v1/items/;x", Err("read it as \"\"")),
        ("/v1/items/%20", Err("read it as \"\"")),
        ("/v1/items/a;x", Ok("/v1/items/a;x")),
        ("/v1//shipments", Err("empty path segment")),
        ("//v1", Err("empty path segment")),
        ("/v1/shipments//", Err("empty path segment")),
        ("/v1\\shipments", Err("backslash")),
        ("/v1%2fshipments", Err("percent-encoded '/'")),
        ("/v1%2Fshipments", Err("percent-encoded '/'")),
        ("/v1%5cshipments", Err("percent-encoded '\\\\'")),
        ("/v1%5Cshipments", Err("percent-encoded '\\\\'")),
        ("/v1/%2e%2e/admin", Err("percent-encoded '.'")),
        ("/v1/%2E/admin", Err("percent-encoded '.'")),
        ("/v1/.%2e/admin", Err("percent-encoded '.'")),
        ("/v1/a%00", Err("control character")),
        ("/v1/a%0a", Err("control character")),
        ("/v1/a%7F", Err("control character")),
        ("/v1/a\u{0}", Err("control character")),
        ("/v1/a\tb", Err("control character")),
        ("/v1/a%", Err("malformed percent escape")),
        ("/v1/a%2", Err("malformed percent escape")),
        ("/v1/a%zz", Err("malformed percent escape")),
        ("/v1/a%%32%66", Err("malformed percent escape")),
        ("/v1/a%252f", Err("double-encoded")),
        ("/v1/a%252E", Err("double-encoded")),
        ("/v1/a%25%32%66", Err("double-encoded")),
        ("/v1/a b", Err("character ' '")),
        ("/v1/a\"b", Err("character '\"'")),
        ("/v1/é", Err("non-ASCII")),
        ("/v1/a?b=c", Err("'?'")),
        ("/v1/a#frag", Err("'#'")),
        // escapes that are not UTF-8, or that Unicode normalisation (NFKC) makes a dot segment
        // or a separator
        ("/v1/%C0%AE%C0%AE/admin", Err("not UTF-8")),
        ("/v1/files/%FF", Err("not UTF-8")),
        ("/v1/%EF%BC%8E%EF%BC%8E/admin", Err("makes it \"..\"")),
        ("/v1/%EF%BC%8E/admin", Err("makes it \".\"")),
        ("/v1/%E2%80%A5/admin", Err("makes it \"..\"")),
        ("/v1/%EF%BC%8E%EF%BC%8E;x/admin", Err("makes it")),
        ("/v1/a%EF%BC%8Fb", Err("makes it \"a/b\"")),
        ("/v1/a%EF%BC%BCb", Err("makes it \"a\\\\b\"")),
        ("/v1/%C2%A0..%C2%A0/admin", Err("makes it")),
        ("/v1/a%EF%BC%8E%EF%BC%8E", Ok("/v1/a%EF%BC%8E%EF%BC%8E")),
        (
            "/v1/%EF%BC%852e%EF%BC%852e/admin",
            Err("makes it \"%2e%2e\""),
        ),
        (
            "/v1/%EF%BC%85%32%65%EF%BC%85%32%65/admin",
            Err("makes it \"%2e%2e\""),
        ),
        (
            "/v1/%EF%BC%8E%E2%80%8B%EF%BC%8E/admin",
            Err("makes it \"..\""),
        ),
        ("/v1/%EF%BC%8E%C2%AD%EF%BC%8E/admin", Err("makes it \"..\"")),
        // Ordinary text with joiners and variation selectors passes.
        (
            "/v1/%D9%85%DB%8C%E2%80%8C%D8%AE%D9%88%D8%A7%D9%87%D9%85",
            Ok("/v1/%D9%85%DB%8C%E2%80%8C%D8%AE%D9%88%D8%A7%D9%87%D9%85"),
        ),
        ("/v1/%E2%9D%A4%EF%B8%8F", Ok("/v1/%E2%9D%A4%EF%B8%8F")),
        // Read as empty once invisible characters and blanks are dropped, or `;` cut.
        ("/v1/tickets/%E2%80%8B", Err("makes it \"\"")),
        ("/v1/tickets/%C2%A0", Err("makes it")),
        ("/v1/tickets/%E3%80%80", Err("makes it")),
        ("/v1/tickets/%EF%BC%9Bjsessionid=1", Err("makes it")),
        ("/v1/tickets/%E2%80%8B%3Bx", Err("makes it")),
        ("/v1/%EF%BC%85zz", Ok("/v1/%EF%BC%85zz")),
    ];
    for (raw, expected) in cases {
        let got = normalize_path(raw);
        match (expected, &got) {
            (Ok(want), Ok(have)) => assert_eq!(have, want, "{raw:?}"),
            (Err(want), Err(have)) => assert!(
                have.contains(want),
                "{raw:?}: {have:?} should mention {want:?}"
            ),
            _ => panic!("{raw:?}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn parses_route_templates() {
    use RouteSegment::{Literal as L, Param as P};
    let l = |s: &str| L(s.to_string());
    let p = |s: &str| P(s.to_string());
    let cases: Vec<(&str, Vec<RouteSegment>)> = vec![
        ("/v1/shipments", vec![l("v1"), l("shipments")]),
        ("/v1/tickets/{id}", vec![l("v1"), l("tickets"), p("id")]),
        ("/v1/{a}/x/{b_2}", vec![l("v1"), p("a"), l("x"), p("b_2")]),
        ("/v1/shipments/", vec![l("v1"), l("shipments"), l("")]),
        ("/", vec![l("")]),
        ("/v1/a.b:c@d", vec![l("v1"), l("a.b:c@d")]),
    ];
    for (text, want) in cases {
        assert_eq!(parse_template(text), Ok(want), "{text}");
    }
    assert_eq!(
        parse_typed_template("/v1/{a}/c/{cid:subject}"),
        Ok((
            vec![l("v1"), p("a"), l("c"), p("cid")],
            vec!["cid".to_string()]
        ))
    );
    let bad: &[(&str, &str)] = &[
        ("v1/x", "must start with `/`"),
        ("", "must start with `/`"),
        ("/v1/../x", "`..` segments"),
        ("/v1/./x", "`.` segments"),
        ("/v1//x", "empty segment"),
        ("/v1/x%2f", "`%`"),
        ("/v1\\x", "`\\`"),
        ("/v1/{}", "empty parameter"),
        ("/v1/{id", "must wrap a whole segment"),
        ("/v1/x{id}", "must wrap a whole segment"),
        ("/v1/{a-b}", "invalid parameter name"),
        ("/v1/{1a}", "invalid parameter name"),
        ("/v1/{id}/{id}", "appears twice"),
        ("/v1/{id}/{id:subject}", "appears twice"),
        ("/v1/{id:int}", "unknown parameter type"),
        ("/v1/{:subject}", "empty parameter"),
        ("/v1/x?y", "`?`"),
        ("/v1/a b", "can never appear"),
        ("/v1/é", "can never appear"),
    ];
    for (text, want) in bad {
        let err = parse_template(text).expect_err(text);
        assert!(
            err.contains(want),
            "{text}: {err:?} should mention {want:?}"
        );
    }
}

fn route(template: &str, methods: &[&str]) -> Route {
    Route {
        template: template.to_string(),
        segments: parse_template(template).expect(template),
        subject_params: Vec::new(),
        subject_query: Vec::new(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
        filter: None,
        query: Vec::new(),
        headers: Vec::new(),
        json_types: Vec::new(),
        response_headers: Vec::new(),
        decode: Vec::new(),
        fields: Vec::new(),
        stream: None,
    }
}

fn partner(routes: Vec<Route>) -> Partner {
    Partner {
        id: "p".into(),
        kind: PartnerKind::Contractor,
        purpose: "testing".into(),
        upstream: Upstream {
            tls: false,
            host: "127.0.0.1".into(),
            port: 9001,
        },
        routes,
        allowed_callers: Vec::new(),
        pseudonymize_key: None,
        upstream_auth: None,
        honor_optouts: Vec::new(),
        legal_basis_header: None,
        legal_basis_format: None,
        tls: None,
        pseudonymize_key_env: None,
        upstream_auth_source: None,
    }
}

#[test]
fn matches_routes_by_specificity_then_order() {
    let p = partner(vec![
        route("/v1/tickets/{id}", &["GET"]),
        route("/v1/tickets/search", &["POST"]),
        route("/v1/tickets", &["POST"]),
        route("/v1/tickets/{ticket}", &["PUT"]),
        route("/v1/orders/", &["POST"]),
        route("/v1/a/{x}/c", &["GET"]),
        route("/v1/a/b/{y}", &["GET", "POST"]),
        route("/", &["GET"]),
    ]);
    // Ok(Some(template)) = found, Ok(None) = not found, Err(()) = method not allowed
    type Want = Result<Option<String>, ()>;
    let found = |template: &str| Some(template.to_string());
    let cases: &[(&str, &str, Want)] = &[
        ("/v1/tickets/42", "GET", Ok(found("/v1/tickets/{id}"))),
        // the same shape with another method is another route
        ("/v1/tickets/42", "PUT", Ok(found("/v1/tickets/{ticket}"))),
        ("/v1/tickets/42", "POST", Err(())),
        // a literal beats a parameter, whatever the order
        (
            "/v1/tickets/search",
            "POST",
            Ok(found("/v1/tickets/search")),
        ),
        // ... and then owns the path: GET is not forwarded as a ticket id
        ("/v1/tickets/search", "GET", Err(())),
        ("/v1/tickets", "POST", Ok(found("/v1/tickets"))),
        ("/v1/tickets", "GET", Err(())),
        // trailing slash is significant
        ("/v1/tickets/", "POST", Ok(None)),
        ("/v1/orders/", "POST", Ok(found("/v1/orders/"))),
        ("/v1/orders", "POST", Ok(None)),
        // a parameter needs a non-empty segment
        ("/v1/tickets/42/x", "GET", Ok(None)),
        // equal specificity: the first declared wins
        ("/v1/a/b/c", "GET", Ok(found("/v1/a/{x}/c"))),
        ("/v1/a/b/c", "POST", Err(())),
        ("/v1/a/b/d", "POST", Ok(found("/v1/a/b/{y}"))),
        ("/", "GET", Ok(found("/"))),
        ("/v2", "GET", Ok(None)),
        // methods are compared exactly (callers send uppercase)
        ("/v1/tickets", "post", Err(())),
    ];
    for (path, method, want) in cases {
        let got = match p.match_route(path, method) {
            RouteMatch::Found(r) => Ok(Some(r.template.clone())),
            RouteMatch::NotFound => Ok(None),
            RouteMatch::MethodNotAllowed => Err(()),
        };
        assert_eq!(&got, want, "{method} {path}");
    }
}

#[test]
fn allowed_methods_are_those_of_the_owning_template_shape() {
    let p = partner(vec![
        route("/v1/tickets/{id}", &["GET"]),
        route("/v1/tickets/search", &["POST"]),
        route("/v1/tickets/{ticket}", &["PUT", "GET"]),
        route("/v1/tickets", &["POST"]),
    ]);
    // every route of the owner's shape, in declaration order, each method once
    assert_eq!(p.allowed_methods("/v1/tickets/42"), "GET, PUT");
    // the most specific template owns the path: the parameter routes' methods are not listed
    assert_eq!(p.allowed_methods("/v1/tickets/search"), "POST");
    assert_eq!(p.allowed_methods("/v1/tickets"), "POST");
    assert_eq!(p.allowed_methods("/v1/other"), "");
}

#[test]
fn no_routes_means_not_found() {
    assert!(matches!(
        partner(Vec::new()).match_route("/x", "GET"),
        RouteMatch::NotFound
    ));
}

/// Whatever the input, an accepted path is in normal form: normalising it again changes
/// nothing, and it holds none of the forms the gateway refuses.
#[test]
fn normalised_paths_are_stable_and_clean() {
    let alphabet: Vec<char> = "/.%2fF5cCeE0aA\\-_~:%%//..".chars().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = 1 + next() % 12;
        let mut raw = String::from("/");
        for _ in 0..len {
            raw.push(alphabet[next() % alphabet.len()]);
        }
        let Ok(path) = normalize_path(&raw) else {
            continue;
        };
        accepted += 1;
        assert_eq!(
            normalize_path(&path).as_deref(),
            Ok(path.as_str()),
            "{raw:?}"
        );
        let lower = path.to_ascii_lowercase();
        for bad in ["//", "/./", "/../", "\\", "%2f", "%5c", "%2e", "%00"] {
            assert!(!lower.contains(bad), "{raw:?} -> {path:?}");
        }
        assert!(
            !path.ends_with("/.") && !path.ends_with("/.."),
            "{raw:?} -> {path:?}"
        );
    }
    assert!(accepted > 1000, "only {accepted} accepted");
}
