//! The sample request body of the benchmarks: what a shipping partner's route is sent.

/// A realistic ~1 KiB shipment batch: two customers with the personal data the policy names.
pub fn body() -> Vec<u8> {
    let record = |id: u32| {
        format!(
            r#"{{"customer_id":"c-{id}","name":"Ana Lima","email":"ana{id}@example.com","phone":"+351 912 345 678","card_number":"4111 1111 1111 1111","address":{{"street":"Rua das Flores 12","city":"Porto","postal_code":"4050-262","country":"PT"}},"items":[{{"sku":"OHS-LAPTOP-14","qty":1,"unit_price":1299.00}},{{"sku":"OHS-SLEEVE-14","qty":1,"unit_price":39.90}}],"client":{{"ip_address":"203.0.113.7","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"}}}}"#
        )
    };
    format!(
        r#"{{"order_id":"o-20260815-0042","shipments":[{},{}]}}"#,
        record(1001),
        record(1002)
    )
    .into_bytes()
}
