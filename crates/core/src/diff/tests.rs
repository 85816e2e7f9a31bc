use super::*;
use crate::policy::{load, PolicySource, SourceFile};

const GATEWAY: &str = "optouts: { path: data/optouts }\ncallers: { issuer: i, audience: a, keys: k.json }\nsigning: { issuer: i, key: k.pem, kid: k }\n";

/// A policy with one partner `acme` whose file is `partner`.
fn policy(partner: &str) -> Policy {
    policy_with(GATEWAY, partner)
}

/// [`policy`] with `gateway` as its gateway.yaml.
fn policy_with(gateway: &str, partner: &str) -> Policy {
    crate::policy::load::one_partner(gateway, partner.to_string(), None)
}

fn contractor(allow: &str, transform: &str, callers: &str) -> String {
    format!(
        "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [{allow}]\n    transform: {{{transform}}}\nallowed_callers: [{callers}]\n"
    )
}

fn texts(d: &PolicyDiff) -> Vec<String> {
    d.changes.iter().map(|c| c.text.clone()).collect()
}

#[test]
fn a_newly_allowed_field_starts_being_sent() {
    let old = policy(&contractor("order_id", "", "orders"));
    let new = policy(&contractor(
        "order_id, \"shipments[*].email\"",
        "",
        "orders",
    ));
    let d = diff(&old, &new);
    assert!(d.discloses_more);
    assert_eq!(
        texts(&d),
        ["acme will START receiving shipments[*].email in clear on POST /v1/shipments"]
    );
    assert_eq!(d.changes[0].change, "field_started");
    assert!(
        !diff(&new, &old).discloses_more,
        "the way back discloses less"
    );
    assert_eq!(diff(&new, &old).changes[0].change, "field_stopped");
}

#[test]
fn mask_to_clear_discloses_more() {
    let old = policy(&contractor("order_id", "name: mask", "orders"));
    let new = policy(&contractor("order_id, name", "", "orders"));
    let d = diff(&old, &new);
    assert!(d.discloses_more);
    assert_eq!(
        texts(&d),
        ["acme will receive name in clear instead of masked (mask) on POST /v1/shipments"]
    );
    assert_eq!(d.changes[0].change, "transform_changed");
    assert!(!diff(&new, &old).discloses_more);
}

/// Transformed members folded into a `.**` subtree are sent in clear: the report names each
/// one's transform as it was.
#[test]
fn folding_transformed_members_into_a_subtree_names_their_transforms() {
    let old = policy(&contractor(
        "order_id",
        "reporter.name: mask, reporter.email: last4",
        "orders",
    ));
    let new = policy(&contractor("order_id, reporter.**", "", "orders"));
    let d = diff(&old, &new);
    assert!(d.discloses_more);
    assert_eq!(
        texts(&d),
        ["acme will receive reporter.** in clear, with everything beneath it instead of only in part (reporter.email: last4, reporter.name: mask) on POST /v1/shipments"]
    );
}

#[test]
fn widening_to_a_subtree_discloses_more() {
    let old = policy(&contractor("address.street, address.city", "", "orders"));
    let new = policy(&contractor("address.**", "", "orders"));
    let d = diff(&old, &new);
    assert!(d.discloses_more);
    assert_eq!(
        texts(&d),
        ["acme will receive address.** in clear, with everything beneath it instead of only in part (address.city, address.street) on POST /v1/shipments"]
    );
    // the same fields, written differently, are no change at all
    let same = policy(&contractor("address.**, address.city", "", "orders"));
    assert!(
        diff(&new, &same).changes.is_empty(),
        "{:?}",
        diff(&new, &same)
    );
}

#[test]
fn a_new_caller_discloses_more() {
    let old = policy(&contractor("order_id", "", "orders"));
    let new = policy(&contractor("order_id", "", "orders, marketing"));
    let d = diff(&old, &new);
    assert!(d.discloses_more);
    assert_eq!(texts(&d), ["caller marketing will be able to send to acme"]);
    assert!(!diff(&new, &old).discloses_more);
}

fn business(honor: &str) -> String {
    format!(
        "kind: business_partner\npurpose: marketing\nupstream: http://127.0.0.1:9004\nroutes:\n  - path: /v1/audiences\n    methods: [POST]\n    records: contacts[*]\n    subject: customer_id\n    allow: [\"contacts[*].email\"]\nallowed_callers: [marketing]\n{honor}"
    )
}

#[test]
fn a_dropped_opt_out_scope_discloses_more() {
    let old = policy(&business(""));
    let new = policy(&business("honor_optouts: [partner_sharing]\n"));
    let d = diff(&old, &new);
    assert!(d.discloses_more, "{d:?}");
    assert_eq!(d.changes[0].change, "optout_scope_dropped");
    assert_eq!(
        texts(&d),
        ["acme will NO LONGER honour the opt-out scope partner:acme: records of customers who opted out of it START being sent"]
    );
    let back = diff(&new, &old);
    assert!(!back.discloses_more);
    assert_eq!(back.changes[0].change, "optout_scope_added");
}

/// A new records path or subject where opt-outs apply may let opted-out records through: more.
/// Where none apply it only changes what is counted and whom the ledger names: a change that
/// discloses nothing new, listed all the same (not "no change").
#[test]
fn a_changed_subject_is_listed_and_discloses_more_only_where_opt_outs_apply() {
    let honours = policy(&business(""));
    let moved = business("").replace("subject: customer_id", "subject: email");
    let d = diff(&honours, &policy(&moved));
    assert!(d.discloses_more, "{d:?}");
    assert_eq!(d.changes[0].change, "records_changed");
    let none = "honor_optouts: []\n";
    let d = diff(&policy(&business(none)), &policy(&format!("{moved}{none}")));
    assert!(!d.discloses_more, "{d:?}");
    assert_eq!(d.changes[0].change, "records_changed");
    assert_eq!(
        texts(&d),
        ["acme will have records counted and customers named in the ledger by records contacts[*], subject email instead of records contacts[*], subject customer_id on POST /v1/audiences (it honours no opt-outs)"]
    );
    assert!(!d.to_text().contains("no change"), "{}", d.to_text());
}

#[test]
fn a_removed_route_discloses_nothing_new() {
    let two = "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [order_id]\n  - path: /v1/returns\n    methods: [POST]\n    allow: [order_id, reason]\nallowed_callers: [orders]\n";
    let old = policy(two);
    let new = policy(&contractor("order_id", "", "orders"));
    let d = diff(&old, &new);
    assert!(!d.discloses_more, "{d:?}");
    assert_eq!(
        texts(&d),
        ["acme will STOP receiving anything on POST /v1/returns (route removed)"]
    );
    let back = diff(&new, &old);
    assert!(back.discloses_more);
    assert_eq!(
        texts(&back),
        [
            "acme will be reachable on the NEW route POST /v1/returns",
            "acme will START receiving order_id in clear on POST /v1/returns",
            "acme will START receiving reason in clear on POST /v1/returns",
        ]
    );
}

#[test]
fn an_unchanged_policy_has_no_changes() {
    let p = contractor("order_id, address.**", "name: mask", "orders");
    let d = diff(&policy(&p), &policy(&p));
    assert_eq!(d, PolicyDiff::default());
    assert!(d.to_text().contains("no change"));
}

#[test]
fn a_field_is_named_with_its_data_category() {
    let route = |allow: &str, categories: &str| {
        format!(
            "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [{allow}]\n    categories: {{{categories}}}\nallowed_callers: [orders]\n"
        )
    };
    let old = policy(&route(
        "order_id, \"shipments[*].address.**\"",
        "\"shipments[*].address.**\": user.contact.address",
    ));
    let new = policy(&route(
        "order_id, \"shipments[*].email\", \"shipments[*].address.**\"",
        "\"shipments[*].email\": user.contact.email, \"shipments[*].address.**\": user.contact.address",
    ));
    let d = diff(&old, &new);
    assert_eq!(
        texts(&d),
        ["acme will START receiving shipments[*].email (user.contact.email) in clear on POST /v1/shipments"]
    );
    assert_eq!(d.changes[0].category.as_deref(), Some("user.contact.email"));
    // A field that stops keeps the category the policy in force gave it.
    let back = diff(&new, &old);
    assert_eq!(
        texts(&back),
        ["acme will STOP receiving shipments[*].email (user.contact.email) (was in clear) on POST /v1/shipments"]
    );
    // A field beneath a `.**` path has that path's category.
    let narrowed = policy(&route(
        "order_id, \"shipments[*].address.city\"",
        "\"shipments[*].address.city\": user.contact.address.city",
    ));
    let d = diff(&narrowed, &old);
    assert!(d.changes.iter().all(|c| c.category.is_some()), "{d:#?}");
}

#[test]
fn a_changed_category_and_a_renamed_legal_basis_header_need_sign_off() {
    let partner = |category: &str, header: &str| {
        format!(
            "kind: government\npurpose: tax\nupstream: http://127.0.0.1:9001\nlegal_basis_header: {header}\nroutes:\n  - path: /v1/filings\n    methods: [POST]\n    allow: [name, id]\n    categories: {{name: {category}, id: user.unique_id}}\nallowed_callers: [orders]\n"
        )
    };
    let old = policy(&partner("user.name", "ohsoft-legal-basis"));

    let new = policy(&partner("user.contact.email", "ohsoft-legal-basis"));
    let d = diff(&old, &new);
    assert!(d.discloses_more, "{d:#?}");
    assert_eq!(d.changes.len(), 1, "{d:#?}");
    let c = &d.changes[0];
    assert_eq!(c.change, "category_changed");
    assert_eq!(c.subject.as_deref(), Some("name"));
    assert_eq!(c.before.as_deref(), Some("user.name"));
    assert_eq!(c.after.as_deref(), Some("user.contact.email"));

    let new = policy(&partner("user.name", "x-case-ref"));
    let d = diff(&old, &new);
    assert!(d.discloses_more, "{d:#?}");
    assert_eq!(d.changes[0].change, "legal_basis_changed");
    assert!(diff(&old, &old).changes.is_empty());
}

#[test]
fn a_category_change_is_found_when_the_path_is_rewritten() {
    let route = |allow: &str, categories: &str| {
        format!(
            "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [{allow}]\n    categories: {{{categories}}}\nallowed_callers: [orders]\n"
        )
    };
    let old = policy(&route("address.**", "address.**: user.contact.address"));
    let new = policy(&route(
        "address.street, address.city",
        "address.street: user.financial.bank_account, address.city: user.contact.address",
    ));
    let d = diff(&old, &new);
    assert!(d.discloses_more, "{d:#?}");
    let changed: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.change == "category_changed")
        .collect();
    assert_eq!(changed.len(), 1, "{d:#?}");
    assert_eq!(changed[0].subject.as_deref(), Some("address.street"));
    assert_eq!(
        changed[0].after.as_deref(),
        Some("user.financial.bank_account")
    );
}

#[test]
fn a_star_path_with_the_same_category_is_no_category_change() {
    let route = |allow: &str, categories: &str| {
        format!(
            "kind: contractor\npurpose: support\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/tickets\n    methods: [POST]\n    allow: [{allow}]\n    categories: {{{categories}}}\nallowed_callers: [orders]\n"
        )
    };
    let named = policy(&route(
        "\"software[*].name\", \"software[*].version\"",
        "\"software[*].name\": user.device, \"software[*].version\": user.device",
    ));
    let star = policy(&route(
        "\"software[*].*\"",
        "\"software[*].*\": user.device",
    ));
    // Widening to every member is a new disclosure; the members sent before keep their
    // category, so no category change is reported either way.
    for (old, new) in [(&named, &star), (&star, &named)] {
        let d = diff(old, new);
        assert!(
            d.changes.iter().all(|c| c.change != "category_changed"),
            "{d:#?}"
        );
    }
    assert!(
        !diff(&star, &named).discloses_more,
        "{:#?}",
        diff(&star, &named)
    );
    // A `*` path with another category than the named members had is a change.
    let other = policy(&route(
        "\"software[*].*\"",
        "\"software[*].*\": user.contact.email",
    ));
    let d = diff(&named, &other);
    assert!(
        d.changes
            .iter()
            .any(|c| c.change == "category_changed"
                && c.subject.as_deref() == Some("software[*].name")),
        "{d:#?}"
    );
}

#[test]
fn a_change_of_whom_the_gateway_trusts_as_the_partner_needs_sign_off() {
    let partner = |tls: &str| {
        format!(
            "kind: contractor\npurpose: shipping\nupstream: https://api.acme.example\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [order_id]\nallowed_callers: [orders]\n{tls}"
        )
    };
    let pinned = policy(&partner("tls: { ca: certs/acme-ca.pem }\n"));
    let cases = [
        ("tls: { ca: certs/other-ca.pem }\n", "CA"),
        ("", "the system's roots"),
        (
            "tls: { ca: certs/acme-ca.pem, server_name: api.evil.example }\n",
            "api.evil.example",
        ),
    ];
    for (tls, shown) in cases {
        let changed = policy(&partner(tls));
        let d = diff(&pinned, &changed);
        assert!(d.discloses_more, "{tls}: {d:#?}");
        assert_eq!(d.changes.len(), 1, "{d:#?}");
        assert_eq!(d.changes[0].change, "trust_changed");
        assert!(d.changes[0].text.contains(shown), "{d:#?}");
    }
    // The same trust, a client certificate added: nobody else receives anything.
    let with_client_cert = policy(&partner(
        "tls: { ca: certs/acme-ca.pem, client_cert: certs/gw.pem, client_key: certs/gw-key.pem }\n",
    ));
    assert!(diff(&pinned, &with_client_cert).changes.is_empty());
    assert!(diff(&pinned, &pinned).changes.is_empty());
}

#[test]
fn a_route_that_starts_streaming_needs_sign_off_and_a_ledger_switched_off_is_shown() {
    let route = |stream: &str| {
        format!(
            "kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:9001\nroutes:\n  - path: /v1/lines\n    methods: [POST]\n{stream}    allow: [order_id]\nallowed_callers: [orders]\n"
        )
    };
    let (json, ndjson) = (policy(&route("")), policy(&route("    stream: ndjson\n")));
    let d = diff(&json, &ndjson);
    assert!(d.discloses_more, "{d:#?}");
    assert_eq!(d.changes.len(), 1, "{d:#?}");
    assert_eq!(d.changes[0].change, "stream_changed");
    let back = diff(&ndjson, &json);
    assert_eq!(back.changes.len(), 1, "{back:#?}");
    assert!(!back.discloses_more, "{back:#?}");

    let ledger = format!("{GATEWAY}ledger: {{ path: data/ledger, subject_key_env: K }}\n");
    let (with, without) = (policy_with(&ledger, &route("")), policy(&route("")));
    let d = diff(&with, &without);
    assert!(!d.discloses_more, "{d:#?}");
    assert_eq!(d.changes.len(), 1, "{d:#?}");
    assert_eq!(d.changes[0].change, "ledger_off");
    assert!(d.changes[0].text.contains("not recorded"), "{d:#?}");
    assert_eq!(diff(&without, &with).changes[0].change, "ledger_on");
}

#[test]
fn a_change_of_whom_the_gateway_takes_for_a_caller_needs_sign_off() {
    let partner = contractor("order_id", "", "orders");
    let before = policy(&partner);
    for gateway in [
        GATEWAY.replace(
            "issuer: i, audience: a",
            "issuer: https://evil.example, audience: a",
        ),
        GATEWAY.replace("keys: k.json", "keys: other-keys.json"),
        GATEWAY.replace("audience: a,", "audience: a, hs256_secret_env: SECRET,"),
        GATEWAY.replace("audience: a,", "audience: a, groups_claim: groups,"),
    ] {
        let d = diff(&before, &policy_with(&gateway, &partner));
        assert!(d.discloses_more, "{gateway}: {d:#?}");
        assert_eq!(d.changes.len(), 1, "{d:#?}");
        assert_eq!(d.changes[0].change, "caller_trust_changed");
    }
    assert!(diff(&before, &before).changes.is_empty());
}

#[test]
fn a_route_that_takes_more_kinds_of_body_discloses_more() {
    let old = policy(&contractor("order_id", "", "orders"));
    let wider = contractor("order_id", "", "orders").replace(
        "    methods: [POST]\n",
        "    methods: [POST]\n    json_types: [application/merge-patch+json]\n    decode: [gzip]\n",
    );
    let new = policy(&wider);
    let d = diff(&old, &new);
    assert!(d.discloses_more);
    assert_eq!(
        texts(&d),
        [
            "acme will also take bodies of type application/merge-patch+json on POST /v1/shipments",
            "acme will also take bodies encoded with gzip on POST /v1/shipments",
        ]
    );
    let kinds: Vec<&str> = d.changes.iter().map(|c| c.change).collect();
    assert_eq!(kinds, ["json_type_added", "decode_added"]);
    let back = diff(&new, &old);
    assert!(!back.discloses_more);
    assert_eq!(back.changes.len(), 2);
}

fn kinds(d: &PolicyDiff) -> Vec<(&'static str, bool)> {
    d.changes
        .iter()
        .map(|c| (c.change, c.discloses_more))
        .collect()
}

#[test]
fn signing_switched_off_is_shown_and_discloses_nothing_more() {
    let partner = contractor("order_id", "", "orders");
    let unsigned = GATEWAY.replace(
        "signing: { issuer: i, key: k.pem, kid: k }\n",
        "signing: { disabled: true }\n",
    );
    let d = diff(&policy(&partner), &policy_with(&unsigned, &partner));
    assert_eq!(kinds(&d), [("signing_off", false)]);
    assert!(!d.discloses_more);
    let back = diff(&policy_with(&unsigned, &partner), &policy(&partner));
    assert_eq!(kinds(&back), [("signing_on", false)]);
}

#[test]
fn another_opt_out_store_discloses_more() {
    let partner = contractor("order_id", "", "orders");
    let pg = |table: &str| {
        GATEWAY.replace(
            "optouts: { path: data/optouts }\n",
            &format!("optouts: {{ postgres: {{ url_env: DB_URL, table: {table}, max_staleness_s: 30 }} }}\n"),
        )
    };
    let d = diff(&policy(&partner), &policy_with(&pg("optouts"), &partner));
    assert_eq!(kinds(&d), [("optout_store_changed", true)]);
    let d = diff(
        &policy_with(&pg("optouts"), &partner),
        &policy_with(&pg("optouts_v2"), &partner),
    );
    assert_eq!(kinds(&d), [("optout_store_changed", true)]);
    assert!(
        d.changes[0].text.contains("optouts_v2"),
        "{}",
        d.changes[0].text
    );
    // How stale a replica's copy may get: longer discloses more, shorter does not.
    let staler = pg("optouts").replace("max_staleness_s: 30", "max_staleness_s: 300");
    let (fresh, stale) = (
        policy_with(&pg("optouts"), &partner),
        policy_with(&staler, &partner),
    );
    assert_eq!(
        kinds(&diff(&fresh, &stale)),
        [("optout_staleness_changed", true)]
    );
    assert_eq!(
        kinds(&diff(&stale, &fresh)),
        [("optout_staleness_changed", false)]
    );
}

#[test]
fn another_embedded_store_directory_discloses_more() {
    let partner = contractor("order_id", "", "orders");
    let fresh = GATEWAY.replace("data/optouts", "data/fresh-empty-store");
    let d = diff(&policy(&partner), &policy_with(&fresh, &partner));
    assert_eq!(kinds(&d), [("optout_store_changed", true)]);
    assert!(
        d.changes[0].text.contains("fresh-empty-store"),
        "{}",
        d.changes[0].text
    );
    // Known to be the same directory below each policy's base: no change.
    let below = |path: &std::path::Path| Some(format!("{}", path.file_name()?.to_string_lossy()));
    let same = diff_with(&policy(&partner), &policy(&partner), &below);
    assert!(same.changes.is_empty(), "{:#?}", same.changes);
}

/// A policy of two contractors that pseudonymise `customer_id`, with the keys in `keys`.
fn two_pseudonymising(keys: [&str; 2]) -> Policy {
    two_contractors(keys.map(|key| {
        contractor("order_id", "customer_id: pseudonymize", "orders")
            + &format!("pseudonymize_key_env: {key}\n")
    }))
}

/// A policy of two contractors sent the API credentials in the variables `envs`.
fn two_with_credentials(envs: [&str; 2]) -> Policy {
    two_contractors(envs.map(|env| {
        contractor("order_id", "", "orders")
            + &format!(
                "upstream_auth: {{ header: authorization, prefix: \"Bearer \", env: {env} }}\n"
            )
    }))
}

/// A policy of the partners `acme` and `bolt`, from their files' text.
fn two_contractors(partners: [String; 2]) -> Policy {
    policy_of(GATEWAY, partners)
}

/// [`two_contractors`] under the gateway file `gateway`.
fn policy_of(gateway: &str, [acme, bolt]: [String; 2]) -> Policy {
    let source = PolicySource {
        dir: "policy".into(),
        gateway: SourceFile {
            path: "policy/gateway.yaml".into(),
            text: gateway.into(),
        },
        partners: vec![
            SourceFile {
                path: "policy/partners/acme.yaml".into(),
                text: acme,
            },
            SourceFile {
                path: "policy/partners/bolt.yaml".into(),
                text: bolt,
            },
        ],
    };
    load(&source, None)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .policy
}

#[test]
fn taking_another_partners_pseudonymisation_key_discloses_more() {
    let old = two_pseudonymising(["ACME_KEY", "BOLT_KEY"]);
    let shared = diff(&old, &two_pseudonymising(["BOLT_KEY", "BOLT_KEY"]));
    assert_eq!(kinds(&shared), [("pseudonym_key_changed", true)]);
    assert!(
        shared.changes[0]
            .text
            .contains("bolt's pseudonymisation key"),
        "{}",
        shared.changes[0].text
    );
    let own = diff(&old, &two_pseudonymising(["ACME_KEY_2", "BOLT_KEY"]));
    assert_eq!(kinds(&own), [("pseudonym_key_changed", false)]);
    assert!(!own.discloses_more);
    // Swapped: each takes the key whose pseudonyms the other already holds.
    let swapped = diff(&old, &two_pseudonymising(["BOLT_KEY", "ACME_KEY"]));
    assert_eq!(
        kinds(&swapped),
        [
            ("pseudonym_key_changed", true),
            ("pseudonym_key_changed", true)
        ]
    );
}

#[test]
fn sending_a_partner_another_partners_credential_discloses_more() {
    let old = two_with_credentials(["ACME_TOKEN", "BOLT_TOKEN"]);
    let shared = diff(&old, &two_with_credentials(["BOLT_TOKEN", "BOLT_TOKEN"]));
    assert_eq!(kinds(&shared), [("credential_changed", true)]);
    assert!(shared.discloses_more);
    assert!(
        shared.changes[0].text.contains("bolt's API credential"),
        "{}",
        shared.changes[0].text
    );
    let own = diff(&old, &two_with_credentials(["ACME_TOKEN_2", "BOLT_TOKEN"]));
    assert_eq!(kinds(&own), [("credential_changed", false)]);
    assert!(!own.discloses_more);
    // The variable bolt used before: bolt's credential as it stands.
    let was_bolts = diff(&old, &two_with_credentials(["BOLT_TOKEN", "BOLT_TOKEN_2"]));
    assert!(was_bolts.discloses_more, "{:#?}", was_bolts.changes);
}

/// The gateway's admin token or ledger key moved into a partner's variable: the partner is sent,
/// or pseudonymises with, it.
#[test]
fn a_gateway_secret_moved_into_a_partners_variable_discloses_more() {
    let partners = || {
        let acme = contractor("order_id", "customer_id: pseudonymize", "orders")
            + "pseudonymize_key_env: ACME_KEY\nupstream_auth: { header: authorization, env: ACME_TOKEN }\n";
        let bolt = contractor("order_id", "", "orders");
        [acme, bolt]
    };
    let gateway = |admin: &str, ledger: &str| {
        GATEWAY.replace(
            "optouts:",
            &format!("admin_token_env: {admin}\nledger: {{ path: data/ledger, subject_key_env: {ledger} }}\noptouts:"),
        )
    };
    let old = policy_of(&gateway("ADMIN_TOKEN", "LEDGER_KEY"), partners());
    for (admin, ledger, says) in [
        (
            "ACME_TOKEN",
            "LEDGER_KEY",
            "the gateway's admin token now reads acme's API credential",
        ),
        (
            "ADMIN_TOKEN",
            "ACME_KEY",
            "the gateway's ledger key now reads acme's pseudonymisation key",
        ),
    ] {
        let d = diff(&old, &policy_of(&gateway(admin, ledger), partners()));
        assert!(d.discloses_more, "{admin} {ledger}: {:#?}", d.changes);
        assert!(
            d.changes
                .iter()
                .any(|c| c.change == "secret_shared" && c.text.contains(says)),
            "{:#?}",
            d.changes
        );
    }
    // Its own new variable: nothing more.
    let d = diff(
        &old,
        &policy_of(&gateway("ADMIN_TOKEN_2", "LEDGER_KEY"), partners()),
    );
    assert!(!d.discloses_more, "{:#?}", d.changes);
}

/// A partner's credential or key taken from a variable that holds another kind of secret: the
/// gateway's admin token or ledger key, another partner's key, or its own other secret.
#[test]
fn a_secret_of_another_kind_as_a_partners_credential_or_key_discloses_more() {
    let gateway_secrets = GATEWAY.replace(
        "optouts:",
        "admin_token_env: ADMIN_TOKEN\nledger: { path: data/ledger, subject_key_env: LEDGER_KEY }\noptouts:",
    );
    let with = |acme_env: &str| {
        let acme = contractor("order_id", "customer_id: pseudonymize", "orders")
            + "pseudonymize_key_env: ACME_KEY\n"
            + &format!("upstream_auth: {{ header: authorization, env: {acme_env} }}\n");
        let bolt = contractor("order_id", "customer_id: pseudonymize", "orders")
            + "pseudonymize_key_env: BOLT_KEY\n";
        policy_of(&gateway_secrets, [acme, bolt])
    };
    for (env, says) in [
        ("ADMIN_TOKEN", "the gateway's admin token"),
        ("LEDGER_KEY", "the gateway's ledger key"),
        ("BOLT_KEY", "bolt's pseudonymisation key"),
        ("ACME_KEY", "acme's pseudonymisation key"),
    ] {
        let d = diff(&with("ACME_TOKEN"), &with(env));
        assert_eq!(kinds(&d), [("credential_changed", true)], "{env}");
        assert!(
            d.changes[0].text.contains(says),
            "{env}: {}",
            d.changes[0].text
        );
    }
}

/// The fixit routes: a literal `bulk` route beside the `{id}` template (literal routes win
/// whatever their order), then `rest`.
fn tickets(bulk: bool, rest: &str) -> Policy {
    let bulk = if bulk {
        "  - path: /v1/tickets/bulk\n    methods: [POST]\n    allow: [ticket_id]\n"
    } else {
        ""
    };
    policy(&format!(
        "kind: contractor\npurpose: support\nupstream: http://127.0.0.1:9001\nroutes:\n{bulk}  - path: /v1/tickets/{{id}}\n    methods: [GET, POST]\n    query: [include]\n    allow: [ticket_id, reporter_email]\n{rest}allowed_callers: [orders]\n"
    ))
}

#[test]
fn a_removed_literal_route_whose_requests_a_template_takes_discloses_more() {
    let d = diff(&tickets(true, ""), &tickets(false, ""));
    assert!(d.discloses_more, "{:#?}", texts(&d));
    let texts = texts(&d);
    for want in [
        "acme: the route POST /v1/tickets/bulk is removed, and another route takes its requests (below)",
        "acme: requests to POST /v1/tickets/bulk will be taken by the route GET, POST /v1/tickets/{id} instead of POST /v1/tickets/bulk",
        "acme will START receiving the query parameter include on POST /v1/tickets/bulk",
        "acme will START receiving reporter_email in clear on POST /v1/tickets/bulk",
        "acme will also accept GET /v1/tickets/bulk, refused before, through the route GET, POST /v1/tickets/{id}",
        "acme will START receiving the query parameter include on GET /v1/tickets/bulk",
        "acme will START receiving ticket_id in clear on GET /v1/tickets/bulk",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want}\n{texts:#?}");
    }
    // The way back: those requests go to the literal route again, which sends less.
    let back = diff(&tickets(false, ""), &tickets(true, ""));
    assert!(
        back.changes.iter().any(|c| c.change == "route_added"),
        "{:#?}",
        back.changes
    );
}

#[test]
fn routes_of_one_shape_split_by_method_are_paired_by_method_and_parameter_names_ignored() {
    let put = "  - path: /v1/tickets/{ticket}\n    methods: [PUT]\n    allow: [status]\n";
    let same = diff(&tickets(false, put), &tickets(false, put));
    assert!(same.changes.is_empty(), "{:#?}", texts(&same));
    let renamed = tickets(false, &put.replace("{ticket}", "{t}"));
    let d = diff(&tickets(false, put), &renamed);
    assert!(d.changes.is_empty(), "{:#?}", texts(&d));
    // A field added on the PUT route only is reported on that route.
    let more = tickets(false, &put.replace("[status]", "[status, note]"));
    let d = diff(&tickets(false, put), &more);
    assert_eq!(
        texts(&d),
        ["acme will START receiving note in clear on PUT /v1/tickets/{ticket}"]
    );
}

/// A partner of `kind` with `routes` (YAML list items, indented by two spaces).
fn with_routes(kind: &str, routes: &str) -> Policy {
    policy(&format!(
        "kind: {kind}\npurpose: support\nupstream: http://127.0.0.1:9001\nroutes:\n{routes}allowed_callers: [orders]\n"
    ))
}

#[test]
fn a_method_taken_after_routes_split_by_method_are_merged_discloses_more() {
    let old = with_routes(
        "contractor",
        "  - {path: \"/v1/t/{id}\", methods: [PUT], allow: [a]}\n  - {path: \"/v1/t/{id}\", methods: [POST], allow: [a]}\n  - {path: /v1/t/x, methods: [PUT], allow: [a]}\n",
    );
    let new = with_routes(
        "contractor",
        "  - {path: \"/v1/t/{id}\", methods: [PUT, POST], allow: [a]}\n",
    );
    let d = diff(&old, &new);
    assert!(d.discloses_more, "{:#?}", texts(&d));
    assert!(
        texts(&d)
            .iter()
            .any(|t| t.contains("will also accept POST /v1/t/x")),
        "{:#?}",
        texts(&d)
    );
}

#[test]
fn a_path_value_no_longer_checked_against_opt_outs_discloses_more() {
    let first = "  - {path: \"/v1/people/{cid}\", methods: [GET]}\n";
    let second = "  - {path: \"/v1/{kind}/c-200\", methods: [GET]}\n";
    let old = with_routes("business_partner", &format!("{first}{second}"));
    let new = with_routes("business_partner", &format!("{second}{first}"));
    let d = diff(&old, &new);
    assert!(d.discloses_more, "{:#?}", texts(&d));
    assert!(
        d.changes
            .iter()
            .any(|c| c.change == "url_optout_check_dropped"),
        "{:#?}",
        texts(&d)
    );
}

#[test]
fn a_customer_id_parameter_no_longer_typed_discloses_more() {
    let typed = "  - path: \"/v1/people/{cid:subject}\"\n    methods: [GET]\n    query: [\"ref:subject\", page]\n";
    let plain = "  - path: \"/v1/people/{cid}\"\n    methods: [GET]\n    query: [ref, page]\n";
    let d = diff(
        &with_routes("business_partner", typed),
        &with_routes("business_partner", plain),
    );
    assert!(d.discloses_more, "{:#?}", texts(&d));
    let removed: Vec<&str> = d
        .changes
        .iter()
        .filter(|c| c.change == "typed_id_removed")
        .filter_map(|c| c.subject.as_deref())
        .collect();
    assert_eq!(
        removed,
        ["path segment 3", "query parameter ref"],
        "{:#?}",
        texts(&d)
    );
    let back = diff(
        &with_routes("business_partner", plain),
        &with_routes("business_partner", typed),
    );
    assert!(!back.discloses_more, "{:#?}", texts(&back));
    // A contractor checks no ids: the typing changes nothing on the wire there.
    let contractor = diff(
        &with_routes("contractor", typed),
        &with_routes("contractor", plain),
    );
    assert!(contractor.changes.is_empty(), "{:#?}", texts(&contractor));
}

#[test]
fn raising_a_body_limit_discloses_more_and_lowering_it_does_not() {
    let partner = contractor("order_id", "", "orders");
    let limits = |body: u64, depth: u64| {
        format!("{GATEWAY}limits: {{ max_body_bytes: {body}, max_depth: {depth} }}\n")
    };
    let (small, large) = (
        policy_with(&limits(1000, 16), &partner),
        policy_with(&limits(1_000_000, 64), &partner),
    );
    let d = diff(&small, &large);
    assert!(d.discloses_more, "{d:#?}");
    let changes: Vec<_> = d
        .changes
        .iter()
        .map(|c| (c.change, c.subject.clone()))
        .collect();
    assert_eq!(
        changes,
        [
            ("limit_raised", Some("limits.max_body_bytes".into())),
            ("limit_raised", Some("limits.max_depth".into()))
        ],
        "{d:#?}"
    );
    assert!(d.changes[0].text.contains("from 1000 to 1000000"), "{d:#?}");
    let back = diff(&large, &small);
    assert!(!back.discloses_more, "{back:#?}");
    assert!(
        back.changes.iter().all(|c| c.change == "limit_lowered"),
        "{back:#?}"
    );
    assert!(diff(&small, &small).changes.is_empty());
    // A larger head lets through requests refused before with 431.
    let head = policy_with(
        &format!("{GATEWAY}limits: {{ max_header_bytes: 131072 }}\n"),
        &partner,
    );
    let d = diff(&policy(&partner), &head);
    assert!(d.discloses_more, "{d:#?}");
    assert_eq!(
        d.changes[0].subject.as_deref(),
        Some("limits.max_header_bytes")
    );
}
