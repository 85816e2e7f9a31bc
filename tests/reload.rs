//! A policy edit is picked up while serving; a bad edit is rejected and the old policy keeps serving.
mod util;

use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

fn partner(upstream: &str, allow: &str) -> String {
    format!("kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow: [{allow}]\nallowed_callers: [orders-service]\n")
}

fn wait_for_metric(gateway: &Gateway, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if metric(&gateway.metrics(), series) >= value {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{series} never reached {value}:\n{}", gateway.metrics());
}

#[test]
fn bad_reload_keeps_the_old_policy_and_good_reload_applies() {
    let mock = Mock::start();
    let gateway = Gateway::start("", &[("acme-ship", &partner(&mock.url(), "order_id"))], &[]);
    let file = gateway.policy.policy().join("partners/acme-ship.yaml");

    std::fs::write(&file, partner(&mock.url(), "order_id\n    alow: [x]")).unwrap();
    wait_for_metric(
        &gateway,
        r#"partner_gateway_policy_reloads_total{result="error"}"#,
        1.0,
    );
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", r#"{"order_id":1,"name":"Ada"}"#)
            .status,
        200
    );
    assert_eq!(mock.only_body(), r#"{"order_id":1}"#);

    std::fs::write(&file, partner(&mock.url(), "order_id, name")).unwrap();
    wait_for_metric(
        &gateway,
        r#"partner_gateway_policy_reloads_total{result="ok"}"#,
        2.0,
    );
    assert_eq!(
        gateway
            .post_json(
                "/acme-ship/v1/shipments",
                r#"{"order_id":2,"name":"Ada","email":"a@b"}"#
            )
            .status,
        200
    );
    let received = mock.received();
    assert_eq!(
        received.last().unwrap()["body"],
        r#"{"order_id":2,"name":"Ada"}"#
    );
}

#[test]
fn a_reload_cannot_move_the_opt_out_store() {
    let mock = Mock::start();
    let gateway = Gateway::start(
        "optouts: { path: data/a }\n",
        &[("acme-ship", &partner(&mock.url(), "order_id"))],
        &[],
    );
    let file = gateway.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("data/a", "data/b");
    std::fs::write(&file, yaml).unwrap();
    wait_for_metric(
        &gateway,
        r#"partner_gateway_policy_reloads_total{result="error"}"#,
        1.0,
    );
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#)
            .status,
        200
    );
}

const ADMIN: &str = "admin_token_env: RELOAD_TEST_ADMIN_TOKEN\n";

/// A gateway whose admin token is `s3cret`, in front of one shipping partner at `mock` that
/// gets `order_id` only.
fn admin_gateway(mock: &Mock) -> Gateway {
    Gateway::start(
        ADMIN,
        &[("acme-ship", &partner(&mock.url(), "order_id"))],
        &[("RELOAD_TEST_ADMIN_TOKEN", "s3cret")],
    )
}

#[test]
fn admin_reload_answers_the_new_version_or_every_error() {
    let mock = Mock::start();
    let gateway = admin_gateway(&mock);
    assert_refused(&gateway.reload(None), 401, "unauthenticated");
    assert_refused(&gateway.reload(Some("wrong")), 401, "unauthenticated");
    let get = gateway.admin_get("/reload");
    assert_eq!(get.status, 401, "the token is checked first");

    let r = gateway.reload(Some("s3cret"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let first = r.json()["version"].as_str().unwrap().to_string();
    assert!(
        metric(
            &gateway.metrics(),
            &format!(r#"partner_gateway_policy_info{{version="{first}"}}"#)
        ) == 1.0
    );

    // Two broken files: both errors, with file and line; the old policy keeps serving.
    let policy = gateway.policy.policy();
    let file = policy.join("partners/acme-ship.yaml");
    std::fs::write(&file, partner(&mock.url(), "order_id, name\n    alow: [x]")).unwrap();
    std::fs::write(policy.join("partners/second.yaml"), "kind: nobody\n").unwrap();
    let r = gateway.reload(Some("s3cret"));
    assert_refused(&r, 422, "invalid_policy");
    let errors: Vec<String> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let names_a_line = |file: &str| {
        errors.iter().any(|e| {
            e.split_once(&format!("{file}:")).is_some_and(|(_, rest)| {
                rest.split(':')
                    .next()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
    };
    assert!(names_a_line("partners/acme-ship.yaml"), "{errors:#?}");
    assert!(names_a_line("partners/second.yaml"), "{errors:#?}");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("partners/second.yaml:"));
    let body = r#"{"order_id":1,"name":"Ada"}"#;
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", body).status,
        200
    );
    assert_eq!(mock.only_body(), r#"{"order_id":1}"#);

    std::fs::remove_file(policy.join("partners/second.yaml")).unwrap();
    std::fs::write(&file, partner(&mock.url(), "order_id, name")).unwrap();
    let r = gateway.reload(Some("s3cret"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let second = r.json()["version"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", body).status,
        200
    );
    assert_eq!(mock.received().last().unwrap()["body"], body);
}

/// "Edit, then `POST /reload`": the change is loaded once. The watcher sees the same files
/// a moment later and does not load, log and count them again.
#[test]
fn an_edit_reloaded_by_hand_is_not_loaded_again_by_the_watcher() {
    let mock = Mock::start();
    let gateway = admin_gateway(&mock);
    let reloads = |result: &str| {
        metric(
            &gateway.metrics(),
            &format!(r#"partner_gateway_policy_reloads_total{{result="{result}"}}"#),
        )
    };
    let file = gateway.policy.policy().join("partners/acme-ship.yaml");
    // Long enough for the watcher to notice (0.5 s polls, 0.5 s to settle) on a loaded machine.
    let watcher_had_its_turn = || std::thread::sleep(Duration::from_millis(3000));

    std::fs::write(&file, partner(&mock.url(), "order_id\n    alow: [x]")).unwrap();
    assert_refused(&gateway.reload(Some("s3cret")), 422, "invalid_policy");
    watcher_had_its_turn();
    assert_eq!(reloads("error"), 1.0, "{}", gateway.metrics());

    std::fs::write(&file, partner(&mock.url(), "order_id, name")).unwrap();
    assert_eq!(gateway.reload(Some("s3cret")).status, 200);
    watcher_had_its_turn();
    assert_eq!(reloads("ok"), 2.0, "the start and the one reload");
    assert_eq!(reloads("error"), 1.0);

    // Files beside the partners that are not partner files (an editor's lock and backup, a
    // temporary file) are not the policy: no reload.
    let partners = gateway.policy.policy().join("partners");
    std::os::unix::fs::symlink("root@host.42:1700000000", partners.join(".#acme-ship.yaml"))
        .unwrap();
    std::fs::write(partners.join(".scratch.yaml"), "not: [a partner").unwrap();
    std::fs::write(partners.join("acme-ship.yaml~"), "an editor's backup").unwrap();
    watcher_had_its_turn();
    assert_eq!(reloads("ok"), 2.0, "a hidden file started a reload");
    assert_eq!(reloads("error"), 1.0);

    // An edit nobody reloads by hand is still the watcher's to load.
    std::fs::write(&file, partner(&mock.url(), "order_id")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads("ok") < 3.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reloads("ok"), 3.0);
}

/// A gateway with the admin token and a signing key in `keys/signing.pem` (the demo key), in
/// front of one shipping partner at `mock`. The signing section starts at line 7 of its
/// gateway.yaml (after the five fixed lines and the admin token line); its `key` is line 9.
fn signing_gateway(mock: &Mock) -> Gateway {
    let extra = format!(
        "{ADMIN}signing:\n  issuer: https://gw.example\n  key: keys/signing.pem\n  kid: k1\n"
    );
    Gateway::start_prepared(
        |addr, admin| gateway_yaml(addr, admin, &extra),
        &[("acme-ship", &partner(&mock.url(), "order_id"))],
        &[("RELOAD_TEST_ADMIN_TOKEN", "s3cret")],
        |root| {
            std::fs::create_dir_all(root.join("keys")).unwrap();
            std::fs::copy(
                format!("{CERTS}/data-use-signing.pem"),
                root.join("keys/signing.pem"),
            )
            .unwrap();
        },
    )
}

/// A reload by hand refused for a file the new policy names but that is missing: creating the
/// file is the watcher's to notice and load, as when the watcher itself had been refused.
#[test]
fn a_file_missing_at_a_reload_by_hand_is_loaded_by_the_watcher_once_it_appears() {
    let mock = Mock::start();
    let gateway = signing_gateway(&mock);
    let reloads = |result: &str| {
        metric(
            &gateway.metrics(),
            &format!(r#"partner_gateway_policy_reloads_total{{result="{result}"}}"#),
        )
    };
    let yaml_file = gateway.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&yaml_file).unwrap();
    std::fs::write(
        &yaml_file,
        yaml.replace("keys/signing.pem", "keys/next.pem"),
    )
    .unwrap();
    assert_refused(&gateway.reload(Some("s3cret")), 422, "invalid_policy");

    std::fs::copy(
        format!("{CERTS}/data-use-signing.pem"),
        gateway.policy.root().join("keys/next.pem"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads("ok") < 2.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reloads("ok"), 2.0, "the start and the watcher's reload");
}

/// A key file that stops being usable refuses the reload with its `FILE:LINE` (the
/// `gateway.yaml` line naming it), like any other policy error; the old key keeps signing.
#[test]
fn an_unusable_key_file_refuses_the_reload_naming_its_line() {
    let mock = Mock::start();
    let gateway = signing_gateway(&mock);
    let yaml = std::fs::read_to_string(gateway.policy.policy().join("gateway.yaml")).unwrap();
    let key_line = yaml
        .lines()
        .position(|l| l.contains("keys/signing.pem"))
        .unwrap()
        + 1;

    std::fs::write(
        gateway.policy.root().join("keys/signing.pem"),
        "not a key\n",
    )
    .unwrap();
    let r = gateway.reload(Some("s3cret"));
    assert_refused(&r, 422, "invalid_policy");
    let errors = r.json()["errors"].clone();
    let first = errors[0].as_str().unwrap_or_default();
    let (file, rest) = first.split_once(':').unwrap_or_default();
    assert!(file.ends_with("gateway.yaml"), "{errors:#}");
    assert!(
        rest.starts_with(&format!("{key_line}: signing.key ")),
        "{errors:#}"
    );
    assert_eq!(
        first.matches("no PEM private key found").count(),
        1,
        "said once: {first}"
    );
    // (The watcher may count the same change once more.)
    assert!(
        metric(
            &gateway.metrics(),
            r#"partner_gateway_policy_reloads_total{result="error"}"#
        ) >= 1.0
    );
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#)
            .status,
        200
    );
}

#[test]
fn admin_reload_is_refused_without_a_configured_token() {
    let mock = Mock::start();
    let gateway = Gateway::start("", &[("acme-ship", &partner(&mock.url(), "order_id"))], &[]);
    assert_refused(&gateway.reload(Some("anything")), 403, "admin_disabled");
}

#[test]
fn a_reload_cannot_move_the_listeners() {
    let mock = Mock::start();
    let gateway = admin_gateway(&mock);
    let file = gateway.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let elsewhere = free_addr();
    std::fs::write(
        &file,
        yaml.replace(&gateway.addr.to_string(), &elsewhere.to_string()),
    )
    .unwrap();
    let r = gateway.reload(Some("s3cret"));
    assert_refused(&r, 422, "invalid_policy");
    let errors = r.json()["errors"].to_string();
    assert!(
        errors.contains("gateway.yaml:1: `listen` changed"),
        "{errors}"
    );
    assert_eq!(
        gateway
            .post_json("/acme-ship/v1/shipments", r#"{"order_id":1}"#)
            .status,
        200
    );
}

/// A reload that removes a route and a partner and adds others: requests count under the new
/// policy's partners and routes (series created at zero when it is loaded, others on first
/// use), and the removed ones' series keep the values they had.
#[test]
fn after_a_reload_requests_count_under_the_new_policy_and_old_series_keep_their_values() {
    let mock = Mock::start();
    let gateway = Gateway::start(
        "admin_token_env: RELOAD_TEST_ADMIN_TOKEN\n",
        &[
            ("acme-ship", &partner(&mock.url(), "order_id, name")),
            ("old-ship", &partner(&mock.url(), "order_id")),
        ],
        &[("RELOAD_TEST_ADMIN_TOKEN", "s3cret")],
    );
    let post = |target: &str, body: &str| gateway.post_json(target, body).status;
    assert_eq!(
        post("/acme-ship/v1/shipments", r#"{"order_id":1,"x":2}"#),
        200
    );
    assert_eq!(
        post("/old-ship/v1/shipments", r#"{"order_id":1,"name":"A"}"#),
        200
    );
    assert_eq!(post("/old-ship/v1/shipments", "{"), 400);

    let partners = gateway.policy.policy().join("partners");
    let parcels = partner(&mock.url(), "order_id")
        .replace("- path: /v1/shipments\n", "- path: /v1/parcels\n")
        .replace(
            "allowed_callers:",
            "    transform: {name: mask}\nallowed_callers:",
        );
    std::fs::write(partners.join("acme-ship.yaml"), parcels).unwrap();
    std::fs::remove_file(partners.join("old-ship.yaml")).unwrap();
    std::fs::write(
        partners.join("new-ship.yaml"),
        partner(&mock.url(), "order_id"),
    )
    .unwrap();
    let reload = gateway.reload(Some("s3cret"));
    assert_eq!(
        reload.status,
        200,
        "{}",
        String::from_utf8_lossy(&reload.body)
    );

    for _ in 0..2 {
        let body = r#"{"order_id":1,"name":"Ada","y":3}"#;
        assert_eq!(post("/acme-ship/v1/parcels", body), 200);
    }
    assert_eq!(post("/new-ship/v1/shipments", r#"{"order_id":1}"#), 200);
    assert_eq!(post("/new-ship/v1/shipments", "["), 400);
    assert_ne!(post("/acme-ship/v1/shipments", r#"{"order_id":1}"#), 200);
    assert_eq!(post("/old-ship/v1/shipments", r#"{"order_id":1}"#), 404);

    let metrics = gateway.metrics();
    let value = |series: &str| metric(&metrics, series);
    let requests = |partner: &str, route: &str, status: u16| {
        value(&format!(
            r#"partner_gateway_requests_total{{partner="{partner}",route="{route}",status="{status}"}}"#
        ))
    };
    // The removed route and partner: what they counted before the reload, unchanged.
    assert_eq!(requests("acme-ship", "/v1/shipments", 200), 1.0);
    assert_eq!(requests("old-ship", "/v1/shipments", 200), 1.0);
    assert_eq!(requests("old-ship", "/v1/shipments", 400), 1.0);
    let removed =
        r#"partner_gateway_fields_removed_total{partner="acme-ship",route="/v1/shipments"}"#;
    assert_eq!(value(removed), 1.0);
    let refused =
        r#"partner_gateway_requests_refused_total{partner="old-ship",reason="bad_request"}"#;
    assert_eq!(value(refused), 1.0);
    // The new policy's route and partner.
    assert_eq!(requests("acme-ship", "/v1/parcels", 200), 2.0);
    let removed =
        r#"partner_gateway_fields_removed_total{partner="acme-ship",route="/v1/parcels"}"#;
    assert_eq!(value(removed), 2.0);
    let masked = r#"partner_gateway_fields_transformed_total{partner="acme-ship",route="/v1/parcels",transform="mask"}"#;
    assert_eq!(value(masked), 2.0);
    let filtered =
        r#"partner_gateway_filter_duration_seconds_count{partner="acme-ship",route="/v1/parcels"}"#;
    assert_eq!(value(filtered), 2.0);
    assert_eq!(requests("new-ship", "/v1/shipments", 200), 1.0);
    assert_eq!(requests("new-ship", "/v1/shipments", 400), 1.0);
    let refused =
        r#"partner_gateway_requests_refused_total{partner="new-ship",reason="bad_request"}"#;
    assert_eq!(value(refused), 1.0);
    // A route and a partner the new policy does not have are `unknown`.
    assert!(
        metrics.contains(
            r#"partner_gateway_requests_total{partner="acme-ship",route="unknown",status="#
        ),
        "{metrics}"
    );
    assert_eq!(requests("unknown", "unknown", 404), 1.0);
    let unknown =
        r#"partner_gateway_requests_refused_total{partner="unknown",reason="unknown_partner"}"#;
    assert_eq!(value(unknown), 1.0);
}

/// The sum of the samples of `family` whose labels include every `(name, value)` of `labels`.
fn sum_series(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(family)?.strip_prefix('{'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(set, value)| (set.trim_end_matches('}'), value))
        .filter(|(set, _)| {
            labels
                .iter()
                .all(|(n, v)| set.split(',').any(|l| l == format!("{n}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// Writes a partner file whole (a rename), so no reload reads it half written.
fn write_partner(dir: &std::path::Path, id: &str, yaml: &str) {
    let tmp = dir.join(format!(".{id}.tmp"));
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{id}.yaml"))).unwrap();
}

/// One request a client sent: target, body, status and the refusal's `error`.
type Seen<'a> = (&'a str, &'a str, u16, Value);

/// Requests in parallel with repeated reloads, some still at the partner while a reload removes
/// it or moves its routes: every request is counted once, under the partner and route of the
/// policy that decided it, and the disclosed fields under that policy's categories.
#[test]
fn counts_add_up_across_parallel_requests_and_repeated_reloads() {
    let mock = Mock::start_with_delay(15);
    let shipments = |category: &str| {
        format!(
            "  - path: /v1/shipments\n    methods: [POST]\n    allow: [order_id, name]\n    categories: {{ name: {category} }}\n"
        )
    };
    let parcels = "  - path: /v1/parcels\n    methods: [POST]\n    allow: [order_id]\n";
    let acme = |routes: &str| {
        format!("kind: contractor\npurpose: shipping\nupstream: {}\nroutes:\n{routes}allowed_callers: [orders-service]\n", mock.url())
    };
    // Policy A: acme-ship with one route, and gone-ship. Policy B: acme-ship with a route
    // before the first (its index moves) and other categories, and no gone-ship.
    let acme_a = acme(&shipments("user.name"));
    let acme_b = acme(&format!("{parcels}{}", shipments("user.contact")));
    let gone = partner(&mock.url(), "order_id");
    let gateway = Gateway::start(
        ADMIN,
        &[("acme-ship", &acme_a), ("gone-ship", &gone)],
        &[("RELOAD_TEST_ADMIN_TOKEN", "s3cret")],
    );
    let dir = gateway.policy.policy().join("partners");

    const THREADS: usize = 16;
    const EACH: usize = 125;
    let targets = [
        (
            "/acme-ship/v1/shipments",
            r#"{"order_id":1,"name":"Ada","x":1}"#,
        ),
        ("/acme-ship/v1/parcels", r#"{"order_id":1,"name":"Ada"}"#),
        ("/gone-ship/v1/shipments", r#"{"order_id":1,"name":"Ada"}"#),
        ("/acme-ship/v1/shipments", "{"),
    ];
    let running = std::sync::atomic::AtomicBool::new(true);
    let (tally, reloads) = std::thread::scope(|scope| {
        let reloader = scope.spawn(|| {
            let mut reloads = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) && reloads < 20 {
                std::thread::sleep(Duration::from_millis(120));
                if reloads % 2 == 0 {
                    write_partner(&dir, "acme-ship", &acme_b);
                    std::fs::remove_file(dir.join("gone-ship.yaml")).unwrap();
                } else {
                    write_partner(&dir, "acme-ship", &acme_a);
                    write_partner(&dir, "gone-ship", &gone);
                }
                let r = gateway.reload(Some("s3cret"));
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                reloads += 1;
            }
            reloads
        });
        let clients: Vec<_> = (0..THREADS)
            .map(|t| {
                let (gateway, targets) = (&gateway, &targets);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for i in 0..EACH {
                        let (target, body) = targets[(t + i) % targets.len()];
                        let r = gateway.post_json(target, body);
                        seen.push((target, body, r.status, r.json()["error"].clone()));
                    }
                    seen
                })
            })
            .collect();
        let tally: Vec<_> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        (tally, reloader.join().unwrap())
    });
    assert!(reloads >= 10, "only {reloads} reloads while requests ran");
    let sent = (THREADS * EACH) as f64;
    let count = |f: &dyn Fn(&Seen) -> bool| tally.iter().filter(|r| f(r)).count() as f64;

    let text = gateway.metrics();
    let sum = |family: &str, labels: &[(&str, &str)]| sum_series(&text, family, labels);
    let requests = "partner_gateway_requests_total";
    assert_eq!(sum(requests, &[]), sent, "{text}");
    let durations = "partner_gateway_request_duration_seconds_count";
    assert_eq!(sum(durations, &[]), sent, "{text}");
    // Each status the callers saw, counted as often.
    for status in [200, 400, 404] {
        let s = status.to_string();
        let seen = count(&|r| r.2 == status);
        assert_eq!(sum(requests, &[("status", &s)]), seen, "{status}: {text}");
    }
    // By partner: acme-ship always exists; gone-ship counts under its name while it exists
    // (requests it was still answering when a reload removed it included), `unknown` after.
    let acme_sent = count(&|r| r.0.starts_with("/acme-ship/"));
    let acme = [("partner", "acme-ship")];
    assert_eq!(sum(requests, &acme), acme_sent, "{text}");
    let gone_unknown = count(&|r| r.0.starts_with("/gone-ship/") && r.3 == "unknown_partner");
    let gone_known = count(&|r| r.0.starts_with("/gone-ship/")) - gone_unknown;
    assert!(gone_unknown > 0.0 && gone_known > 0.0, "{text}");
    let gone = [("partner", "gone-ship"), ("status", "200")];
    assert_eq!(sum(requests, &gone), gone_known, "{text}");
    let unknown = [
        ("partner", "unknown"),
        ("route", "unknown"),
        ("status", "404"),
    ];
    assert_eq!(sum(requests, &unknown), gone_unknown, "{text}");
    let refused = "partner_gateway_requests_refused_total";
    let unknown_partner = [("partner", "unknown"), ("reason", "unknown_partner")];
    assert_eq!(sum(refused, &unknown_partner), gone_unknown, "{text}");

    // By route: each request under the route that decided it, whatever the index it had.
    let ok_to = |target: &str| count(&|r| r.0 == target && r.2 == 200);
    let labels = |route| {
        [
            ("partner", "acme-ship"),
            ("route", route),
            ("status", "200"),
        ]
    };
    let shipped = ok_to("/acme-ship/v1/shipments");
    let parcels_ok = ok_to("/acme-ship/v1/parcels");
    assert!(shipped > 0.0 && parcels_ok > 0.0, "{text}");
    assert_eq!(sum(requests, &labels("/v1/shipments")), shipped, "{text}");
    assert_eq!(sum(requests, &labels("/v1/parcels")), parcels_ok, "{text}");
    let bad = count(&|r| r.1 == "{");
    let bad_labels = [
        ("partner", "acme-ship"),
        ("route", "/v1/shipments"),
        ("status", "400"),
    ];
    assert_eq!(sum(requests, &bad_labels), bad, "{text}");
    let acme_bad = [("partner", "acme-ship"), ("reason", "bad_request")];
    assert_eq!(sum(refused, &acme_bad), bad, "{text}");

    // Fields: each forwarded shipment discloses `order_id` (uncategorized) and `name`, under
    // the category of the policy that decided it; `x` is removed.
    let route = ("route", "/v1/shipments");
    let disclosed = "partner_gateway_fields_disclosed_total";
    let of = |category| {
        sum(
            disclosed,
            &[("partner", "acme-ship"), route, ("category", category)],
        )
    };
    assert_eq!(of("uncategorized"), shipped, "{text}");
    assert_eq!(of("user.name") + of("user.contact"), shipped, "{text}");
    assert!(of("user.name") > 0.0 && of("user.contact") > 0.0, "{text}");
    let removed = "partner_gateway_fields_removed_total";
    assert_eq!(
        sum(removed, &[("partner", "acme-ship"), route]),
        shipped,
        "{text}"
    );
}

#[test]
fn a_file_put_back_right_after_a_reload_by_hand_is_loaded_by_the_watcher() {
    let mock = Mock::start();
    let gateway = admin_gateway(&mock);
    let file = gateway.policy.policy().join("partners/acme-ship.yaml");
    let strict = std::fs::read(&file).unwrap();
    // A looser policy loaded by hand, then the file put back at once: faster than the
    // watcher's polls, which see the strict file before and after.
    std::fs::write(&file, partner(&mock.url(), "order_id, email")).unwrap();
    assert_eq!(gateway.reload(Some("s3cret")).status, 200);
    std::fs::write(&file, &strict).unwrap();
    let body = r#"{"order_id": 1, "email": "a@example.com"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = mock.received().len();
        assert_eq!(
            gateway.post_json("/acme-ship/v1/shipments", body).status,
            200
        );
        let received = mock.received();
        assert_eq!(received.len(), before + 1);
        if received[before]["body"] == r#"{"order_id":1}"# {
            break;
        }
        assert!(Instant::now() < deadline, "the looser policy kept serving");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A partner file rewritten in place, slowly: caught half-written, its `allow` list is a valid
/// policy without the transforms after it, one that would send the card's number and CVC. The
/// watcher loads a change that discloses more only once the files have stayed unchanged for a
/// while (3 s), so the half never serves; a widening written whole is loaded after that wait.
#[test]
fn a_partner_file_caught_half_written_never_serves_what_its_end_takes_back() {
    let mock = Mock::start();
    let whole = |extra: &str| {
        format!(
            "kind: contractor\npurpose: shipping\nupstream: {}\nallowed_callers: [orders-service]\nroutes:\n  - path: /v1/shipments\n    methods: [POST]\n    allow:\n      - order_id{extra}\n      - card.*\n    transform:\n      card.number: last4\n      card.cvc: remove\n",
            mock.url()
        )
    };
    let gateway = Gateway::start("", &[("acme-ship", &whole(""))], &[]);
    let file = gateway.policy.policy().join("partners/acme-ship.yaml");
    let body = r#"{"order_id":1,"note":"n","card":{"number":"4111111111111111","cvc":"737"}}"#;
    let safe = r#"{"order_id":1,"card":{"number":"***1111"}}"#;

    let full = whole("");
    let half = &full[..full.find("    transform:").unwrap()];
    std::fs::write(&file, half).unwrap();
    // Past the watcher's poll and settling (1 s) on a quiet machine, inside its 3 s wait.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", body).status,
        200
    );
    assert_eq!(mock.received().last().unwrap()["body"], safe);
    std::fs::write(&file, &full).unwrap();
    std::thread::sleep(Duration::from_millis(4000));
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", body).status,
        200
    );
    assert_eq!(mock.received().last().unwrap()["body"], safe);
    let reloads = metric(
        &gateway.metrics(),
        r#"partner_gateway_policy_reloads_total{result="ok"}"#,
    );
    assert_eq!(reloads, 1.0, "only the start loaded a policy");

    // A widening written whole is loaded, after the wait.
    std::fs::write(&file, whole("\n      - note")).unwrap();
    wait_for_metric(
        &gateway,
        r#"partner_gateway_policy_reloads_total{result="ok"}"#,
        2.0,
    );
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", body).status,
        200
    );
    assert_eq!(
        mock.received().last().unwrap()["body"],
        r#"{"order_id":1,"note":"n","card":{"number":"***1111"}}"#
    );
}

/// A widening edit reloaded by hand while the watcher waits for it to settle is loaded once:
/// the watcher, when its wait ends, finds the files read already.
#[test]
fn a_widening_reloaded_by_hand_during_the_watchers_wait_is_loaded_once() {
    let mock = Mock::start();
    let gateway = admin_gateway(&mock);
    let file = gateway.policy.policy().join("partners/acme-ship.yaml");
    std::fs::write(&file, partner(&mock.url(), "order_id, name")).unwrap();
    // Inside the watcher's 3 s wait on a quiet machine; earlier or later, the count is the same.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gateway.reload(Some("s3cret")).status, 200);
    std::thread::sleep(Duration::from_millis(4500));
    let reloads = metric(
        &gateway.metrics(),
        r#"partner_gateway_policy_reloads_total{result="ok"}"#,
    );
    assert_eq!(reloads, 2.0, "the start and the reload by hand");
}
