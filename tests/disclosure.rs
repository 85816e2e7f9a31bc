//! What was disclosed: data categories in metrics, and the disclosure ledger (one record per
//! forwarded request, hash-chained and signed) checked with the real `audit` commands.
mod util;

use util::*;

const SHIP_ENV: &[(&str, &str)] = &[("SHIP_TOKEN", "partner-secret")];

/// The shipping partner with part of its fields categorised.
fn categorised_ship_partner(upstream: &str) -> String {
    ship_partner(upstream).replace(
        "    query: [page]\n",
        "    categories:\n      shipments[*].name: user.name\n      shipments[*].address.**: user.contact.address\n      shipments[*].card_number: user.financial.credit_card\n    query: [page]\n",
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
    assert_eq!(metric(&metrics, &series("user.financial.credit_card")), 1.0);
    // order_id, two customer ids and one sku have no category
    assert_eq!(metric(&metrics, &series("uncategorized")), 4.0);
}
