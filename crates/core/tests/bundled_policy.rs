//! The bundled `policy/` passes `check`, and each sample request in `policy/examples/` reaches
//! a route of its partner and filters to what the privacy policy allows.
mod util;

use std::collections::HashMap;
use std::path::PathBuf;

use gateway_core::filter::{filter, FilterOptions, OptOutLookup};
use gateway_core::policy::{self, normalize_path, Env, PartnerKind, RouteMatch};
use serde::Deserialize;

#[test]
fn bundled_policy_passes_check_without_environment() {
    let source = util::read_policy("policy/");
    let loaded = policy::load(&source, None).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("bundled policy has errors:\n{}", lines.join("\n"))
    });
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let policy = loaded.policy;
    let ids: Vec<&str> = policy.partners.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "acme-ship",
            "brightmail-offers",
            "fixit-support",
            "payflow",
            "tax-authority"
        ]
    );
    assert_eq!(policy.gateway.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(policy.gateway.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(
        policy.gateway.optouts.as_ref().unwrap().embedded_path(),
        Some(PathBuf::from("data/optouts").as_path())
    );
    let signing = policy.gateway.signing.as_ref().unwrap();
    assert_eq!(signing.key, PathBuf::from("certs/data-use-signing.pem"));
    assert!(
        util::workspace().join(&signing.key).is_file(),
        "signing key file exists"
    );
    let callers = policy.gateway.callers.as_ref().unwrap();
    assert!(
        util::workspace().join(&callers.keys).is_file(),
        "callers JWKS exists"
    );
    assert!(!callers.allow_unauthenticated);

    let kinds: Vec<PartnerKind> = policy.partners.values().map(|p| p.kind).collect();
    use PartnerKind::*;
    assert_eq!(
        kinds,
        [
            Contractor,
            BusinessPartner,
            Contractor,
            Contractor,
            Government
        ]
    );
    let brightmail = &policy.partners["brightmail-offers"];
    let scopes: Vec<&str> = brightmail
        .honor_optouts
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(scopes, ["partner_sharing", "partner:brightmail-offers"]);
    assert_eq!(
        policy.partners["tax-authority"]
            .legal_basis_header
            .as_deref(),
        Some("ohsoft-legal-basis")
    );
}

/// Every variable the bundled policy names, with values good enough for a test.
struct FakeEnv;

impl Env for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        Some(format!("test-value-for-{name}-0123456789abcdef"))
    }
}

#[test]
fn bundled_policy_resolves_its_secrets_in_serve_mode() {
    let source = util::read_policy("policy/");
    let loaded = policy::load(&source, Some(&FakeEnv)).expect("loads");
    for partner in loaded.policy.partners.values() {
        assert!(
            partner.upstream_auth.is_some(),
            "{} has a credential",
            partner.id
        );
    }
    let empty: HashMap<String, String> = HashMap::new();
    let errors = policy::load(&source, Some(&empty)).expect_err("secrets are missing");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    // two pseudonymisation keys and five partner credentials, each named with its line
    assert_eq!(messages.len(), 7, "{messages:#?}");
    assert!(
        messages.iter().all(|m| m.ends_with("is not set")),
        "{messages:#?}"
    );
    assert!(messages.contains(
        &"policy/partners/acme-ship.yaml:24: environment variable \"ACME_SHIP_PSEUDONYM_KEY\" named by pseudonymize_key_env is not set".to_string()
    ), "{messages:#?}");
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    partner: String,
    method: String,
    path: String,
    body: Option<String>,
    caller: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
}

struct OptedOut(&'static str);

impl OptOutLookup for OptedOut {
    fn is_opted_out(&self, subject: &str) -> bool {
        subject == self.0
    }
}

#[test]
fn every_sample_request_reaches_a_route_and_filters_as_the_privacy_policy_says() {
    let root = util::workspace().join("policy/examples");
    let manifest = std::fs::read_to_string(root.join("requests.yaml")).unwrap();
    let samples: Vec<Sample> = serde_saphyr::from_str(&manifest).unwrap();
    let policy = policy::load(&util::read_policy("policy/"), Some(&FakeEnv))
        .expect("loads")
        .policy;

    let mut routes_covered = std::collections::BTreeSet::new();
    for sample in &samples {
        let partner = &policy.partners[&sample.partner];
        let raw_path = sample.path.split('?').next().unwrap();
        let path = normalize_path(raw_path).unwrap();
        let route = match partner.match_route(&path, &sample.method) {
            RouteMatch::Found(route) => route,
            other => panic!(
                "{} {} {}: {other:?}",
                sample.partner, sample.method, sample.path
            ),
        };
        routes_covered.insert((sample.partner.clone(), route.template.clone()));
        let caller = sample.caller.as_deref().unwrap();
        assert!(
            partner.allowed_callers.iter().any(|c| c == caller),
            "{caller} may use {}",
            sample.partner
        );
        for name in sample.headers.keys() {
            let allowed =
                route.headers.contains(name) || partner.legal_basis_header.as_ref() == Some(name);
            assert!(allowed, "{}: header {name} passes", sample.partner);
        }
        if let Some(header) = &partner.legal_basis_header {
            assert!(
                sample.headers.contains_key(header),
                "{} carries its legal basis",
                sample.partner
            );
        }

        let Some(file) = &sample.body else {
            assert!(
                route.filter.is_none(),
                "{}: a bodyless sample for a body route",
                sample.partner
            );
            continue;
        };
        let body = std::fs::read(root.join(file)).unwrap();
        let program = route.filter.as_ref().expect("a body route");
        let honours = !partner.honor_optouts.is_empty();
        let optouts = OptedOut("c-1002");
        let options = FilterOptions {
            max_depth: policy.gateway.limits.max_depth,
            pseudonymize_key: partner.pseudonymize_key.as_deref(),
            optouts: honours.then_some(&optouts as &dyn OptOutLookup),
            detail: false,
        };
        let filtered = filter(program, &body, &options).unwrap_or_else(|r| panic!("{file}: {r:?}"));
        let out = String::from_utf8(filtered.body).unwrap();
        for secret in [
            "4111 1111 1111 1111",
            "5500 0000 0000 0004",
            "203.0.113.7",
            "198.51.100.23",
            "192.0.2.44",
            "Mozilla",
            "737",
        ] {
            assert!(
                !out.contains(secret),
                "{file}: {secret:?} leaked into {out}"
            );
        }
        assert!(
            !out.contains("\"c-100"),
            "{file}: OhSoft's customer id leaked into {out}"
        );
        if sample.partner == "brightmail-offers" {
            assert_eq!(filtered.report.records_dropped, 1, "{out}");
            assert_eq!(filtered.report.records_forwarded, 2, "{out}");
            assert!(!out.contains("Chidi"), "{out}");
        }
        if sample.partner == "payflow" {
            assert!(out.contains("1111"), "last4 keeps the last digits: {out}");
        }
    }
    // one sample per route
    let all_routes: Vec<(String, String)> = policy
        .partners
        .values()
        .flat_map(|p| p.routes.iter().map(|r| (p.id.clone(), r.template.clone())))
        .collect();
    assert_eq!(routes_covered.into_iter().collect::<Vec<_>>(), all_routes);
}
