//! What was disclosed: data categories in metrics, and the disclosure ledger (one record per
//! forwarded request, hash-chained and signed) checked with the real `audit` commands.
mod util;

use util::*;

const SHIP_ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret")];

/// The shipping partner with part of its fields categorised; the card number is both allowed
/// and transformed (`last4`), which is one disclosed field.
fn categorised_ship_partner(upstream: &str) -> String {
    ship_partner(upstream)
        .replace(
            "    query: [page]\n",
            "    categories:\n      shipments[*].name: user.name\n      shipments[*].address.**: user.contact.address\n      shipments[*].card_number: user.financial.credit_card\n    query: [page]\n",
        )
        .replace(
            "      - shipments[*].items[*].sku\n",
            "      - shipments[*].items[*].sku\n      - shipments[*].card_number\n",
        )
}

const SHIPMENT: &str = r#"{"order_id": 7, "shipments": [
 {"customer_id": "c-1", "name": "Ada", "address": {"city": "X"}, "card_number": "4111111111111111", "email": "a@x"},
 {"customer_id": 2, "name": "Bo", "items": [{"sku": "s"}]}]}"#;

#[test]
fn forwarded_fields_are_counted_by_category() {
    let mock = Mock::start();
    let gateway = Gateway::start(
        "",
        &[("acme-ship", &categorised_ship_partner(&mock.url()))],
        SHIP_ENV,
    );
    let metrics = gateway.metrics();
    let series = |category: &str| {
        format!(
            "partner_gateway_fields_disclosed_total{{category=\"{category}\",partner=\"acme-ship\",route=\"/v1/shipments\"}}"
        )
    };
    // every category the route can disclose exists at zero before the first request
    assert!(
        metrics.contains(&format!("{} 0", series("user.name"))),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("{} 0", series("uncategorized"))),
        "{metrics}"
    );

    let response = gateway.post_json("/acme-ship/v1/shipments", SHIPMENT);
    assert_eq!(response.status, 200);
    // a refused request discloses nothing
    let refused = gateway.post_json("/acme-ship/v1/shipments", r#"{"shipments": [1]}"#);
    assert_eq!(refused.status, 400);
    let metrics = gateway.metrics();
    assert_eq!(metric(&metrics, &series("user.name")), 2.0);
    assert_eq!(metric(&metrics, &series("user.contact.address")), 1.0);
    // allowed and transformed: one field, its one value counted once
    assert_eq!(metric(&metrics, &series("user.financial.credit_card")), 1.0);
    // order_id, two customer ids and one sku have no category
    assert_eq!(metric(&metrics, &series("uncategorized")), 4.0);
}

const ADMIN: &str = "admin_token_env: DISCLOSURE_TEST_ADMIN_TOKEN\n";

/// A request counts its categories by the policy it started with, even when a reload renamed
/// the route and changed its categories while the partner was still answering.
#[test]
fn a_reload_mid_request_counts_by_the_policy_the_request_started_with() {
    let mock = Mock::start_with_delay(800);
    let mut env = SHIP_ENV.to_vec();
    env.push(("DISCLOSURE_TEST_ADMIN_TOKEN", "s3cret"));
    let gateway = Gateway::start(
        ADMIN,
        &[("acme-ship", &categorised_ship_partner(&mock.url()))],
        &env,
    );
    let addr = gateway.addr.to_string();
    let request = std::thread::spawn(move || {
        http1::send(
            &addr,
            "POST",
            "/acme-ship/v1/shipments",
            &[("content-type", "application/json")],
            Some(SHIPMENT.as_bytes()),
        )
        .unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let renamed = categorised_ship_partner(&mock.url())
        .replace("- path: /v1/shipments\n", "- path: /v1/parcels\n")
        .replace(
            "shipments[*].name: user.name",
            "shipments[*].name: user.contact.address",
        );
    let file = gateway.policy.policy().join("partners/acme-ship.yaml");
    std::fs::write(file, renamed).unwrap();
    let reload = gateway.reload(Some("s3cret"));
    assert_eq!(
        reload.status,
        200,
        "{}",
        String::from_utf8_lossy(&reload.body)
    );
    assert_eq!(request.join().unwrap().status, 200);

    let metrics = gateway.metrics();
    let series = |route: &str, category: &str| {
        format!(
            "partner_gateway_fields_disclosed_total{{category=\"{category}\",partner=\"acme-ship\",route=\"{route}\"}}"
        )
    };
    assert_eq!(metric(&metrics, &series("/v1/shipments", "user.name")), 2.0);
    assert_eq!(
        metric(&metrics, &series("/v1/shipments", "user.contact.address")),
        1.0
    );
    assert_eq!(
        metric(&metrics, &series("/v1/shipments", "uncategorized")),
        4.0
    );
    assert_eq!(
        metric(&metrics, &series("/v1/parcels", "user.contact.address")),
        0.0
    );
    assert!(
        metrics.contains(r#"partner_gateway_requests_total{partner="acme-ship",route="/v1/shipments",status="200"} 1"#),
        "{metrics}"
    );
}

/// Nothing counts as disclosed when the partner could not be reached; a partner that got the
/// body and then did not answer in time has it all the same (504), counted as the ledger
/// records it.
#[test]
fn only_bodies_that_reached_the_partner_count_as_disclosed() {
    let down = free_addr();
    let slow = Mock::start_with_delay(5000);
    for (upstream, reached) in [(format!("http://{down}"), false), (slow.url(), true)] {
        let gateway = Gateway::start(
            "",
            &[("acme-ship", &categorised_ship_partner(&upstream))],
            SHIP_ENV,
        );
        let response = gateway.post_json("/acme-ship/v1/shipments", SHIPMENT);
        assert!(matches!(response.status, 502 | 504), "{}", response.status);
        let metrics = gateway.metrics();
        let series = |category: &str| {
            format!(
                "partner_gateway_fields_disclosed_total{{category=\"{category}\",partner=\"acme-ship\",route=\"/v1/shipments\"}}"
            )
        };
        let records = "partner_gateway_records_forwarded_total{partner=\"acme-ship\",route=\"/v1/shipments\"}";
        let (names, forwarded) = if reached { (2.0, 2.0) } else { (0.0, 0.0) };
        assert_eq!(metric(&metrics, &series("user.name")), names, "{upstream}");
        assert_eq!(metric(&metrics, records), forwarded, "{upstream}");
    }
}
