//! `check` warns about record members passed through a wildcard on partners that honour
//! opt-outs.
use super::*;

const GATEWAY: &str = "\
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
optouts: { path: data/optouts }
callers:
  allow_unauthenticated: true
signing: { disabled: true }
";

fn partner(kind: &str, allow: &str) -> String {
    format!(
        "kind: {kind}\npurpose: marketing\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/audiences\n    methods: [POST]\n    records: contacts[*]\n    subject: customer_id\n    allow:\n      - campaign\n      - \"{allow}\"\nallowed_callers: [marketing-service]\n"
    )
}

fn warnings(partner: &str) -> Vec<String> {
    let source = source(GATEWAY, &[("p.yaml", partner)]);
    match load(&source, None) {
        Ok(loaded) => loaded
            .warnings
            .iter()
            .map(ToString::to_string)
            .filter(|w| w.contains("wildcard"))
            .collect(),
        Err(diags) => panic!("unexpected errors: {diags:#?}"),
    }
}

#[test]
fn wildcard_record_paths_on_opt_out_partners_warn() {
    for allow in ["contacts[*].*", "contacts[*].**"] {
        let got = warnings(&partner("business_partner", allow));
        assert_eq!(got.len(), 1, "{allow}: {got:?}");
        assert!(
            got[0].starts_with(&format!(
                "policy/partners/p.yaml:11: {allow:?} passes record members through a wildcard"
            )),
            "{got:?}"
        );
    }
    for allow in [
        "contacts[*].name",
        "contacts[*].address.**",
        "contacts[*].tags.*",
    ] {
        assert_eq!(
            warnings(&partner("business_partner", allow)),
            Vec::<String>::new(),
            "{allow}"
        );
    }
    // A contractor honours no opt-outs: nothing to warn about.
    assert!(warnings(&partner("contractor", "contacts[*].*")).is_empty());
}
