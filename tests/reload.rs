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
