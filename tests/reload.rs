//! A policy edit is picked up while serving; a bad edit is rejected and the old policy keeps serving.
mod util;

use std::time::{Duration, Instant};

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

fn post_reload(gateway: &Gateway, token: Option<&str>) -> Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    http1::send(
        &gateway.admin.to_string(),
        "POST",
        "/reload",
        &headers,
        Some(b""),
    )
    .unwrap()
}

#[test]
fn admin_reload_answers_the_new_version_or_every_error() {
    let mock = Mock::start();
    let gateway = Gateway::start(
        ADMIN,
        &[("acme-ship", &partner(&mock.url(), "order_id"))],
        &[("RELOAD_TEST_ADMIN_TOKEN", "s3cret")],
    );
    assert_refused(&post_reload(&gateway, None), 401, "unauthenticated");
    assert_refused(
        &post_reload(&gateway, Some("wrong")),
        401,
        "unauthenticated",
    );
    let get = gateway.admin_get("/reload");
    assert_eq!(get.status, 401, "the token is checked first");

    let r = post_reload(&gateway, Some("s3cret"));
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
    let r = post_reload(&gateway, Some("s3cret"));
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
    let r = post_reload(&gateway, Some("s3cret"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let second = r.json()["version"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(
        gateway.post_json("/acme-ship/v1/shipments", body).status,
        200
    );
    assert_eq!(mock.received().last().unwrap()["body"], body);
}

#[test]
fn admin_reload_is_refused_without_a_configured_token() {
    let mock = Mock::start();
    let gateway = Gateway::start("", &[("acme-ship", &partner(&mock.url(), "order_id"))], &[]);
    assert_refused(
        &post_reload(&gateway, Some("anything")),
        403,
        "admin_disabled",
    );
}

#[test]
fn a_reload_cannot_move_the_listeners() {
    let mock = Mock::start();
    let gateway = Gateway::start(
        ADMIN,
        &[("acme-ship", &partner(&mock.url(), "order_id"))],
        &[("RELOAD_TEST_ADMIN_TOKEN", "s3cret")],
    );
    let file = gateway.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let elsewhere = free_addr();
    std::fs::write(
        &file,
        yaml.replace(&gateway.addr.to_string(), &elsewhere.to_string()),
    )
    .unwrap();
    let r = post_reload(&gateway, Some("s3cret"));
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
    let reload = post_reload(&gateway, Some("s3cret"));
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
