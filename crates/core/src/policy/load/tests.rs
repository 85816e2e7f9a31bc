mod stream;
mod wildcard;

use super::partner::parse_upstream;
use super::*;
use crate::optout::Scope;
use crate::policy::model::{
    Limits, OptOutStoreConfig, PartnerKind, PostgresOptOuts, RouteSegment, Upstream,
};

const GATEWAY: &str = "\
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
optouts: { path: data/optouts }
callers:
  issuer: https://auth.ohsoft.example
  audience: partner-gateway
  keys: certs/callers.jwks.json
signing:
  issuer: https://partner-gateway.ohsoft.example
  key: certs/data-use-signing.pem
  kid: data-use-1
";

/// A contractor with one body route and one bodyless route (line numbers matter below).
const CONTRACTOR: &str = "\
kind: contractor
purpose: shipping
upstream: http://127.0.0.1:9001
routes:
  - path: /v1/shipments
    methods: [POST]
    allow: [order_id, name]
    transform:
      customer_id: pseudonymize
  - path: /v1/shipments/{id}
    methods: [GET]
allowed_callers: [orders-service]
pseudonymize_key_env: ACME_KEY
upstream_auth: { header: authorization, prefix: \"Bearer \", env: ACME_TOKEN }
";

fn source(gateway: &str, partners: &[(&str, &str)]) -> PolicySource {
    PolicySource {
        dir: PathBuf::from("policy/"),
        gateway: SourceFile {
            path: "policy/gateway.yaml".into(),
            text: gateway.into(),
        },
        partners: partners
            .iter()
            .map(|(name, text)| SourceFile {
                path: format!("policy/partners/{name}"),
                text: text.to_string(),
            })
            .collect(),
    }
}

fn errors(src: &PolicySource, env: Option<&dyn Env>) -> Vec<String> {
    match load(src, env) {
        Ok(_) => Vec::new(),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(src: &PolicySource) -> Vec<String> {
    match load(src, None) {
        // The fixtures leave their fields uncategorised; categories have their own tests.
        Ok(loaded) => loaded
            .warnings
            .iter()
            .map(ToString::to_string)
            .filter(|w| !w.contains("has no data category"))
            .collect(),
        Err(diags) => panic!("unexpected errors: {diags:#?}"),
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_sound_policy_loads_in_check_mode_without_secrets() {
    let loaded = load(&source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)]), None).expect("loads");
    let policy = &loaded.policy;
    assert!(
        warnings(&source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)])).is_empty(),
        "{:?}",
        loaded.warnings
    );
    assert_eq!(policy.version.len(), 12);
    assert!(policy
        .version
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let g = &policy.gateway;
    assert_eq!(g.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(g.limits, Limits::default());
    assert_eq!(
        g.optouts.as_ref().unwrap().embedded_path(),
        Some(PathBuf::from("data/optouts").as_path())
    );
    let callers = g.callers.as_ref().unwrap();
    let keys = callers.keys.as_ref().unwrap();
    assert_eq!(keys.path, PathBuf::from("certs/callers.jwks.json"));
    assert_eq!((keys.key, keys.line), ("callers.keys", 7));
    assert!(!callers.allow_unauthenticated);
    assert_eq!(
        g.signing.as_ref().unwrap().key.path,
        PathBuf::from("certs/data-use-signing.pem")
    );

    let p = &policy.partners["acme-ship"];
    assert_eq!(p.kind, PartnerKind::Contractor);
    assert_eq!(
        p.upstream,
        Upstream {
            tls: false,
            host: "127.0.0.1".into(),
            port: 9001
        }
    );
    assert_eq!(p.allowed_callers, ["orders-service"]);
    assert!(p.honor_optouts.is_empty());
    assert_eq!(p.legal_basis_header, None);
    // check mode resolves no secret
    assert!(p.pseudonymize_key.is_none());
    assert!(p.upstream_auth.is_none());
    assert_eq!(p.routes.len(), 2);
    assert!(p.routes[0].filter.is_some());
    assert!(p.routes[1].filter.is_none());
    assert_eq!(
        p.routes[1].segments,
        vec![
            RouteSegment::Literal("v1".into()),
            RouteSegment::Literal("shipments".into()),
            RouteSegment::Param("id".into())
        ]
    );
}

#[test]
fn serve_mode_resolves_secrets() {
    let vars = env(&[
        ("ACME_KEY", "k-0123456789abcdef0123456789abcdef"),
        ("ACME_TOKEN", "t0k"),
    ]);
    let loaded = load(
        &source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)]),
        Some(&vars),
    )
    .expect("loads");
    let p = &loaded.policy.partners["acme-ship"];
    assert_eq!(
        p.pseudonymize_key.as_deref(),
        Some(&b"k-0123456789abcdef0123456789abcdef"[..])
    );
    let auth = p.upstream_auth.as_ref().unwrap();
    assert_eq!(
        (auth.header.as_str(), auth.value.as_str()),
        ("authorization", "Bearer t0k")
    );
}

#[test]
fn serve_mode_names_every_missing_variable() {
    let src = source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)]);
    assert_eq!(errors(&src, Some(&env(&[("ACME_TOKEN", "")]))), [
        "policy/partners/acme-ship.yaml:13: environment variable \"ACME_KEY\" named by pseudonymize_key_env is not set",
        "policy/partners/acme-ship.yaml:14: environment variable \"ACME_TOKEN\" named by upstream_auth.env is empty",
    ]);
    let bad_value = env(&[
        ("ACME_KEY", "0123456789abcdef0123456789abcdef"),
        ("ACME_TOKEN", "a\r\nx-evil: 1"),
    ]);
    assert_eq!(errors(&src, Some(&bad_value)), [
        "policy/partners/acme-ship.yaml:14: environment variable \"ACME_TOKEN\" named by upstream_auth.env holds characters not allowed in a header value",
    ]);
}

#[test]
fn short_keys_and_unused_keys_warn() {
    let vars = env(&[("ACME_KEY", "short"), ("ACME_TOKEN", "t")]);
    let loaded = load(
        &source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)]),
        Some(&vars),
    )
    .expect("loads");
    let w: Vec<String> = loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .filter(|w| !w.contains("has no data category"))
        .collect();
    assert_eq!(w, ["policy/partners/acme-ship.yaml:13: the key in \"ACME_KEY\" is 5 bytes long; use at least 32 random bytes"]);

    let unused = CONTRACTOR.replace(
        "      customer_id: pseudonymize\n",
        "      customer_id: mask\n",
    );
    assert_eq!(warnings(&source(GATEWAY, &[("acme-ship.yaml", &unused)])), [
        "policy/partners/acme-ship.yaml:13: pseudonymize_key_env is set but no route uses pseudonymize",
    ]);
}

/// Replaces `from` in the contractor file and expects these diagnostics for it.
#[test]
fn partner_mistakes_are_reported_at_their_line() {
    let f = "policy/partners/acme-ship.yaml";
    let cases: Vec<(&str, &str, Vec<String>)> = vec![
        ("kind: contractor", "kind: contractr", vec![format!(
            "{f}:1: unknown kind \"contractr\" (expected one of: contractor, business_partner, co_branded, government)"
        )]),
        ("purpose: shipping", "purpose: 'ship\"ping'", vec![format!(
            "{f}:2: invalid purpose \"ship\\\"ping\": expected printable ASCII text without `\"` or `\\`"
        )]),
        ("http://127.0.0.1:9001", "127.0.0.1:9001", vec![format!(
            "{f}:3: invalid upstream \"127.0.0.1:9001\": no scheme (expected http(s)://host[:port])"
        )]),
        ("http://127.0.0.1:9001", "ftp://127.0.0.1:9001", vec![format!(
            "{f}:3: invalid upstream \"ftp://127.0.0.1:9001\": unsupported scheme \"ftp\" (expected http(s)://host[:port])"
        )]),
        ("http://127.0.0.1:9001", "http://127.0.0.1:9001/api", vec![format!(
            "{f}:3: invalid upstream \"http://127.0.0.1:9001…\": a path is not allowed (routes give the path) (expected http(s)://host[:port])"
        )]),
        ("http://127.0.0.1:9001", "http://user:pw@127.0.0.1:9001", vec![format!(
            "{f}:3: invalid upstream \"http://***\": user info is not allowed (put the partner's credential in upstream_auth) (expected http(s)://host[:port])"
        )]),
        ("http://127.0.0.1:9001", "http://127.0.0.1:9001?x=1", vec![format!(
            "{f}:3: invalid upstream \"http://127.0.0.1:9001…\": a query is not allowed (expected http(s)://host[:port])"
        )]),
        ("http://127.0.0.1:9001", "http://127.0.0.1:99999", vec![format!(
            "{f}:3: invalid upstream \"http://127.0.0.1:99999\": invalid port (1 to 65535) (expected http(s)://host[:port])"
        )]),
        ("http://127.0.0.1:9001", "http://:9001", vec![format!(
            "{f}:3: invalid upstream \"http://***\": missing host (expected http(s)://host[:port])"
        )]),
        ("- path: /v1/shipments\n", "- path: v1/shipments\n", vec![format!(
            "{f}:5: invalid route path \"v1/shipments\": must start with `/`"
        )]),
        ("- path: /v1/shipments\n", "- path: /v1/../shipments\n", vec![format!(
            "{f}:5: invalid route path \"/v1/../shipments\": `..` segments are not allowed"
        )]),
        ("/v1/shipments/{id}", "/v1/shipments/{}", vec![format!(
            "{f}:10: invalid route path \"/v1/shipments/{{}}\": empty parameter `{{}}`"
        )]),
        ("    methods: [GET]\n", "    methods: []\n", vec![format!(
            "{f}:10: route \"/v1/shipments/{{id}}\" has no methods (expected a list such as [POST])"
        )]),
        ("    methods: [GET]\n", "", vec![format!(
            "{f}:10: route \"/v1/shipments/{{id}}\" has no methods (expected a list such as [POST])"
        )]),
        ("[GET]", "[GET, CONNECT, TRACE, get, FETCH, GET]", vec![
            format!("{f}:11: method \"CONNECT\" is never allowed: it would open a tunnel past the filter"),
            format!("{f}:11: method \"TRACE\" is never allowed: it echoes the request back"),
            format!("{f}:11: unknown method \"get\" (methods are uppercase: \"GET\")"),
            format!("{f}:11: unknown method \"FETCH\" (expected one of: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"),
            format!("{f}:11: method \"GET\" is listed twice"),
        ]),
        ("[order_id, name]", "[order_id, name..x, \"a b[\"]", vec![
            format!("{f}:7: invalid field path \"name..x\": empty member name"),
            format!("{f}:7: invalid field path \"a b[\": only `[*]` is supported inside brackets"),
        ]),
        ("customer_id: pseudonymize", "customer_id: shred", vec![format!(
            "{f}:9: unknown transform \"shred\" (expected one of: remove, mask, last4, pseudonymize, null)"
        )]),
        ("customer_id: pseudonymize", "customer_id: null", vec![format!(
            "{f}:9: transform for \"customer_id\" is an unquoted YAML null: write \"null\" in quotes to replace the value with null (or `remove`)"
        )]),
        ("pseudonymize_key_env: ACME_KEY\n", "", vec![format!(
            "{f}:9: transform \"pseudonymize\" needs pseudonymize_key_env (the environment variable holding this partner's HMAC key)"
        )]),
        ("pseudonymize_key_env: ACME_KEY", "pseudonymize_key_env: ACME-KEY", vec![format!(
            "{f}:13: pseudonymize_key_env must name an environment variable (letters, digits and `_`, not starting with a digit); the value is not shown in case it is the secret itself"
        )]),
        ("    methods: [GET]\n", "    methods: [GET]\n    headers: [X-Request-Id, Cookie, x-forwarded-for, Authorization, ohsoft-data-use-token, \"bad header\"]\n", vec![
            format!("{f}:12: header \"Cookie\" may never be forwarded to a partner"),
            format!("{f}:12: header \"x-forwarded-for\" may never be forwarded to a partner"),
            format!("{f}:12: header \"Authorization\" may never be forwarded to a partner"),
            format!("{f}:12: header \"ohsoft-data-use-token\" may never be forwarded to a partner"),
            format!("{f}:12: invalid header name \"bad header\": expected letters, digits and !#$%&'*+-.^_`|~"),
        ]),
        ("header: authorization", "header: x-api-key", vec![]),
        ("    methods: [GET]\n", "    methods: [GET]\n    headers: [X-Api-Key]\n", vec![]),
        ("header: authorization", "header: host", vec![format!(
            "{f}:14: upstream_auth.header \"host\" is not allowed: the gateway sets or strips that header itself"
        )]),
        ("    methods: [GET]\n", "    methods: [GET]\n    query: [page, \"a=b\", \"\"]\n", vec![
            format!("{f}:12: invalid query parameter name \"a=b\": expected a non-empty name without `&`, `=`, `#`, `%`, `+` or spaces"),
            format!("{f}:12: invalid query parameter name \"\": expected a non-empty name without `&`, `=`, `#`, `%`, `+` or spaces"),
        ]),
        ("    methods: [POST]\n", "    methods: [POST]\n    json_types: [application/merge-patch+json, text/plain, Application/X+JSON]\n", vec![
            format!("{f}:7: invalid json_types entry \"text/plain\": expected a lowercase media type ending in +json, such as application/merge-patch+json"),
            format!("{f}:7: invalid json_types entry \"Application/X+JSON\": expected a lowercase media type ending in +json, such as application/merge-patch+json"),
        ]),
        ("    methods: [GET]\n", "    methods: [GET]\n    response_headers: [X-Rate-Limit, set-cookie, WWW-Authenticate, proxy-status, content-length, \"a b\", ohsoft-records-dropped]\n", vec![
            format!("{f}:12: answer header \"set-cookie\" is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)"),
            format!("{f}:12: answer header \"WWW-Authenticate\" is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)"),
            format!("{f}:12: answer header \"proxy-status\" is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)"),
            format!("{f}:12: answer header \"content-length\" is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)"),
            format!("{f}:12: invalid header name \"a b\": expected letters, digits and !#$%&'*+-.^_`|~"),
            format!("{f}:12: answer header \"ohsoft-records-dropped\" is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)"),
        ]),
        ("kind: contractor", "kind: contractor\nlegal_basis_header: x-case", vec![format!(
            "{f}:2: legal_basis_header is only for government partners (this partner's kind is \"contractor\")"
        )]),
        ("    methods: [GET]\n", "    methods: [GET]\n    subject: customer_id\n", vec![
            format!("{f}:10: route \"/v1/shipments/{{id}}\" takes no body (no allow or transform), so records and subject have nothing to select"),
            format!("{f}:12: subject \"customer_id\" needs records (the path of the customer records; \"$\" when the body is one record)"),
        ]),
        ("      customer_id: pseudonymize\n", "      customer_id: pseudonymize\n    records: $\n    subject: a.b\n", vec![format!(
            "{f}:11: invalid subject \"a.b\": expected the name of one member of each record"
        )]),
        ("allowed_callers: [orders-service]", "allowed_callers: [orders-service, \"bad caller\"]", vec![format!(
            "{f}:12: invalid caller \"bad caller\" in allowed_callers: expected a caller `sub` without spaces"
        )]),
        ("    alow", "", vec![]),
        ("    allow: [order_id, name]\n", "    alow: [order_id, name]\n", vec![format!(
            "{f}:7: unknown field `alow`, expected one of path, methods, records, subject, allow, transform, query, headers, json_types, response_headers, decode, categories, stream"
        )]),
    ];
    for (from, to, want) in cases {
        if !from.starts_with("    alow") {
            assert!(
                CONTRACTOR.contains(from),
                "{from:?} is not in the base file"
            );
        }
        let text = CONTRACTOR.replacen(from, to, 1);
        let got = errors(&source(GATEWAY, &[("acme-ship.yaml", &text)]), None);
        assert_eq!(got, want, "{from:?} -> {to:?}\n{text}");
    }
}

#[test]
fn duplicate_routes_need_the_same_shape_and_a_shared_method() {
    let f = "policy/partners/acme-ship.yaml";
    let with =
        |extra: &str| CONTRACTOR.replace("allowed_callers:", &format!("{extra}allowed_callers:"));
    let dup = with("  - path: /v1/shipments/{x}\n    methods: [PUT, GET]\n");
    assert_eq!(errors(&source(GATEWAY, &[("acme-ship.yaml", &dup)]), None), [format!(
        "{f}:12: route \"/v1/shipments/{{x}}\" duplicates route \"/v1/shipments/{{id}}\" on line 10: both take GET"
    )]);
    // the same template with disjoint methods is two routes
    let disjoint = with("  - path: /v1/shipments/{x}\n    methods: [PUT, DELETE]\n");
    assert!(errors(&source(GATEWAY, &[("acme-ship.yaml", &disjoint)]), None).is_empty());
    // a literal where the other has a parameter is more specific, not a duplicate
    let literal = with("  - path: /v1/shipments/search\n    methods: [GET]\n");
    assert!(warnings(&source(GATEWAY, &[("acme-ship.yaml", &literal)])).is_empty());
    // equally specific templates that overlap: a warning
    let ambiguous = CONTRACTOR.replace(
        "allowed_callers:",
        "  - path: /v1/{a}/x\n    methods: [GET]\n  - path: /v1/shipments/{b}/\n    methods: [GET]\n  - path: /v1/shipments/{c}\n    methods: [POST]\nallowed_callers:",
    );
    assert_eq!(warnings(&source(GATEWAY, &[("acme-ship.yaml", &ambiguous)])), [format!(
        "{f}:12: routes \"/v1/{{a}}/x\" and \"/v1/shipments/{{id}}\" (line 10) both match some GET requests equally well; the one declared first wins"
    )]);
}

#[test]
fn every_error_in_every_file_is_reported_in_order() {
    let gateway = GATEWAY
        .replace("listen: 127.0.0.1:8080", "listen: localhost:8080")
        .replace("kid: data-use-1", "kid: \"\"");
    let broken = CONTRACTOR
        .replace("kind: contractor", "kind: vendor")
        .replace("[POST]", "[POST, TRACE]");
    let src = source(&gateway, &[
        ("zeta.yaml", "kind: contractor\n"),
        ("acme-ship.yaml", &broken),
        ("Bad_Name.yaml", "kind: contractor\npurpose: x\nupstream: http://a\nroutes: []\nallowed_callers: [a]\n"),
        ("notes.txt", "kind: contractor\npurpose: x\nupstream: http://a\nroutes: []\nallowed_callers: [a]\n"),
    ]);
    assert_eq!(errors(&src, None), [
        "policy/gateway.yaml:1: invalid listen address \"localhost:8080\": expected IP:PORT, such as 127.0.0.1:8080",
        "policy/gateway.yaml:11: signing.kid is empty",
        "policy/partners/Bad_Name.yaml:1: invalid partner id \"Bad_Name\" (the file name): expected lowercase letters, digits, `_` and `-`, starting with a letter or digit",
        "policy/partners/acme-ship.yaml:1: unknown kind \"vendor\" (expected one of: contractor, business_partner, co_branded, government)",
        "policy/partners/acme-ship.yaml:6: method \"TRACE\" is never allowed: it echoes the request back",
        "policy/partners/notes.txt:1: partner file name \"notes.txt\" must end in .yaml",
        "policy/partners/zeta.yaml:1: missing field `purpose`",
        "policy/partners/zeta.yaml:1: missing field `upstream`",
        "policy/partners/zeta.yaml:1: missing field `routes`",
    ]);
}

/// `unknown` is the metrics label of requests that name no partner: a partner of that name
/// would have its traffic counted with theirs.
#[test]
fn the_partner_id_unknown_is_reserved() {
    let src = source(GATEWAY, &[("unknown.yaml", CONTRACTOR)]);
    assert_eq!(errors(&src, None), [
        "policy/partners/unknown.yaml:1: partner id \"unknown\" (the file name) is reserved: metrics count requests that name no partner under `partner=\"unknown\"`, which this partner's traffic would join",
    ]);
}

#[test]
fn gateway_mistakes() {
    let f = "policy/gateway.yaml";
    let cases: Vec<(String, Vec<String>)> = vec![
        (GATEWAY.replace("admin_listen: 127.0.0.1:9090", "admin_listen: 127.0.0.1:8080"), vec![format!(
            "{f}:2: admin_listen \"127.0.0.1:8080\" takes the same connections as listen (the admin API needs its own port)"
        )]),
        (GATEWAY.replace("admin_listen: 127.0.0.1:9090", "admin_listen: 0.0.0.0:8080"), vec![format!(
            "{f}:2: admin_listen \"0.0.0.0:8080\" takes the same connections as listen (the admin API needs its own port)"
        )]),
        (GATEWAY.replace("admin_listen: 127.0.0.1:9090", "admin_listen: \"[::ffff:127.0.0.1]:8080\""), vec![format!(
            "{f}:2: admin_listen \"[::ffff:127.0.0.1]:8080\" takes the same connections as listen (the admin API needs its own port)"
        )]),
        (GATEWAY.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0").replace("admin_listen: 127.0.0.1:9090", "admin_listen: 127.0.0.1:0"), vec![format!(
            "{f}:2: admin_listen \"127.0.0.1:0\" takes the same connections as listen (the admin API needs its own port)"
        )]),
        (GATEWAY.replace("admin_listen: 127.0.0.1:9090", "admin_listen: \"[::]:8080\""), vec![format!(
            "{f}:2: admin_listen \"[::]:8080\" takes the same connections as listen (the admin API needs its own port)"
        )]),
        (format!("{GATEWAY}limits: {{ max_body_bytes: 0, max_depth: 0, upstream_timeout_ms: 0 }}\n"), vec![
            format!("{f}:12: limits.max_body_bytes must be greater than 0"),
            format!("{f}:12: limits.max_depth must be greater than 0"),
            format!("{f}:12: limits.upstream_timeout_ms must be greater than 0"),
        ]),
        (format!("{GATEWAY}admin_token_env: 1TOKEN\n"), vec![format!(
            "{f}:12: admin_token_env must name an environment variable (letters, digits and `_`, not starting with a digit); the value is not shown in case it is the secret itself"
        )]),
        (GATEWAY.replace("  keys: certs/callers.jwks.json\n", "").replace("  issuer: https://auth.ohsoft.example\n", ""), vec![
            format!("{f}:5: callers.issuer is missing (required unless allow_unauthenticated is true)"),
            format!("{f}:5: callers needs `keys` (a JWKS file with the callers' public keys) or `hs256_secret_env`"),
        ]),
        (GATEWAY.replace("callers:\n  issuer: https://auth.ohsoft.example\n  audience: partner-gateway\n  keys: certs/callers.jwks.json\n", ""), vec![format!(
            "{f}:1: no `callers` section: caller authentication is required (add `callers`, or `callers: {{allow_unauthenticated: true}}` for local development only)"
        )]),
        (format!("{GATEWAY}tls: {{}}\n"), vec![format!("{f}:12: missing field `cert`")]),
        (format!("{GATEWAY}tls: {{ cert: a.pem, key: b.pem, client_identity: san_dns }}\n"), vec![format!(
            "{f}:12: tls.client_identity needs tls.client_ca (the CA whose client certificates identify callers)"
        )]),
        (format!("{GATEWAY}tls:\n  cert: a.pem\n  key: ''\n  client_ca: ca.pem\n  client_identity: cn\n"), vec![
            format!("{f}:14: tls.key is empty"),
            format!("{f}:16: unknown tls.client_identity \"cn\" (expected san_dns)"),
        ]),
        (format!("{GATEWAY}tls: {{ cert: a.pem, key: b.pem, verify: false }}\n"), vec![format!(
            "{f}:12: unknown field `verify`, expected one of cert, key, client_ca, client_identity"
        )]),
    ];
    for (gateway, want) in cases {
        let got = errors(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None);
        assert_eq!(got, want, "{gateway}");
    }
}

#[test]
fn unauthenticated_callers_are_allowed_with_a_warning() {
    let gateway = "callers: { allow_unauthenticated: true }\nsigning: { disabled: true }\n";
    let loaded = load(&source(gateway, &[("acme-ship.yaml", CONTRACTOR)]), None).expect("loads");
    let callers = loaded.policy.gateway.callers.as_ref().unwrap();
    assert!(callers.allow_unauthenticated);
    assert!(callers.keys.is_none());
    assert_eq!(
        loaded.policy.gateway.admin_listen.to_string(),
        DEFAULT_ADMIN_LISTEN
    );
    assert!(loaded.policy.gateway.signing.is_none());
    let w: Vec<String> = loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .filter(|w| !w.contains("has no data category"))
        .collect();
    assert_eq!(w, [
        "policy/gateway.yaml:1: callers.allow_unauthenticated is true: requests without a caller token are accepted (local development only)",
        "policy/gateway.yaml:2: signing.disabled is true: forwarded requests carry no signed data-use token",
    ]);
}

#[test]
fn hs256_callers_resolve_their_secret_in_serve_mode() {
    let gateway = "callers: { issuer: i, audience: a, hs256_secret_env: CALLER_SECRET, groups_claim: groups }\nsigning: { disabled: true }\n";
    let src = source(gateway, &[]);
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let loaded = load(&src, Some(&env(&[("CALLER_SECRET", SECRET)]))).expect("loads");
    let callers = loaded.policy.gateway.callers.unwrap();
    assert_eq!(callers.hs256_secret.as_deref(), Some(SECRET.as_bytes()));
    assert_eq!(callers.groups_claim.as_deref(), Some("groups"));
    assert_eq!(errors(&src, Some(&env(&[]))), [
        "policy/gateway.yaml:1: environment variable \"CALLER_SECRET\" named by callers.hs256_secret_env is not set"
    ]);
    assert!(load(&src, None)
        .unwrap()
        .policy
        .gateway
        .callers
        .unwrap()
        .hs256_secret
        .is_none());
}

#[test]
fn a_short_hs256_secret_is_named_at_its_variable() {
    let gateway = "callers:\n  issuer: i\n  audience: a\n  hs256_secret_env: CALLER_SECRET\nsigning: { disabled: true }\n";
    let src = source(gateway, &[]);
    assert_eq!(errors(&src, Some(&env(&[("CALLER_SECRET", "short")]))), [
        "policy/gateway.yaml:4: the HS256 secret in \"CALLER_SECRET\" is 5 bytes long; at least 32 are required"
    ]);
}

#[test]
fn relative_paths_resolve_against_the_policy_directory_parent() {
    let gateway = format!("{GATEWAY}  publish: [certs/old.pub, /etc/pg/other.pub]\n");
    let cases = [
        ("policy/", "certs/data-use-signing.pem", "data/optouts"),
        ("policy", "certs/data-use-signing.pem", "data/optouts"),
        (
            "/srv/pg/policy",
            "/srv/pg/certs/data-use-signing.pem",
            "/srv/pg/data/optouts",
        ),
        (
            "deploy/policy",
            "deploy/certs/data-use-signing.pem",
            "deploy/data/optouts",
        ),
        (".", "./../certs/data-use-signing.pem", "./../data/optouts"),
    ];
    for (dir, key, optouts) in cases {
        let mut src = source(&gateway, &[]);
        src.dir = PathBuf::from(dir);
        let g = load(&src, None).expect("loads").policy.gateway;
        let signing = g.signing.unwrap();
        assert_eq!(signing.key.path, PathBuf::from(key), "{dir}");
        assert_eq!(
            g.optouts.unwrap().embedded_path(),
            Some(PathBuf::from(optouts).as_path()),
            "{dir}"
        );
        assert_eq!(signing.publish[1].path, PathBuf::from("/etc/pg/other.pub"));
    }
}

const MARKETING: &str = "\
kind: business_partner
purpose: marketing
upstream: https://api.brightmail.example
routes:
  - path: /v1/audiences
    methods: [POST]
    records: contacts[*]
    subject: customer_id
    allow:
      - contacts[*].name
      - contacts[*].email
allowed_callers: [marketing-service]
";

#[test]
fn business_partners_honour_optouts_by_default() {
    let loaded = load(
        &source(GATEWAY, &[("brightmail-offers.yaml", MARKETING)]),
        None,
    )
    .expect("loads");
    let p = &loaded.policy.partners["brightmail-offers"];
    let scopes: Vec<&str> = p.honor_optouts.iter().map(Scope::as_str).collect();
    assert_eq!(scopes, ["partner_sharing", "partner:brightmail-offers"]);
    assert_eq!(
        p.upstream,
        Upstream {
            tls: true,
            host: "api.brightmail.example".into(),
            port: 443
        }
    );
}

#[test]
fn optout_rules() {
    let f = "policy/partners/brightmail-offers.yaml";
    let no_store = GATEWAY.replace("optouts: { path: data/optouts }\n", "");
    let cases: Vec<(String, String, Vec<String>)> = vec![
        (no_store.clone(), MARKETING.to_string(), vec![format!(
            "{f}:1: this partner honours opt-outs (partner_sharing, partner:brightmail-offers) but gateway.yaml has no `optouts` store"
        )]),
        (GATEWAY.to_string(), MARKETING.replace("    records: contacts[*]\n    subject: customer_id\n", ""), vec![format!(
            "{f}:5: route \"/v1/audiences\" must name records and subject: this partner honours opt-outs, and without them the records of customers who opted out could never be dropped"
        )]),
        // honor_optouts overrides the kind's default (leaving a promised scope out only warns)
        (GATEWAY.to_string(), format!("{MARKETING}honor_optouts: [partner_sharing]\n"), vec![]),
        (GATEWAY.to_string(), format!("{MARKETING}honor_optouts: [partner_sharing, \"partner:brightmail-offers\", \"bad scope\"]\n"), vec![format!(
            "{f}:13: invalid opt-out scope \"bad scope\" (expected partner_sharing, partner:<id>, or a name of letters, digits, `_`, `-`, `.`, `:` that starts with a letter or digit and does not end in `:`)"
        )]),
        // a contractor that opts in to a scope needs the store and subjects too
        (no_store.clone(), format!("{CONTRACTOR}honor_optouts: [new_use]\n"), vec![
            "policy/partners/acme-ship.yaml:5: route \"/v1/shipments\" must name records and subject: this partner honours opt-outs, and without them the records of customers who opted out could never be dropped".to_string(),
            "policy/partners/acme-ship.yaml:15: this partner honours opt-outs (new_use) but gateway.yaml has no `optouts` store".to_string(),
        ]),
        // ... and one that honours nothing needs neither
        (no_store, CONTRACTOR.to_string(), vec![]),
    ];
    for (gateway, partner, want) in cases {
        let name = if partner.starts_with("kind: contractor") {
            "acme-ship.yaml"
        } else {
            "brightmail-offers.yaml"
        };
        let got = errors(&source(&gateway, &[(name, &partner)]), None);
        assert_eq!(got, want, "{partner}");
    }
}

#[test]
fn government_partners_get_a_legal_basis_header() {
    let gov = "kind: government\npurpose: tax-reporting\nupstream: http://127.0.0.1:9005\nroutes:\n  - path: /v1/filings\n    methods: [POST]\n    allow: [year]\nallowed_callers: [finance-service]\n";
    let p = load(&source(GATEWAY, &[("tax-authority.yaml", gov)]), None)
        .expect("loads")
        .policy
        .partners["tax-authority"]
        .legal_basis_header
        .clone();
    assert_eq!(p.as_deref(), Some(DEFAULT_LEGAL_BASIS_HEADER));
    let custom = format!("{gov}legal_basis_header: X-Legal-Basis\n");
    let p = load(&source(GATEWAY, &[("tax-authority.yaml", &custom)]), None)
        .expect("loads")
        .policy
        .partners["tax-authority"]
        .legal_basis_header
        .clone();
    assert_eq!(p.as_deref(), Some("x-legal-basis"));
    let forbidden = format!("{gov}legal_basis_header: cookie\n");
    assert_eq!(errors(&source(GATEWAY, &[("tax-authority.yaml", &forbidden)]), None), [
        "policy/partners/tax-authority.yaml:9: header \"cookie\" may never be forwarded to a partner"
    ]);
}

#[test]
fn empty_partner_lists_warn() {
    let text = "kind: contractor\npurpose: x\nupstream: http://127.0.0.1:9001\nroutes: []\n";
    assert_eq!(warnings(&source(GATEWAY, &[("quiet.yaml", text)])), [
        "policy/partners/quiet.yaml:1: no allowed_callers: every request to this partner will be refused",
        "policy/partners/quiet.yaml:4: no routes: every request to this partner will be refused",
    ]);
}

#[test]
fn compile_errors_point_at_the_path_that_caused_them() {
    let text = CONTRACTOR
        .replace("[order_id, name]", "[order_id, name, address.**]")
        .replace(
            "      customer_id: pseudonymize\n",
            "      customer_id: pseudonymize\n      address.street: mask\n",
        );
    let got = errors(&source(GATEWAY, &[("acme-ship.yaml", &text)]), None);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("policy/partners/acme-ship.yaml:10: \"address.street\": "),
        "{got:?}"
    );
}

#[test]
fn the_version_hashes_names_and_contents() {
    let a = source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)]);
    let version = |s: &PolicySource| load(s, None).expect("loads").policy.version;
    let mut moved = a.clone();
    moved.dir = PathBuf::from("/elsewhere/policy");
    moved.gateway.path = "/elsewhere/policy/gateway.yaml".into();
    moved.partners[0].path = "/elsewhere/policy/partners/acme-ship.yaml".into();
    assert_eq!(version(&a), version(&moved));
    let mut edited = a.clone();
    edited.partners[0].text.push_str("# a comment\n");
    assert_ne!(version(&a), version(&edited));
    let mut renamed = a.clone();
    renamed.partners[0].path = "policy/partners/acme-shipping.yaml".into();
    assert_ne!(version(&a), version(&renamed));
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let text = CONTRACTOR.replace(
        "    methods: [POST]\n",
        "    methods: [POST]\n    methods: [PUT]\n",
    );
    assert_eq!(
        errors(&source(GATEWAY, &[("acme-ship.yaml", &text)]), None),
        ["policy/partners/acme-ship.yaml:7: duplicate key `methods`"]
    );
}

#[test]
fn upstreams_parse() {
    let cases = [
        ("http://127.0.0.1:9001", false, "127.0.0.1", 9001),
        ("http://127.0.0.1:9001/", false, "127.0.0.1", 9001),
        (
            "https://API.Partner.example",
            true,
            "api.partner.example",
            443,
        ),
        ("http://partner.example", false, "partner.example", 80),
        ("http://partner-1.example2", false, "partner-1.example2", 80),
        ("http://example.0xford", false, "example.0xford", 80),
        ("http://[::1]:9001", false, "::1", 9001),
        ("HTTPS://[2001:db8::1]", true, "2001:db8::1", 443),
    ];
    for (text, tls, host, port) in cases {
        assert_eq!(
            parse_upstream(text),
            Ok(Upstream {
                tls,
                host: host.into(),
                port
            }),
            "{text}"
        );
    }
    for bad in [
        "http://",
        "http://a:0",
        "http://a:x",
        "http://[::1",
        "http://[zz]:1",
        "http://a b",
        "http://a#f",
        "http://a:+80",
        "http://127.0.0.1:44313:1",
        "http://::1:80",
        // IPv4 shorthand a resolver reads as an address.
        "https://127.1:9001",
        "https://2130706433",
        "http://0x7f.0.0.1",
        "http://127.000.0.1",
        "http://10.0.0.256",
        "http://10.0.0.255.",
        "http://0.0.0.0:9001",
        "http://[::]:9001",
        "http://[::ffff:0.0.0.0]:9001",
        "http://255.255.255.255",
        "http://224.0.0.1",
        "http://[ff02::1]",
        "http://a..b",
        "http://-a.example",
        "http://a-.example",
        "http://.",
    ] {
        assert!(parse_upstream(bad).is_err(), "{bad}");
    }
}

/// An upstream with a credential in it is refused, and the refusal (printed by `check`, logged
/// on reload, answered by `POST /reload`) never shows the credential.
#[test]
fn an_upstream_error_never_shows_its_user_info() {
    let f = "policy/partners/acme-ship.yaml";
    for (upstream, shown) in [
        ("https://user:S3CRET@api.partner.example", "https://***"),
        ("http://t0k:en@a@h:1/x", "http://***…"),
        (
            "https://svc:S3CRET/def+ghi=@api.partner.example",
            "https://***…",
        ),
        ("http://user:S3CRET?x@h:1", "http://***…"),
        ("http:/user:S3CRET@127.0.0.1:1", "***"),
        ("http://user:S3CRET", "http://***"),
        ("https://S3CRET@h/", "https://***…"),
        ("http://user:S3C/RETpw", "http://***…"),
        ("http://user:123456789", "http://***"),
        ("http://127.0.0.1:S3CRET:9001", "http://***"),
        (
            "https://api.partner.example/v1?api_key=S3CRET",
            "https://api.partner.example…",
        ),
    ] {
        let text = CONTRACTOR.replace(
            "upstream: http://127.0.0.1:9001",
            &format!("upstream: \"{upstream}\""),
        );
        let errors = load(&source(GATEWAY, &[("acme-ship.yaml", &text)]), None).unwrap_err();
        let all = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!all.contains("S3CRET") && !all.contains("t0k"), "{all}");
        assert!(
            all.contains(&format!("{f}:3: invalid upstream \"{shown}\"")),
            "{all}"
        );
    }
}

#[test]
fn listener_tls_loads_and_a_certificate_identity_can_replace_jwt_callers() {
    let gateway = "listen: 0.0.0.0:8443\ntls:\n  cert: certs/gw.pem\n  key: certs/gw-key.pem\n  client_ca: certs/ca.pem\n  client_identity: san_dns\nsigning: { disabled: true }\n";
    let loaded = load(&source(gateway, &[("acme-ship.yaml", CONTRACTOR)]), None).expect("loads");
    let tls = loaded.policy.gateway.tls.as_ref().unwrap();
    assert_eq!(tls.cert.path, PathBuf::from("certs/gw.pem"));
    assert_eq!((tls.cert.key, tls.cert.line), ("tls.cert", 3));
    assert_eq!(
        tls.client_ca.as_ref().unwrap().path,
        PathBuf::from("certs/ca.pem")
    );
    assert_eq!(
        tls.client_identity,
        Some(crate::policy::ClientIdentity::SanDns)
    );
    assert!(loaded.policy.gateway.callers.is_none());
    assert!(!loaded
        .warnings
        .iter()
        .any(|w| w.message.contains("not a loopback")));
}

#[test]
fn plain_http_off_loopback_is_a_warning() {
    let gateway = GATEWAY.replace("listen: 127.0.0.1:8080", "listen: 0.0.0.0:8080");
    let got = warnings(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]));
    assert!(got.contains(&"policy/gateway.yaml:1: listen 0.0.0.0:8080 is not a loopback address and there is no `tls` section: customer data would cross the network unencrypted".to_string()), "{got:#?}");
}

#[test]
fn partner_tls_mistakes() {
    let partner = |upstream: &str, tls: &str| {
        format!("kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/a\n    methods: [GET]\nallowed_callers: [a]\ntls:\n{tls}")
    };
    let f = "policy/partners/p.yaml";
    let cases = [
        (partner("http://127.0.0.1:1", "  ca: ca.pem\n"), vec![format!("{f}:9: tls is set but the upstream is http://: use an https:// upstream")]),
        (partner("https://a.example", "  client_cert: c.pem\n"), vec![format!("{f}:9: tls.client_cert needs tls.client_key")]),
        (partner("https://a.example", "  client_key: k.pem\n"), vec![format!("{f}:9: tls.client_key needs tls.client_cert")]),
        (partner("https://a.example", "  server_name: ''\n"), vec![format!("{f}:9: invalid tls.server_name \"\": expected a DNS name (letters, digits, `-` and `.`) or an IP address")]),
        // A number as the last label is no IP address as written, and no certificate names it.
        (partner("https://a.example", "  server_name: 1.2.3\n"), vec![format!("{f}:9: invalid tls.server_name \"1.2.3\": expected a DNS name (letters, digits, `-` and `.`) or an IP address")]),
        (partner("https://a.example", "  server_name: 127.0.0.01\n"), vec![format!("{f}:9: invalid tls.server_name \"127.0.0.01\": expected a DNS name (letters, digits, `-` and `.`) or an IP address")]),
        // An unknown key does not hide the file's other mistakes.
        (partner("https://a.example", "  ca: ''\n  verify: false\n"), vec![
            format!("{f}:9: tls.ca is empty"),
            format!("{f}:10: unknown field `verify`, expected one of ca, server_name, client_cert, client_key"),
        ]),
    ];
    for (text, want) in cases {
        assert_eq!(
            errors(&source(GATEWAY, &[("p.yaml", &text)]), None),
            want,
            "{text}"
        );
    }
    let text = partner(
        "https://10.0.0.7:8443",
        "  ca: certs/p-ca.pem\n  client_cert: certs/c.pem\n  client_key: certs/k.pem\n",
    );
    let loaded = load(&source(GATEWAY, &[("p.yaml", &text)]), None).expect("loads");
    let p = &loaded.policy.partners["p"];
    let tls = p.tls.as_ref().unwrap();
    assert_eq!(
        tls.ca.as_ref().unwrap().path,
        PathBuf::from("certs/p-ca.pem")
    );
    assert_eq!(tls.client_cert.as_ref().unwrap().1.key, "tls.client_key");
    assert_eq!(p.server_name(), "10.0.0.7");
    let named = partner(
        "https://10.0.0.7:8443",
        "  server_name: API.Partner.example\n",
    );
    let loaded = load(&source(GATEWAY, &[("p.yaml", &named)]), None).expect("loads");
    assert_eq!(
        loaded.policy.partners["p"].server_name(),
        "api.partner.example"
    );
}

#[test]
fn categories_are_checked_against_the_taxonomy_and_the_route() {
    let f = "policy/partners/acme-ship.yaml";
    let with = |categories: &str| {
        CONTRACTOR.replace(
            "      customer_id: pseudonymize\n",
            &format!("      customer_id: pseudonymize\n    categories:\n{categories}"),
        )
    };
    // complete: no warning, and the model carries them in allow-then-transform order
    let full = with("      order_id: system.operations\n      name: user.name\n      customer_id: user.unique_id.pseudonymous\n");
    let loaded = load(&source(GATEWAY, &[("acme-ship.yaml", &full)]), None).expect("loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let route = &loaded.policy.partners["acme-ship"].routes[0];
    let fields: Vec<(&str, Option<&str>)> = route
        .fields
        .iter()
        .map(|f| (f.path.as_str(), f.category.as_deref()))
        .collect();
    assert_eq!(
        fields,
        [
            ("order_id", Some("system.operations")),
            ("name", Some("user.name")),
            ("customer_id", Some("user.unique_id.pseudonymous")),
        ]
    );
    // an unknown name, with the nearest known ones; a path the route does not disclose
    let bad = with("      name: user.nam\n      email: user.contact.email\n");
    assert_eq!(
        errors(&source(GATEWAY, &[("acme-ship.yaml", &bad)]), None),
        [
            format!("{f}:11: unknown data category \"user.nam\" for \"name\": not a fideslang data category (nearest: user.name, user, user.contact)"),
            format!("{f}:12: categories names \"email\", which is neither an allow nor a transform path of this route (write it exactly as there)"),
        ]
    );
    // an allowed path without a category: a warning at its line
    let partial = with("      name: user.name\n      customer_id: user.unique_id.pseudonymous\n");
    let loaded = load(&source(GATEWAY, &[("acme-ship.yaml", &partial)]), None).expect("loads");
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [format!(
            "{f}:7: \"order_id\" has no data category: add it under this route's `categories:`"
        )]
    );
}

#[test]
fn optouts_in_postgres() {
    let pg = GATEWAY.replace(
        "optouts: { path: data/optouts }",
        "optouts: { postgres: { url_env: OPTOUTS_DATABASE_URL, max_staleness_s: 12 } }",
    );
    let src = source(&pg, &[("acme-ship.yaml", CONTRACTOR)]);
    let g = load(&src, None).expect("loads").policy.gateway;
    assert_eq!(
        g.optouts,
        Some(OptOutStoreConfig::Postgres(PostgresOptOuts {
            url_env: "OPTOUTS_DATABASE_URL".into(),
            table: "optouts".into(),
            max_staleness: std::time::Duration::from_secs(12),
        }))
    );
    // Serve mode needs the URL (never copied into the policy).
    let got = errors(&src, Some(&env(&[("ACME_KEY", "k"), ("ACME_TOKEN", "t")])));
    assert!(
        got.contains(&"policy/gateway.yaml:3: environment variable \"OPTOUTS_DATABASE_URL\" named by optouts.postgres.url_env is not set".to_string()),
        "{got:?}"
    );
    let f = "policy/gateway.yaml";
    let cases = [
        ("optouts: { path: a, postgres: { url_env: U } }", format!("{f}:3: optouts needs exactly one of `path` (the embedded store) and `postgres` (a shared database)")),
        ("optouts: {}", format!("{f}:3: optouts needs exactly one of `path` (the embedded store) and `postgres` (a shared database)")),
        ("optouts: { postgres: { url_env: U, table: \"Opt-Outs\" } }", format!("{f}:3: invalid optouts.postgres.table \"Opt-Outs\" (expected lowercase letters, digits and `_`, starting with a letter or `_`, at most 48 bytes)")),
        ("optouts: { postgres: { url_env: U, max_staleness_s: 0 } }", format!("{f}:3: optouts.postgres.max_staleness_s must be greater than 0")),
        ("optouts: { postgres: { url_env: U, max_staleness_s: 3601 } }", format!("{f}:3: optouts.postgres.max_staleness_s 3601 is over 3600: replicas that long out of touch with the database would still forward customers who opted out meanwhile")),
        ("optouts: { postgres: { url_env: U, table: user } }", format!("{f}:3: optouts.postgres.table \"user\" is an SQL reserved word or a PostgreSQL system name (`pg_…`): choose another name")),
        ("optouts: { postgres: { url_env: U, table: pg_type } }", format!("{f}:3: optouts.postgres.table \"pg_type\" is an SQL reserved word or a PostgreSQL system name (`pg_…`): choose another name")),
        ("optouts: { postgres: { url_env: 1U } }", format!("{f}:3: optouts.postgres.url_env must name an environment variable (letters, digits and `_`, not starting with a digit); the value is not shown in case it is the secret itself")),
        ("optouts: { postgres: { url_env: U, table: \"postgres://gw:Pw77@db/gw\" } }", format!("{f}:3: invalid optouts.postgres.table: it looks like a database URL or credential, which belongs in the environment variable `url_env` names (the value is not shown)")),
    ];
    for (section, want) in cases {
        let gateway = GATEWAY.replace("optouts: { path: data/optouts }", section);
        let got = errors(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None);
        assert_eq!(got, vec![want], "{section}");
    }
}

/// A database URL (or another credential) written where the policy expects something else is
/// refused without being quoted: the message goes to `check`, the log and `/reload` answers.
#[test]
fn a_credential_in_the_wrong_field_is_never_quoted() {
    let f = "policy/gateway.yaml";
    for section in [
        "optouts: { postgres: postgres://gw:Pw77@db.example/gw }",
        "optouts: postgres://gw:Pw77@db.example/gw",
        "optouts: { postgres: { url_env: U, max_staleness_s: postgres://gw:Pw77@db.example/gw } }",
        "optouts: { postgres: { url_env: U, table: \"postgres://gw:Pw77@db.example/gw\" } }",
        "optouts: { postgres: { url_env: U, max_staleness_s: \"host=db password=Pw77\" } }",
        "optouts: { postgres: { url_env: U, max_staleness_s: Bearer Pw77 } }",
        // A password may hold `?`, `#` or `/`; libpq allows spaces around `=`.
        "optouts: { postgres: { url_env: U, max_staleness_s: postgres://gw:Pw?77@db/gw } }",
        "optouts: { postgres: { url_env: U, max_staleness_s: postgres://gw:Pw#77@db/gw } }",
        "optouts: { postgres: { url_env: U, max_staleness_s: \"host=db password = Pw77\" } }",
        "optouts: { postgres: { url_env: U, max_staleness_s: Token Pw77 } }",
        "optouts: { postgres: { url_env: U, max_staleness_s: \"Bearer\\tPw77\" } }",
        "optouts: { postgres: { url_env: U, table: \"postgres://gw:Pw?77@db/gw\" } }",
        "optouts: { postgres: \"postgres://gw:Pw?77@db/gw\" }",
    ] {
        let gateway = GATEWAY.replace("optouts: { path: data/optouts }", section);
        let got = errors(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None);
        assert!(!got.is_empty(), "{section}");
        for error in &got {
            assert!(error.starts_with(&format!("{f}:3: ")), "{section}: {error}");
            assert!(!error.contains("Pw77"), "{section}: {error}");
        }
    }
    // Whichever rule quotes the value: the listener, a partner's kind, a key id.
    let cases = [
        (
            GATEWAY.replace("listen: 127.0.0.1:8080", "listen: postgres://gw:Pw77@db/gw"),
            CONTRACTOR.to_string(),
        ),
        (
            GATEWAY.replace("kid: data-use-1", "kid: \"Bearer Pw77\""),
            CONTRACTOR.to_string(),
        ),
        (
            GATEWAY.to_string(),
            CONTRACTOR.replace("kind: contractor", "kind: postgres://gw:Pw77@db/gw"),
        ),
    ];
    for (gateway, partner) in cases {
        let got = errors(&source(&gateway, &[("acme-ship.yaml", &partner)]), None);
        for error in &got {
            assert!(!error.contains("Pw77"), "{error}");
        }
    }
}

#[test]
fn credentials_in_quoted_parts_of_messages_are_redacted() {
    use crate::policy::file::redact_quoted_secrets as redact;
    assert_eq!(
        redact("invalid listen `postgres://u:p@h/db` (expected host:port)"),
        "invalid listen `***` (expected host:port)"
    );
    assert_eq!(
        redact(r#"invalid kid "Bearer abc" and "a\"b" and `plain`"#),
        r#"invalid kid "***" and "a\"b" and `plain`"#
    );
    // Names of variables and ordinary words stay: only values shaped like credentials go.
    for kept in [
        "`DB_PASSWORD` is not set",
        "must be 1 to 128 token characters",
        "`tokens characters`",
        "`https://example.com/a@b`",
    ] {
        let redacted = redact(kept);
        if kept.contains("://") {
            assert_eq!(redacted, "`***`", "{kept}");
        } else {
            assert_eq!(redacted, kept);
        }
    }
    assert_eq!(redact("an unclosed `quote"), "an unclosed `quote");
}

#[test]
fn signing_is_required_unless_disabled_explicitly() {
    let f = "policy/gateway.yaml";
    let without = GATEWAY.replace(
        "signing:\n  issuer: https://partner-gateway.ohsoft.example\n  key: certs/data-use-signing.pem\n  kid: data-use-1\n",
        "",
    );
    let cases: Vec<(String, Vec<String>)> = vec![
        (without.clone(), vec![format!(
            "{f}:1: no `signing` section: partners would receive no signed data-use token (add `signing` with issuer, key and kid, or `signing: {{disabled: true}}` to run without tokens explicitly)"
        )]),
        (format!("{without}signing: {{ disabled: false }}\n"), vec![
            format!("{f}:8: signing.issuer is missing (required unless disabled is true)"),
            format!("{f}:8: signing.key is missing (required unless disabled is true)"),
            format!("{f}:8: signing.kid is missing (required unless disabled is true)"),
        ]),
        (format!("{without}signing: {{ disabled: true, key: k.pem }}\n"), vec![format!(
            "{f}:8: signing.disabled is true, so signing.key has no use: remove it, or remove `disabled`"
        )]),
    ];
    for (gateway, want) in cases {
        let err = load(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap_err();
        let got: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(got, want, "{gateway}");
    }
    let disabled = format!("{without}signing: {{ disabled: true }}\n");
    let loaded = load(&source(&disabled, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap();
    assert!(loaded.policy.gateway.signing.is_none());
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.to_string() == format!("{f}:8: signing.disabled is true: forwarded requests carry no signed data-use token")));
    // A ledger then has no key to sign its checkpoints with: said at the ledger's line.
    let ledger =
        format!("{disabled}ledger: {{ path: data/ledger, subject_key_env: LEDGER_KEY }}\n");
    let loaded = load(&source(&ledger, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap();
    assert!(loaded.warnings.iter().any(|w| w.to_string()
        == format!("{f}:9: ledger with signing.disabled: checkpoints are written unsigned (`\"sig\": null`), so nothing proves who wrote the chain and `audit verify --jwks` refuses it")));
    let signed = format!("{GATEWAY}ledger: {{ path: data/ledger, subject_key_env: LEDGER_KEY }}\n");
    let loaded = load(&source(&signed, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap();
    assert!(!loaded
        .warnings
        .iter()
        .any(|w| w.to_string().contains("unsigned")));
}

#[test]
fn slow_client_limits_and_token_lifetime_have_defaults_and_refuse_zero() {
    let loaded = load(&source(GATEWAY, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap();
    let g = &loaded.policy.gateway;
    assert_eq!(g.limits, Limits::default());
    assert_eq!(g.callers.as_ref().unwrap().max_token_lifetime_s, 86_400);
    let gateway = GATEWAY.replace(
        "optouts:",
        "limits: { max_body_bytes: 1000, header_timeout_ms: 500, body_timeout_ms: 700, max_header_bytes: 4096, max_connections: 3 }\noptouts:",
    ).replace("  keys: certs/callers.jwks.json\n", "  keys: certs/callers.jwks.json\n  max_token_lifetime_s: 600\n");
    let loaded = load(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap();
    let l = loaded.policy.gateway.limits;
    assert_eq!(l.header_timeout, std::time::Duration::from_millis(500));
    assert_eq!(l.body_timeout, std::time::Duration::from_millis(700));
    assert_eq!((l.max_header_bytes, l.max_connections), (4096, 3));
    assert_eq!(l.max_decoded_bytes, 1000, "defaults to max_body_bytes");
    assert_eq!(
        loaded
            .policy
            .gateway
            .callers
            .as_ref()
            .unwrap()
            .max_token_lifetime_s,
        600
    );
    for zero in [
        "header_timeout_ms",
        "body_timeout_ms",
        "max_header_bytes",
        "max_connections",
        "max_decoded_bytes",
    ] {
        let gateway = GATEWAY.replace("optouts:", &format!("limits: {{ {zero}: 0 }}\noptouts:"));
        let err = load(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            format!("policy/gateway.yaml:3: limits.{zero} must be greater than 0")
        );
    }
}

/// The warnings of a policy that loads, those that say `needle`.
fn warnings_saying(src: &PolicySource, env: Option<&dyn Env>, needle: &str) -> Vec<String> {
    let loaded = load(src, env).expect("loads");
    loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .filter(|w| w.contains(needle))
        .collect()
}

#[test]
fn two_partners_sharing_a_pseudonymisation_key_are_warned_about() {
    let shared = |src: &PolicySource, env: Option<&dyn Env>| warnings_saying(src, env, "same key");
    let other = CONTRACTOR.replace("ACME_KEY", "OTHER_KEY");
    let one = [("acme-ship.yaml", CONTRACTOR), ("b-ship.yaml", CONTRACTOR)];
    assert_eq!(
        shared(&source(GATEWAY, &one), None),
        vec!["policy/partners/b-ship.yaml:13: partner \"acme-ship\" pseudonymises with the same key (the same variable): each partner needs its own, or the two can link their pseudonyms"]
    );
    // Two variables holding the same key: only seen where the secrets are read.
    let two = [
        ("acme-ship.yaml", CONTRACTOR),
        ("b-ship.yaml", other.as_str()),
    ];
    assert!(shared(&source(GATEWAY, &two), None).is_empty());
    let key = "k".repeat(32);
    let secrets = |b: &str| {
        env(&[
            ("ACME_KEY", key.as_str()),
            ("OTHER_KEY", b),
            ("ACME_TOKEN", "t"),
        ])
    };
    let same = secrets(&key);
    assert_eq!(
        shared(&source(GATEWAY, &two), Some(&same)),
        vec!["policy/partners/b-ship.yaml:13: partner \"acme-ship\" pseudonymises with the same key (the same value): each partner needs its own, or the two can link their pseudonyms"]
    );
    let differ = secrets(&"j".repeat(32));
    assert!(shared(&source(GATEWAY, &two), Some(&differ)).is_empty());
}

#[test]
fn two_partners_sent_one_credential_are_warned_about() {
    let shared =
        |src: &PolicySource, env: Option<&dyn Env>| warnings_saying(src, env, "same credential");
    let one = [("acme-ship.yaml", CONTRACTOR), ("b-ship.yaml", CONTRACTOR)];
    assert_eq!(
        shared(&source(GATEWAY, &one), None),
        vec!["policy/partners/b-ship.yaml:14: partner \"acme-ship\" is sent the same credential (the same variable): each partner would hold the other's API credential"]
    );
    let other = CONTRACTOR.replace("env: ACME_TOKEN", "env: OTHER_TOKEN");
    let two = [
        ("acme-ship.yaml", CONTRACTOR),
        ("b-ship.yaml", other.as_str()),
    ];
    assert!(shared(&source(GATEWAY, &two), None).is_empty());
    let key = "k".repeat(32);
    let secrets = |b: &str| {
        env(&[
            ("ACME_KEY", key.as_str()),
            ("ACME_TOKEN", "t-1"),
            ("OTHER_TOKEN", b),
        ])
    };
    assert_eq!(
        shared(&source(GATEWAY, &two), Some(&secrets("t-1"))),
        vec!["policy/partners/b-ship.yaml:14: partner \"acme-ship\" is sent the same credential (the same value): each partner would hold the other's API credential"]
    );
    assert!(shared(&source(GATEWAY, &two), Some(&secrets("t-2"))).is_empty());
}

/// A partner's credential or key read from the variable of another kind of secret (its own
/// key, the gateway's admin token, another partner's key) is warned about at its line.
#[test]
fn a_secret_of_another_kind_as_a_partners_credential_is_warned_about() {
    let reused = |gateway: &str, partner: &str| {
        warnings_saying(
            &source(gateway, &[("acme-ship.yaml", partner)]),
            None,
            "comes from",
        )
    };
    let own_key = CONTRACTOR.replace("env: ACME_TOKEN", "env: ACME_KEY");
    assert_eq!(
        reused(GATEWAY, &own_key),
        vec!["policy/partners/acme-ship.yaml:14: this partner's API credential comes from the same variable as acme-ship's pseudonymisation key: a secret sent or used here would be that one too; give each secret a variable of its own"]
    );
    let admin = CONTRACTOR.replace("env: ACME_TOKEN", "env: ADMIN_TOKEN");
    let gateway = format!("{GATEWAY}admin_token_env: ADMIN_TOKEN\n");
    let warnings = reused(&gateway, &admin);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("the gateway's admin token"),
        "{warnings:?}"
    );
    assert!(reused(&gateway, CONTRACTOR).is_empty());
}

/// A path both allowed and transformed is two entries of the route's fields (indexed like the
/// filter's counts), but one disclosed field: counted once per value, not twice.
#[test]
fn a_path_allowed_and_transformed_is_disclosed_once() {
    let partner = "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9\nroutes:\n  - path: /r\n    methods: [POST]\n    allow: [\"a[*]\", b]\n    transform: {\"a[*]\": mask}\n";
    let loaded = load(&source(GATEWAY, &[("x.yaml", partner)]), None).expect("loads");
    let route = &loaded.policy.partners["x"].routes[0];
    let paths: Vec<&str> = route.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a[*]", "b", "a[*]"]);
    let matched = [3, 1, 3];
    let once: Vec<(&str, u64)> = route
        .matched_fields(&matched)
        .map(|(f, n)| (f.path.as_str(), n))
        .collect();
    assert_eq!(once, [("a[*]", 3), ("b", 1)]);
    assert_eq!(
        route.disclosed_by_category(&matched),
        [("uncategorized", 4)]
    );
}

/// The header the partner's credential travels in is never relayed back to callers, so a
/// route may not list it in `response_headers` (it would be stripped anyway).
#[test]
fn the_credential_header_is_no_answer_header() {
    let f = "policy/partners/acme-ship.yaml";
    let text = CONTRACTOR
        .replace("header: authorization", "header: x-api-key")
        .replace(
            "    methods: [GET]\n",
            "    methods: [GET]\n    response_headers: [X-Api-Key]\n",
        );
    let errors = load(&source(GATEWAY, &[("acme-ship.yaml", &text)]), None).unwrap_err();
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        all,
        [format!("{f}:12: answer header \"X-Api-Key\" is never relayed to callers (credentials, cookies, challenges and framing stay with the partner)")]
    );
}

/// Key material pasted where a key or certificate file's path belongs (a PEM block, or its
/// base64 body) is refused, and never quoted in the message.
#[test]
fn key_material_given_as_a_path_is_refused_unquoted() {
    let f = "policy/gateway.yaml";
    let body = "MC4CAQAwBQYDK2VwBCIEIAYTNOJ4U97siBoL8IxCc4tpssaB1BfqDGrWOmXzcrBK";
    let gateway = GATEWAY
        .replace(
            "keys: certs/callers.jwks.json",
            &format!("keys: \"-----BEGIN PUBLIC KEY-----\\n{body}\""),
        )
        .replace("key: certs/data-use-signing.pem", &format!("key: {body}"))
        + "tls:\n  cert: certs/gateway.pem\n  key: \"-----BEGIN PRIVATE KEY-----\"\n";
    let errors = load(&source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]), None).unwrap_err();
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .all(|e| !e.contains("MC4C") && !e.contains("BEGIN")),
        "{all:?}"
    );
    for (n, key) in [(7, "callers.keys"), (10, "signing.key"), (14, "tls.key")] {
        let want = format!(
            "{f}:{n}: {key} holds key material, not the path of a file; the value is not shown"
        );
        assert!(all.contains(&want), "{want}: {all:?}");
    }
    // The base64 of a whole PEM file (a Kubernetes secret's form), a body with `\n` written
    // out, and a raw seed are key material too.
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAYTNOJ4U97siBoL8IxCc4tpssaB1BfqDGrWOmXzcrBK\n-----END PRIVATE KEY-----\n";
    use base64::Engine as _;
    let of_pem = base64::engine::general_purpose::STANDARD.encode(pem);
    for material in [
        of_pem.as_str(),
        "MC4CAQAwBQYDK2VwBCIE\\nIAYTNOJ4U97siBoL8IxCc4tpssaB1BfqDGrWOmXzcrBK",
        "q3Z0Ik9bXc1pQ8lT2xV7rD4sF6gH9jK0mN5oP1aB2cE=",
    ] {
        assert!(super::looks_like_key_material(material), "{material}");
    }
    // A path is a path, with or without an extension.
    for path in [
        "certs/data-use-signing.pem",
        "keys/signing",
        "data-use-signing-key-file-of-2026.pem",
        "/run/secrets/partnergatewaysigningkeyforproduction",
        "Mykeys/signingkeyforproductionuse2026abcdefgh",
        "MAST/key",
        "odd dir/PRIVATE KEY.pem",
    ] {
        assert!(!super::looks_like_key_material(path), "{path}");
    }
}

/// A secret pasted where a variable's name belongs is often a valid name too: it is never
/// repeated (not set, empty), and `check` warns that it does not read like a name.
#[test]
fn a_secret_given_as_a_variable_name_is_never_repeated() {
    let secret = "d41f0c7a9be1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5d4f6";
    let gateway = GATEWAY.replace(
        "optouts: { path: data/optouts }",
        &format!("optouts: {{ postgres: {{ url_env: {secret} }} }}"),
    );
    let src = source(&gateway, &[("acme-ship.yaml", CONTRACTOR)]);
    let got = errors(&src, Some(&env(&[("ACME_KEY", "k"), ("ACME_TOKEN", "t")])));
    let all = format!("{got:?} {:?}", warnings(&src));
    assert!(!all.contains(secret) && !all.contains("d41f0c7a"), "{all}");
    assert!(
        got.contains(&"policy/gateway.yaml:3: the environment variable (its name is not shown: it looks like a secret, not a variable name) named by optouts.postgres.url_env is not set".to_string()),
        "{got:?}"
    );
    assert!(
        warnings(&src).iter().any(|w| w.starts_with(
            "policy/gateway.yaml:3: optouts.postgres.url_env does not read like the name of an environment variable"
        )),
        "{:?}",
        warnings(&src)
    );
    for plain in [
        "OPTOUTS_DATABASE_URL",
        "PARTNER_GATEWAY_ADMIN_TOKEN",
        "PG15_URL",
    ] {
        assert_eq!(
            env_variable(plain),
            format!("environment variable {plain:?}")
        );
    }
    for secret in [
        "sk_live_51Habc",
        "SK_LIVE_51HABCDEF9876",
        "D41F0C7A9BE1C2D3E4F5A6B7C8D9E0F1",
        "AKIAIOSFODNN7EXAMPLE",
        "JBSWY3DPEHPK3PXP",
    ] {
        assert!(!env_variable(secret).contains(secret), "{secret}");
    }
}
