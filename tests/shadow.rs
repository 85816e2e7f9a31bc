//! Shadow mode through the real gateway and a real mock partner: a candidate policy
//! (`shadow: { policy: policy-next }`) is decided beside the active one on live traffic. The
//! partner only ever gets what the active policy forwards; differences are counted in
//! `partner_gateway_shadow_differences_total` and listed at `/shadow` as paths only.
mod util;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

const TOKEN_ENV: &str = "SHADOW_ADMIN_TOKEN";
const TOKEN: &str = "shadow-admin-token";

/// Values planted in requests: none may appear in `/shadow`, the metrics or the logs' paths.
const VALUES: [&str; 7] = [
    "Ana Lima",
    "+351 912 345 678",
    "c-104233",
    "Rua das Flores",
    "4111",
    "secret note",
    "o-77",
];

const BODY: &str = r#"{"order_id":"o-77","channel":"secret note","shipments":[{"customer_id":"c-104233","name":"Ana Lima","phone":"+351 912 345 678","card_number":"4111 1111 1111 1111","address":{"street":"Rua das Flores 12"}}]}"#;

/// What the active policy (`ship_partner`) forwards of [`BODY`], byte for byte.
const FORWARDED: &str = r#"{"order_id":"o-77","shipments":[{"customer_id":"c-104233","name":"Ana Lima","card_number":"***1111","address":{"street":"Rua das Flores 12"}}]}"#;

/// A candidate that lets every member of every body through in clear.
fn allow_everything(upstream: &str) -> String {
    format!(
        r#"kind: contractor
purpose: shipping
upstream: {upstream}
routes:
  - path: /v1/shipments
    methods: [POST]
    allow: ["*.**"]
  - path: /v1/shipments/{{id}}
    methods: [GET]
allowed_callers: [orders-service]
upstream_auth: {{ header: authorization, prefix: "Bearer ", env: SHIP_TOKEN }}
"#
    )
}

/// A candidate that changes one thing of each kind: `name` no longer sent, `phone` sent,
/// `card_number` masked instead of last4, `order_id` as a whole subtree, the GET route gone,
/// and a new `/v1/returns` route.
fn one_of_each(upstream: &str) -> String {
    format!(
        r#"kind: contractor
purpose: shipping
upstream: {upstream}
routes:
  - path: /v1/shipments
    methods: [POST]
    records: shipments[*]
    subject: customer_id
    allow:
      - order_id.**
      - shipments[*].customer_id
      - shipments[*].phone
      - shipments[*].address.**
      - shipments[*].items[*].sku
    transform:
      shipments[*].card_number: mask
    query: [page]
    headers: [x-request-id]
  - path: /v1/returns
    methods: [POST]
    allow: [order_id]
allowed_callers: [orders-service]
upstream_auth: {{ header: authorization, prefix: "Bearer ", env: SHIP_TOKEN }}
"#
    )
}

/// Writes the candidate policy directory `policy-next/` beside `policy/`.
fn write_candidate(root: &Path, partner: &str) {
    let dir = root.join("policy-next");
    std::fs::create_dir_all(dir.join("partners")).unwrap();
    let gateway = "callers:\n  allow_unauthenticated: true\nsigning: { disabled: true }\n";
    std::fs::write(dir.join("gateway.yaml"), gateway).unwrap();
    std::fs::write(dir.join("partners/acme-ship.yaml"), partner).unwrap();
}

fn start(mock: &Mock, candidate: Option<String>) -> Gateway {
    let shadow = if candidate.is_some() {
        "shadow: { policy: policy-next }\n"
    } else {
        ""
    };
    let extra = format!("admin_token_env: {TOKEN_ENV}\n{shadow}");
    Gateway::start_prepared(
        |listen: SocketAddr, admin: SocketAddr| gateway_yaml(listen, admin, &extra),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t"), (TOKEN_ENV, TOKEN)],
        |root| {
            if let Some(candidate) = &candidate {
                write_candidate(root, candidate);
            }
        },
    )
}

fn admin(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    http1::send(&gw.admin.to_string(), method, path, &headers, None).unwrap()
}

fn shadow_report(gw: &Gateway) -> Value {
    let r = admin(gw, "GET", "/shadow", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn differences(gw: &Gateway, route: &str, change: &str) -> f64 {
    partner_differences(gw, ("acme-ship", route), change)
}

fn partner_differences(gw: &Gateway, (partner, route): (&str, &str), change: &str) -> f64 {
    metric(
        &gw.metrics(),
        &format!(
            r#"partner_gateway_shadow_differences_total{{change="{change}",partner="{partner}",route="{route}"}}"#
        ),
    )
}

/// Waits until the shadow thread has decided `n` requests (it runs off the request path).
fn wait_evaluated(gw: &Gateway, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = shadow_report(gw);
        let done = report["evaluated"].as_u64().unwrap();
        assert_eq!(report["skipped"], 0, "{report}");
        if done >= n {
            assert_eq!(done, n, "{report}");
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {n}: {report}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_values(text: &str) {
    for value in VALUES {
        assert!(!text.contains(value), "{value:?} leaked into: {text}");
    }
}

/// The label sets of a metrics text, where a value could leak: the numbers (process memory,
/// duration sums) can spell a planted digit run such as `4111` by chance.
fn label_sets(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| Some(&line[line.find('{')?..=line.rfind('}')?]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/shadow`'s report as text without the two policy versions: they are content hashes in hex,
/// which can spell a planted digit run such as `4111` by chance.
fn report_text(body: &[u8]) -> String {
    let mut report: Value = serde_json::from_slice(body).unwrap();
    for version in ["active_version", "shadow_version"] {
        assert!(report[version].is_string(), "{report}");
        report[version] = Value::Null;
    }
    report.to_string()
}

#[test]
fn a_candidate_that_allows_everything_changes_nothing_the_partner_receives() {
    let mock = Mock::start();
    let gw = start(&mock, Some(allow_everything(&mock.url())));
    let r = gw.post_json("/acme-ship/v1/shipments", BODY);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.only_body(), FORWARDED);
    wait_evaluated(&gw, 1);

    // Fields the candidate would add are counted, and only counted.
    let route = "/v1/shipments";
    assert_eq!(differences(&gw, route, "field_added"), 2.0); // channel, phone
    assert_eq!(differences(&gw, route, "transform_changed"), 1.0); // card_number
    assert_eq!(differences(&gw, route, "field_removed"), 0.0);
    assert_eq!(differences(&gw, route, "newly_refused"), 0.0);

    // Concurrent load: every request is decided under both policies and counted once.
    const N: usize = 48;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = gw.addr.to_string();
            std::thread::spawn(move || {
                for _ in 0..N / 8 {
                    let r = http1::send(
                        &addr,
                        "POST",
                        "/acme-ship/v1/shipments",
                        &[("content-type", "application/json")],
                        Some(BODY.as_bytes()),
                    )
                    .unwrap();
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_evaluated(&gw, N as u64 + 1);
    assert_eq!(
        differences(&gw, route, "field_added"),
        2.0 * (N as f64 + 1.0)
    );
    assert_eq!(differences(&gw, route, "transform_changed"), N as f64 + 1.0);
    assert_eq!(differences(&gw, route, "field_removed"), 0.0);

    // The partner got exactly the active policy's bytes every time.
    let received = mock.received();
    assert_eq!(received.len(), N + 1);
    for request in &received {
        assert_eq!(request["body"].as_str().unwrap(), FORWARDED);
        for (name, _) in headers_of(request) {
            assert!(!name.contains("shadow"), "{request}");
        }
    }
    let report = shadow_report(&gw);
    assert_eq!(report["differences_total"], 3 * (N as u64 + 1), "{report}");
    assert_eq!(report["differences"].as_array().unwrap().len(), 3 * (N + 1));
}

#[test]
fn each_kind_of_difference_is_counted_and_listed_as_paths_only() {
    let mock = Mock::start();
    let gw = start(&mock, Some(one_of_each(&mock.url())));
    assert_eq!(gw.post_json("/acme-ship/v1/shipments", BODY).status, 200);
    // Refused by the active policy on its head (no such route): the candidate would take it.
    let returns = gw.post_json("/acme-ship/v1/returns", r#"{"order_id":"o-77"}"#);
    assert_refused(&returns, 403, "route_not_allowed");
    // Refused by the active policy for its body (an object where a scalar goes).
    let nested = r#"{"order_id":{"ref":"o-77"},"shipments":[]}"#;
    assert_refused(
        &gw.post_json("/acme-ship/v1/shipments", nested),
        400,
        "bad_request",
    );
    // Forwarded by the active policy; the candidate has no such route.
    assert_eq!(
        gw.send("GET", "/acme-ship/v1/shipments/s-1", &[], None)
            .status,
        200
    );
    wait_evaluated(&gw, 4);

    let route = "/v1/shipments";
    assert_eq!(differences(&gw, route, "field_removed"), 1.0); // name
    assert_eq!(differences(&gw, route, "field_added"), 1.0); // phone
    assert_eq!(differences(&gw, route, "transform_changed"), 1.0); // card_number
    assert_eq!(differences(&gw, route, "newly_forwarded"), 1.0); // nested order_id
    assert_eq!(differences(&gw, "/v1/returns", "newly_forwarded"), 1.0);
    assert_eq!(differences(&gw, "/v1/shipments/{id}", "newly_refused"), 1.0);
    // The partner saw only what the active policy forwards.
    let received = mock.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["body"].as_str().unwrap(), FORWARDED);

    // `/shadow`: the admin token, GET only, paths and forms, never a value.
    assert_eq!(admin(&gw, "GET", "/shadow", None).status, 401);
    assert_eq!(admin(&gw, "GET", "/shadow", Some("wrong")).status, 401);
    let post = admin(&gw, "POST", "/shadow", Some(TOKEN));
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
    let r = admin(&gw, "GET", "/shadow", Some(TOKEN));
    assert_no_values(&report_text(&r.body));
    assert_no_values(&label_sets(&gw.metrics()));
    let report = r.json();
    assert_eq!(report["shadow"], true);
    assert!(
        report["policy"].as_str().unwrap().ends_with("policy-next"),
        "{report}"
    );
    let listed: Vec<(String, String, String, String)> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["partner"], "acme-ship");
            assert!(d["time"].as_str().unwrap().ends_with('Z'));
            let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
            (
                s("change"),
                s("route"),
                s("path"),
                format!("{} -> {}", s("active"), s("shadow")),
            )
        })
        .collect();
    let expect = |change: &str, route: &str, path: &str, forms: &str| {
        let entry = (change.into(), route.into(), path.into(), forms.into());
        assert!(listed.contains(&entry), "{entry:?} not in {listed:#?}");
    };
    expect(
        "field_removed",
        route,
        "shipments[*].name",
        "clear -> removed",
    );
    expect(
        "field_added",
        route,
        "shipments[*].phone",
        "removed -> clear",
    );
    expect(
        "transform_changed",
        route,
        "shipments[*].card_number",
        "last4 -> mask",
    );
    expect(
        "newly_forwarded",
        route,
        "-",
        "400 bad_request -> forwarded",
    );
    expect(
        "newly_forwarded",
        "/v1/returns",
        "-",
        "403 route_not_allowed -> admitted (body not read)",
    );
    expect(
        "newly_refused",
        "/v1/shipments/{id}",
        "-",
        "forwarded -> 403 route_not_allowed",
    );
    assert_eq!(listed.len(), 6, "{listed:#?}");
    // Newest first.
    assert_eq!(listed[0].0, "newly_refused");
}

#[test]
fn an_invalid_candidate_fails_check_and_a_reload_keeps_both_policies_serving() {
    let mock = Mock::start();
    let gw = start(&mock, Some(allow_everything(&mock.url())));
    let check = || {
        Command::new(BIN)
            .args(["check", "--policy", "policy"])
            .current_dir(gw.policy.root())
            .env("SHIP_TOKEN", "t")
            .output()
            .unwrap()
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("policy-next: ok: 1 partner, 2 routes"),
        "{stdout}"
    );
    assert!(stdout.contains("(shadow policy)"), "{stdout}");

    let candidate_file = gw.policy.root().join("policy-next/partners/acme-ship.yaml");
    let broken = allow_everything(&mock.url()).replace(
        "    allow: [\"*.**\"]\n",
        "    allow: [\"*.**\"]\n    alow: [x]\n",
    );
    std::fs::write(&candidate_file, &broken).unwrap();

    // `check` names the candidate's file and line.
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("policy-next/partners/acme-ship.yaml:8:"),
        "{stdout}"
    );
    // With errors in the active policy too, one run lists both.
    let active_file = gw.policy.policy().join("partners/acme-ship.yaml");
    let active = std::fs::read_to_string(&active_file).unwrap();
    std::fs::write(&active_file, active.replacen("routes:", "routs:", 1)).unwrap();
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("policy/partners/acme-ship.yaml:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policy-next/partners/acme-ship.yaml:8:"),
        "{stdout}"
    );
    std::fs::write(&active_file, active).unwrap();

    // The reload is refused with the same line; the old active and candidate keep serving.
    let r = http1::send(
        &gw.admin.to_string(),
        "POST",
        "/reload",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let errors = r.json()["errors"].to_string();
    assert!(
        errors.contains("policy-next/partners/acme-ship.yaml:8:"),
        "{errors}"
    );
    let metrics = gw.metrics();
    assert!(
        metric(
            &metrics,
            r#"partner_gateway_policy_reloads_total{result="error"}"#
        ) >= 1.0
    );
    assert_eq!(gw.post_json("/acme-ship/v1/shipments", BODY).status, 200);
    assert_eq!(mock.only_body(), FORWARDED);
    wait_evaluated(&gw, 1);
    assert_eq!(differences(&gw, "/v1/shipments", "field_added"), 2.0);

    // Fixing the candidate's file is noticed by the watcher: the new candidate decides.
    let before = shadow_report(&gw)["shadow_version"].clone();
    std::fs::write(&candidate_file, one_of_each(&mock.url())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while shadow_report(&gw)["shadow_version"] == before {
        assert!(Instant::now() < deadline, "the candidate was not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gw.post_json("/acme-ship/v1/shipments", BODY).status, 200);
    wait_evaluated(&gw, 2);
    assert_eq!(differences(&gw, "/v1/shipments", "field_removed"), 1.0);
}

#[test]
fn without_a_shadow_policy_nothing_is_counted_and_shadow_says_so() {
    let mock = Mock::start();
    let gw = start(&mock, None);
    assert_eq!(gw.post_json("/acme-ship/v1/shipments", BODY).status, 200);
    assert_refused(
        &gw.post_json("/acme-ship/v1/returns", "{}"),
        403,
        "route_not_allowed",
    );
    let metrics = gw.metrics();
    assert!(!has_difference_series(&metrics), "{metrics}");
    assert_eq!(admin(&gw, "GET", "/shadow", None).status, 401);
    let r = admin(&gw, "GET", "/shadow", Some(TOKEN));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_configured");
    assert_eq!(r.json()["shadow"], false);
}

#[test]
fn the_logs_hold_no_value_of_a_shadowed_request() {
    let mock = Mock::start();
    let (listen, admin_addr) = (free_addr(), free_addr());
    let extra = format!("admin_token_env: {TOKEN_ENV}\nshadow: {{ policy: policy-next }}\n");
    let policy = PolicyDir::new(
        &gateway_yaml(listen, admin_addr, &extra),
        &[("acme-ship", &ship_partner(&mock.url()))],
    );
    write_candidate(policy.root(), &one_of_each(&mock.url()));
    let log = policy.root().join("stderr.log");
    let child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(policy.policy())
        .current_dir(policy.root())
        .env("SHIP_TOKEN", "t")
        .env(TOKEN_ENV, TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _proc = Proc { child };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(listen).is_err()
        || std::net::TcpStream::connect(admin_addr).is_err()
    {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let send = |path: &str, body: &str| {
        http1::send(
            &listen.to_string(),
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
        .unwrap()
        .status
    };
    assert_eq!(send("/acme-ship/v1/shipments?page=Ana%20Lima", BODY), 200);
    assert_eq!(send("/acme-ship/v1/returns", r#"{"order_id":"o-77"}"#), 403);
    let nested = r#"{"order_id":{"ref":"o-77","note":"secret note"},"shipments":[]}"#;
    assert_eq!(send("/acme-ship/v1/shipments", nested), 400);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http1::send(
            &admin_addr.to_string(),
            "GET",
            "/shadow",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
        .unwrap();
        if r.json()["evaluated"] == 3 {
            assert_no_values(&report_text(&r.body));
            break;
        }
        assert!(Instant::now() < deadline, "not evaluated: {:?}", r.json());
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("shadow policy"), "{logs}");
    assert_no_values(&logs);
    assert!(!logs.contains("panicked"), "{logs}");
}

/// The shadow thread decides on the very headers the live decision saw. The candidate is the
/// active policy plus `decode: [gzip]`: a gzip body refused on its head alone is the one
/// difference (which the shadow thread can only see from the request's own headers, whatever
/// their spelling); every other request the headers decide is decided the same under both.
#[test]
fn the_shadow_decides_on_the_headers_the_live_decision_saw() {
    let mock = Mock::start();
    let gzip = ship_partner(&mock.url()).replace(
        "    headers: [x-request-id]\n",
        "    headers: [x-request-id]\n    decode: [gzip]\n",
    );
    let gw = start(&mock, Some(gzip));
    let post = |headers: &[(&str, &str)]| {
        gw.send(
            "POST",
            "/acme-ship/v1/shipments",
            headers,
            Some(BODY.as_bytes()),
        )
    };
    let json = ("Content-Type", "application/json");
    assert_eq!(post(&[json, ("X-Request-Id", "abc-1")]).status, 200);
    let refused: [(&[(&str, &str)], u16); 7] = [
        (&[json, ("CONTENT-ENCODING", "gzip")], 415),
        (&[json, ("Content-Encoding", "br")], 415),
        (
            &[json, ("X-Request-Id", "one"), ("x-request-id", "two")],
            400,
        ),
        (&[json, ("X-REQUEST-ID", "a b")], 400),
        (&[json, ("Upgrade", "h2c")], 400),
        (&[("CONTENT-TYPE", "text/plain")], 415),
        (&[json, ("content-type", "application/json")], 415),
    ];
    for (headers, status) in refused {
        let r = post(headers);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, status, "{headers:?}: {body}");
    }
    wait_evaluated(&gw, 8);
    let report = shadow_report(&gw);
    assert_eq!(report["differences_total"], 1, "{report}");
    let only = &report["differences"][0];
    assert_eq!(only["change"], "newly_forwarded", "{report}");
    assert_eq!(only["active"], "415 unsupported_media_type", "{report}");
    let route = "/v1/shipments";
    assert_eq!(differences(&gw, route, "newly_forwarded"), 1.0);
    assert_eq!(differences(&gw, route, "newly_refused"), 0.0);
    let received = mock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["body"].as_str().unwrap(), FORWARDED);
}

/// A contractor's streaming route: `allow` and `transform` lines given.
fn stream_partner(upstream: &str, allow: &str, transform: &str) -> String {
    format!(
        "kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/contacts\n    methods: [POST]\n    stream: ndjson\n    allow: [{allow}]\n    transform: {{ {transform} }}\nallowed_callers: [orders-service]\n"
    )
}

#[test]
fn a_streamed_request_is_decided_under_the_candidate_too() {
    let mock = Mock::start();
    let extra = format!("admin_token_env: {TOKEN_ENV}\nshadow: {{ policy: policy-next }}\n");
    let active = stream_partner(&mock.url(), "customer_id, city", "card: last4");
    let candidate = stream_partner(&mock.url(), "customer_id, phone", "card: mask");
    let gw = Gateway::start_prepared(
        |listen: SocketAddr, admin: SocketAddr| gateway_yaml(listen, admin, &extra),
        &[("ads", &active)],
        &[(TOKEN_ENV, TOKEN)],
        |root| {
            write_candidate(root, &candidate);
            std::fs::rename(
                root.join("policy-next/partners/acme-ship.yaml"),
                root.join("policy-next/partners/ads.yaml"),
            )
            .unwrap();
        },
    );
    let line = r#"{"customer_id":"c-104233","city":"Rua das Flores","phone":"+351 912 345 678","card":"4111 1111 1111 1111"}"#;
    let body = format!("{line}\n{line}\n{line}\n");
    let headers = [("content-type", "application/x-ndjson")];
    let r = http1::send(
        &gw.addr.to_string(),
        "POST",
        "/ads/v1/contacts",
        &headers,
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sent = r#"{"customer_id":"c-104233","city":"Rua das Flores","card":"***1111"}"#;
    assert_eq!(mock.only_body(), format!("{sent}\n{sent}\n{sent}\n"));
    // A bad line: both policies refuse the stream, which is no difference.
    let bad = format!("{line}\n{{\"city\":\n");
    let r = http1::send(
        &gw.addr.to_string(),
        "POST",
        "/ads/v1/contacts",
        &headers,
        Some(bad.as_bytes()),
    )
    .unwrap();
    assert_refused(&r, 400, "bad_request");
    wait_evaluated(&gw, 2);

    let count = |change: &str| partner_differences(&gw, ("ads", "/v1/contacts"), change);
    assert_eq!(count("field_added"), 1.0);
    assert_eq!(count("field_removed"), 1.0);
    assert_eq!(count("transform_changed"), 1.0);
    assert_eq!(count("newly_refused") + count("newly_forwarded"), 0.0);
    let report = admin(&gw, "GET", "/shadow", Some(TOKEN));
    let text = report_text(&report.body);
    assert_no_values(&text);
    let listed: Vec<(String, String)> = report.json()["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["change"].as_str().unwrap().to_string(),
                d["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (change, path) in [
        ("field_added", "phone"),
        ("field_removed", "city"),
        ("transform_changed", "card"),
    ] {
        assert!(
            listed.contains(&(change.to_string(), path.to_string())),
            "{listed:?}"
        );
    }
}

#[test]
fn removing_the_shadow_key_removes_its_series_and_what_it_found() {
    let mock = Mock::start();
    let gw = start(&mock, Some(allow_everything(&mock.url())));
    assert!(has_difference_series(&gw.metrics()));
    assert_eq!(gw.post_json("/acme-ship/v1/shipments", BODY).status, 200);
    wait_evaluated(&gw, 1);
    assert!(shadow_report(&gw)["differences_total"].as_u64().unwrap() > 0);

    let file = gw.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let reload = |yaml: &str| {
        std::fs::write(&file, yaml).unwrap();
        let r = admin(&gw, "POST", "/reload", Some(TOKEN));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    reload(&yaml.replace("shadow: { policy: policy-next }\n", ""));
    let metrics = gw.metrics();
    assert!(!has_difference_series(&metrics), "{metrics}");
    assert_eq!(admin(&gw, "GET", "/shadow", Some(TOKEN)).status, 404);

    // A later candidate starts from zero, at `/shadow` as in the metric.
    reload(&yaml);
    let report = shadow_report(&gw);
    assert_eq!(report["evaluated"], 0, "{report}");
    assert_eq!(report["differences_total"], 0, "{report}");
    assert_eq!(report["differences"].as_array().map(Vec::len), Some(0));
}

/// Whether `/metrics` has a series of the shadow differences (its `# HELP` and `# TYPE` lines
/// are always there).
fn has_difference_series(metrics: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with("partner_gateway_shadow_differences_total"))
}

/// Without a ledger as well, the two decisions' records are told apart by customer: a
/// candidate that honours another opt-out scope drops as many records as the active policy,
/// but another customer's, and both differences are counted.
#[test]
fn records_are_told_apart_by_customer_without_a_ledger() {
    const CALLERS: &str = "allowed_callers: [marketing-service]\n";
    let mock = Mock::start();
    let extra = format!(
        "admin_token_env: {TOKEN_ENV}\noptouts: {{ path: data/optouts }}\nshadow: {{ policy: policy-next }}\n"
    );
    let gw = Gateway::start_prepared(
        |listen: SocketAddr, admin: SocketAddr| gateway_yaml(listen, admin, &extra),
        &[("brightmail", &marketing_partner(&mock.url(), CALLERS))],
        &[(TOKEN_ENV, TOKEN)],
        |root| {
            let dir = root.join("policy-next");
            std::fs::create_dir_all(dir.join("partners")).unwrap();
            let gateway = "callers:\n  allow_unauthenticated: true\nsigning: { disabled: true }\noptouts: { path: data/optouts }\n";
            std::fs::write(dir.join("gateway.yaml"), gateway).unwrap();
            let rest = format!("{CALLERS}honor_optouts: [new_use]\n");
            let candidate = marketing_partner(&mock.url(), &rest);
            std::fs::write(dir.join("partners/brightmail.yaml"), candidate).unwrap();
        },
    );
    for (id, scope) in [("c-1", "partner_sharing"), ("c-2", "new_use")] {
        let body = serde_json::json!({ "scopes": [scope] }).to_string();
        let auth = format!("Bearer {TOKEN}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let path = format!("/optouts/{id}");
        let r = http1::send(
            &gw.admin.to_string(),
            "PUT",
            &path,
            &headers,
            Some(body.as_bytes()),
        );
        assert_eq!(r.unwrap().status, 200);
    }
    let body = r#"{"campaign":"spring","contacts":[{"customer_id":"c-1","name":"A"},{"customer_id":"c-2","name":"B"}]}"#;
    let r = gw.post_json("/brightmail/v1/audiences", body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_evaluated(&gw, 1);
    let count = |change: &str| partner_differences(&gw, ("brightmail", "/v1/audiences"), change);
    assert_eq!(count("newly_forwarded"), 1.0, "{}", shadow_report(&gw));
    assert_eq!(count("newly_refused"), 1.0, "{}", shadow_report(&gw));
}
