//! The bundled `policy/` passes `check`, and its policy tests (`policy/tests/`) pass and cover
//! every route.
mod util;

use std::collections::HashMap;
use std::path::PathBuf;

use gateway_core::policy::{self, normalize_path, Env, PartnerKind, RouteMatch};
use gateway_core::policytest;

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
    assert_eq!(
        signing.key.path,
        PathBuf::from("certs/data-use-signing.pem")
    );
    assert!(
        util::workspace().join(&signing.key.path).is_file(),
        "signing key file exists"
    );
    let callers = policy.gateway.callers.as_ref().unwrap();
    assert!(
        util::workspace()
            .join(&callers.keys.as_ref().unwrap().path)
            .is_file(),
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
        &"policy/partners/acme-ship.yaml:31: environment variable \"ACME_SHIP_PSEUDONYM_KEY\" named by pseudonymize_key_env is not set".to_string()
    ), "{messages:#?}");
}

/// The bundled policy's own tests (`policy/tests/*.yaml`, what ops run with `partner-gateway
/// test`) pass, and every route of every partner has at least one case that is forwarded.
#[test]
fn bundled_policy_tests_pass_and_cover_every_route() {
    let mut policy = policy::load(&util::read_policy("policy/"), None)
        .expect("loads")
        .policy;
    for (id, partner) in policy.partners.iter_mut() {
        let partner = std::sync::Arc::get_mut(partner).unwrap();
        if partner.pseudonymize_key_env.is_some() {
            partner.pseudonymize_key = Some(policytest::test_pseudonymize_key(id));
        }
    }
    let dir = util::workspace().join("policy/tests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let cases =
            policytest::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| e.to_string());
        for case in &cases {
            if let Err(f) = policytest::run_case(&policy, case, &read) {
                failures.push(format!(
                    "{}:{}: {} {:?}",
                    file.display(),
                    f.line,
                    f.message,
                    f.diff
                ));
            }
            if matches!(case.expect, Some(policytest::Expect::Forwarded { .. })) {
                let partner = &policy.partners[&case.partner];
                let path = normalize_path(case.path.split('?').next().unwrap()).unwrap();
                if let RouteMatch::Found(route) = partner.match_route(&path, &case.method) {
                    covered.insert((case.partner.clone(), route.template.clone()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let all_routes: Vec<(String, String)> = policy
        .partners
        .values()
        .flat_map(|p| p.routes.iter().map(|r| (p.id.clone(), r.template.clone())))
        .collect();
    assert_eq!(covered.into_iter().collect::<Vec<_>>(), all_routes);
}

#[test]
fn bundled_policy_categorises_every_field() {
    let source = util::read_policy("policy/");
    let loaded = policy::load(&source, None).expect("bundled policy is valid");
    for partner in loaded.policy.partners.values() {
        for route in &partner.routes {
            for field in &route.fields {
                assert!(
                    field.category.is_some(),
                    "{} {} {} has no category",
                    partner.id,
                    route.template,
                    field.path
                );
            }
        }
    }
}
