//! Policy changes seen on live traffic, through the real gateway and a real mock partner:
//! drift (unknown fields counted, listed at `/drift` as paths only, `drift --suggest`) and the
//! shadow policy (differences counted and listed, never forwarded).
mod util;

use std::process::Command;

use util::*;

const TOKEN_ENV: &str = "SHADOW_DRIFT_ADMIN_TOKEN";
const TOKEN: &str = "drift-admin-token";

/// Values that must never appear in a drift or shadow report.
const VALUES: [&str; 8] = [
    "Ana Lima",
    "+351 912 345 678",
    "ana@example.com",
    "c-104233",
    "Rua das Flores",
    "4111",
    "secret note",
    "o-77",
];

fn body_with_unknown_fields() -> String {
    r#"{"order_id":"o-77","channel":"secret note",
        "shipments":[
          {"customer_id":"c-104233","name":"Ana Lima","phone":"+351 912 345 678","card_number":"4111 1111 1111 1111",
           "address":{"street":"Rua das Flores 12"},"meta":{"email":"ana@example.com"},
           "by_customer":{"c-104233":"ana@example.com"}},
          {"customer_id":"c-2","name":"B","phone":"+351 912 345 678"}
        ]}"#
    .to_string()
}

fn admin_get(gw: &Gateway, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    http1::send(&gw.admin.to_string(), "GET", path, &headers, None).unwrap()
}

/// Adds `channel` to the partner's allow list and reloads by hand.
fn allow_channel_and_reload(gw: &Gateway) {
    let file = gw.policy.policy().join("partners/acme-ship.yaml");
    let policy = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        policy.replacen(
            "      - order_id\n",
            "      - order_id\n      - channel\n",
            1,
        ),
    )
    .unwrap();
    assert_eq!(gw.reload(Some(TOKEN)).status, 200);
}

fn assert_no_values(text: &str) {
    for value in VALUES {
        assert!(!text.contains(value), "{value:?} leaked into: {text}");
    }
}

#[test]
fn unknown_fields_are_counted_and_listed_as_paths_only() {
    let mock = Mock::start();
    let gw = Gateway::start(
        &format!("admin_token_env: {TOKEN_ENV}\n"),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t"), (TOKEN_ENV, TOKEN)],
    );
    for _ in 0..3 {
        let r = gw.post_json("/acme-ship/v1/shipments", &body_with_unknown_fields());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // The partner got none of the unknown fields.
    for received in mock.received() {
        let body = received["body"].as_str().unwrap();
        for absent in ["channel", "phone", "meta", "by_customer"] {
            assert!(!body.contains(absent), "{body}");
        }
    }

    // channel, 2 × phone, meta, by_customer per request
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_unknown_fields_total{partner="acme-ship",route="/v1/shipments"}"#
        ),
        15.0,
        "{metrics}"
    );

    assert_eq!(admin_get(&gw, "/drift", None).status, 401);
    assert_eq!(admin_get(&gw, "/drift", Some("wrong")).status, 401);
    let r = admin_get(&gw, "/drift", Some(TOKEN));
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert_no_values(&text);
    let doc = r.json();
    let route = &doc["routes"][0];
    assert_eq!(route["partner"], "acme-ship");
    assert_eq!(route["route"], "/v1/shipments");
    let paths: Vec<(&str, u64)> = route["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            ("channel", 3),
            ("shipments[*].by_customer", 3),
            ("shipments[*].meta", 3),
            ("shipments[*].phone", 6),
        ]
    );
    let phone = &route["paths"][3];
    assert_eq!(phone["shapes"], serde_json::json!(["scalar"]));
    assert!(phone["first_seen"].as_str().unwrap().ends_with('Z'));
    assert!(phone["first_seen"].as_str() <= phone["last_seen"].as_str());

    // The CLI prints what would pass them, and applies nothing.
    let admin_url = format!("http://{}", gw.admin);
    let out = Command::new(BIN)
        .args([
            "drift",
            "--admin",
            &admin_url,
            "--suggest",
            "--token-env",
            TOKEN_ENV,
        ])
        .env(TOKEN_ENV, TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# partners/acme-ship.yaml, route /v1/shipments"),
        "{stdout}"
    );
    assert!(stdout.contains("      - channel "), "{stdout}");
    assert!(stdout.contains("      - shipments[*].phone "), "{stdout}");
    // An unknown object gets a note, never a line that would pass whatever it holds.
    assert!(
        stdout.contains("      # not suggested: shipments[*].meta ("),
        "{stdout}"
    );
    assert!(!stdout.contains(".**"), "{stdout}");
    assert_no_values(&stdout);
    let policy =
        std::fs::read_to_string(gw.policy.policy().join("partners/acme-ship.yaml")).unwrap();
    assert!(
        !policy.contains("phone"),
        "the suggestion was applied:\n{policy}"
    );

    // Without the token the CLI says why, and fails.
    let out = Command::new(BIN)
        .args(["drift", "--admin", &admin_url, "--token-env", TOKEN_ENV])
        .env(TOKEN_ENV, "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // What is unknown is relative to the policy serving: once a reload allows `channel`, the
    // list starts afresh and holds only what the new policy does not name.
    allow_channel_and_reload(&gw);
    assert_eq!(
        admin_get(&gw, "/drift", Some(TOKEN)).json()["routes"],
        serde_json::json!([])
    );
    let r = gw.post_json("/acme-ship/v1/shipments", &body_with_unknown_fields());
    assert_eq!(r.status, 200);
    let doc = admin_get(&gw, "/drift", Some(TOKEN)).json();
    let paths: Vec<&str> = doc["routes"][0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "shipments[*].by_customer",
            "shipments[*].meta",
            "shipments[*].phone"
        ]
    );
}

/// A request decided under a policy that a reload replaced while its body arrived is counted,
/// but not listed: the list is the serving policy's, which may allow what that one did not.
#[test]
fn a_request_decided_under_a_replaced_policy_is_not_listed() {
    use std::io::{Read, Write};
    let mock = Mock::start();
    let gw = Gateway::start(
        &format!("admin_token_env: {TOKEN_ENV}\n"),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t"), (TOKEN_ENV, TOKEN)],
    );
    let body = r#"{"order_id":"o-1","channel":"web"}"#;
    let mut slow = std::net::TcpStream::connect(gw.addr).unwrap();
    let head = format!(
        "POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&body.as_bytes()[..10]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    allow_channel_and_reload(&gw);

    slow.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_unknown_fields_total{partner="acme-ship",route="/v1/shipments"}"#
        ),
        1.0,
        "{metrics}"
    );
    let doc = admin_get(&gw, "/drift", Some(TOKEN)).json();
    assert_eq!(doc["routes"], serde_json::json!([]), "{doc}");
}
