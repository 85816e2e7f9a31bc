//! What ops run beside the gateway, tested against the real thing: the alert rules with
//! promtool (`check rules`, and the unit tests in alerts_test.yml), the Grafana dashboard's lint
//! rules, every dashboard query parsed by promtool, and every metric the dashboard and the
//! alerts name exported by a running gateway after some traffic.
#[path = "support/scripted.rs"]
mod scripted;
mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// promtool: `$PROMTOOL`, the copy scripts/setup.sh unpacks, or the one on PATH.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return path.into();
    }
    let local = Path::new(ROOT).join("target/tools/prometheus/usr/bin/promtool");
    if local.exists() {
        return local;
    }
    let on_path = Command::new("promtool").arg("--version").output();
    assert!(
        on_path.is_ok_and(|o| o.status.success()),
        "promtool not found: run `bash scripts/setup.sh` (it unpacks Debian's prometheus package \
         into target/tools/prometheus) or set PROMTOOL"
    );
    "promtool".into()
}

fn run_promtool(args: &[&str], dir: &Path) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = Path::new(ROOT).join("deploy/prometheus");
    run_promtool(&["check", "rules", "alerts.yml"], &dir);
    run_promtool(&["test", "rules", "alerts_test.yml"], &dir);
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/partner-gateway.json"))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every panel that is not a row (rows of the classic model may also nest panels).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

fn exprs(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dashboard_follows_the_lint_rules() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() <= 42);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let partner = var("partner");
    assert_eq!(partner["type"], "query");
    assert_eq!(
        partner["definition"],
        "label_values(partner_gateway_requests_total, partner)"
    );
    assert_eq!(partner["datasource"]["uid"], "${datasource}");

    let rows: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        ["Traffic", "Latency", "Privacy", "Partners", "Health"]
    );

    let mut ids = BTreeSet::new();
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        let unit = panel["fieldConfig"]["defaults"]["unit"].as_str();
        assert!(unit.is_some_and(|u| !u.is_empty()), "no unit: {title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "no query: {title}");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            for range in ranges(expr) {
                assert_eq!(range, "$__rate_interval", "{title}: {expr}");
            }
            if expr.contains("partner=") {
                assert!(expr.contains(r#"partner=~"$partner""#), "{title}: {expr}");
            }
        }
    }
}

/// The range selectors (`[5m]`) of a PromQL expression.
fn ranges(expr: &str) -> Vec<&str> {
    expr.split('[')
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        .collect()
}

/// Metric names in a PromQL expression: identifiers that are not functions, keywords, label
/// names (inside `{..}`, `by (..)`, `on (..)`, …) or strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let (mut in_string, mut braces) = (false, 0);
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            '{' if !in_string => braces += 1,
            '}' if !in_string => braces -= 1,
            _ if in_string || braces > 0 => {}
            _ => cleaned.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let grouping = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let keywords = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`5m`), never a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if grouping.contains(&word.as_str()) {
                skip_group = true;
            } else if next == Some(&'(') || keywords.contains(&word.as_str()) {
            } else if !word.starts_with("$__") && !word.chars().all(|c| c.is_ascii_digit()) {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_group {
            // `by (a, b)`: label names, not metrics.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
        }
        if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum by (partner, le) (rate(a_bucket{x="y(z)"}[$__rate_interval])) / on (instance) b - time() > 3 * c offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b", "c"]
    );
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool parses each query as a recording rule, with Grafana's variables filled in.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs(&dashboard()).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$partner", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    run_promtool(&["check", "rules", "dashboard.yml"], dir.path());
}

/// The metric names every alert expression uses.
fn alert_metric_names() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            names.extend(metric_names(rule["expr"].as_str().unwrap()));
        }
    }
    names
}

const OPTOUT_ENV: &str = "OPERATIONS_TEST_ADMIN_TOKEN";

fn business_partner(upstream: &str) -> String {
    format!(
        r#"kind: business_partner
purpose: marketing
upstream: {upstream}
routes:
  - path: /v1/contacts
    methods: [POST]
    records: contacts[*]
    subject: customer_id
    allow:
      - contacts[*].customer_id
      - contacts[*].name
    transform:
      contacts[*].email: mask
allowed_callers: [orders-service]
"#
    )
}

#[test]
fn every_metric_the_dashboard_and_alerts_name_is_exported_after_traffic() {
    let mock = Mock::start();
    let gw = Gateway::start(
        // No TLS and no shadow policy: the two families that then have no series are still
        // exported, with their `# HELP` and `# TYPE` lines.
        &format!("optouts: {{ path: data/optouts }}\nadmin_token_env: {OPTOUT_ENV}\n"),
        &[
            ("acme-ship", &ship_partner(&mock.url())),
            ("bp", &business_partner(&mock.url())),
        ],
        &[("SHIP_TOKEN", "t"), (OPTOUT_ENV, "admin")],
    );
    let optout = http1::send(
        &gw.admin.to_string(),
        "PUT",
        "/optouts/c-2",
        &[("authorization", "Bearer admin")],
        Some(br#"{"scopes":["partner_sharing"]}"#),
    )
    .unwrap();
    assert_eq!(optout.status, 200);
    let shipment = r#"{"order_id":"o1","shipments":[{"customer_id":"c-1","name":"A","card_number":"4111111111111111","secret":1}]}"#;
    assert_eq!(
        gw.post_json("/acme-ship/v1/shipments", shipment).status,
        200
    );
    let contacts = r#"{"contacts":[{"customer_id":"c-1","name":"A","email":"a@x"},{"customer_id":"c-2","name":"B"}]}"#;
    assert_eq!(gw.post_json("/bp/v1/contacts", contacts).status, 200);
    assert_eq!(gw.post_json("/acme-ship/v1/shipments", "{").status, 400);
    assert_eq!(gw.post_json("/nobody/v1/x", "{}").status, 404);

    let metrics = gw.metrics();
    check_metrics(&metrics);
    // The dashboard's CPU panel rates this: counted to the nanosecond, not in whole seconds.
    let cpu = metric(&metrics, "process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu.fract() != 0.0, "{cpu}");
    // A family is exported when `/metrics` has a series of it or declares its type.
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(declared) => declared.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .collect();

    let mut named = alert_metric_names();
    for expr in exprs(&dashboard()) {
        named.extend(metric_names(&expr));
    }
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{metrics}");
    // The dashboard and the alerts use only the documented metric names, and every documented
    // family is on a panel or in an alert.
    let undocumented: Vec<&String> = named
        .iter()
        .filter(|n| !n.starts_with("process_"))
        .filter(|n| !DOCUMENTED.iter().any(|(d, _)| family_of(n) == *d))
        .collect();
    assert!(
        undocumented.is_empty(),
        "the dashboard or the alerts use metrics outside the documented list: {undocumented:?}"
    );
    for (name, _) in DOCUMENTED {
        assert!(
            named.iter().any(|n| family_of(n) == name),
            "{name} is on no dashboard panel and in no alert"
        );
        assert!(
            partner_gateway::metrics::NAMES.contains(&name),
            "{name} is documented but not registered"
        );
    }
    // Every exported series of a documented family has exactly the documented labels.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split(['{', ' ']).next().unwrap_or_default();
        let Some((_, want)) = DOCUMENTED.iter().find(|(d, _)| family_of(series) == *d) else {
            continue;
        };
        let mut got: Vec<&str> = line
            .split_once('{')
            .map(|(_, rest)| rest.split('}').next().unwrap_or_default())
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
            .filter(|k| *k != "le")
            .collect();
        got.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "labels of {line}");
    }
    // And the documented type.
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split(' ').skip(2);
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        if DOCUMENTED.iter().any(|(d, _)| *d == name) {
            assert_eq!(kind, documented_type(name), "{line}");
        }
    }
}

/// The documented type of a family: two histograms, five gauges, counters otherwise.
fn documented_type(family: &str) -> &'static str {
    match family {
        "partner_gateway_request_duration_seconds" | "partner_gateway_filter_duration_seconds" => {
            "histogram"
        }
        "partner_gateway_optouts"
        | "partner_gateway_policy_info"
        | "partner_gateway_certificate_expiry_timestamp_seconds"
        | "partner_gateway_build_info"
        | "partner_gateway_optouts_staleness_seconds" => "gauge",
        _ => "counter",
    }
}

/// The metric families the README's metrics table documents (histograms without their
/// `_bucket`/`_sum`/`_count` series), besides `process_*`, with their labels (a histogram's
/// buckets add `le`): what the shipped dashboard and alerts may use. The gateway may export
/// more (`partner_gateway_signing_disabled`).
const DOCUMENTED: [(&str, &[&str]); 21] = [
    (
        "partner_gateway_requests_total",
        &["partner", "route", "status"],
    ),
    (
        "partner_gateway_request_duration_seconds",
        &["partner", "route"],
    ),
    (
        "partner_gateway_filter_duration_seconds",
        &["partner", "route"],
    ),
    (
        "partner_gateway_requests_refused_total",
        &["partner", "reason"],
    ),
    (
        "partner_gateway_fields_removed_total",
        &["partner", "route"],
    ),
    (
        "partner_gateway_fields_transformed_total",
        &["partner", "route", "transform"],
    ),
    (
        "partner_gateway_records_forwarded_total",
        &["partner", "route"],
    ),
    (
        "partner_gateway_records_dropped_total",
        &["partner", "route", "reason"],
    ),
    (
        "partner_gateway_upstream_errors_total",
        &["partner", "kind"],
    ),
    ("partner_gateway_optouts", &["scope"]),
    ("partner_gateway_policy_reloads_total", &["result"]),
    ("partner_gateway_policy_info", &["version"]),
    (
        "partner_gateway_fields_disclosed_total",
        &["partner", "route", "category"],
    ),
    (
        "partner_gateway_certificate_expiry_timestamp_seconds",
        &["name"],
    ),
    ("partner_gateway_ledger_records_total", &[]),
    ("partner_gateway_ledger_errors_total", &[]),
    ("partner_gateway_build_info", &["version"]),
    ("partner_gateway_optouts_staleness_seconds", &[]),
    (
        "partner_gateway_shadow_differences_total",
        &["partner", "route", "change"],
    ),
    (
        "partner_gateway_unknown_fields_total",
        &["partner", "route"],
    ),
    ("partner_gateway_connections_closed_total", &["reason"]),
];

/// A series name's family: a histogram's `_bucket`, `_sum` and `_count` belong to it.
fn family_of(series: &str) -> &str {
    for histogram in [
        "partner_gateway_request_duration_seconds",
        "partner_gateway_filter_duration_seconds",
    ] {
        let suffix = series.strip_prefix(histogram);
        if suffix.is_some_and(|s| ["", "_bucket", "_sum", "_count"].contains(&s)) {
            return histogram;
        }
    }
    series
}

/// `promtool check metrics` on one `/metrics` text: the exposition format and its lint rules.
fn check_metrics(text: &str) {
    let mut command = Command::new(promtool());
    command
        .args(["check", "metrics"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = output_with_stdin(&mut command, text.as_bytes());
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Statuses a partner or the gateway rarely answers are counted like the common ones, under the
/// partner and route that decided them (or `unknown`), and `/metrics` stays valid before and
/// after.
#[test]
fn uncommon_statuses_are_counted_under_their_labels_and_metrics_pass_promtool() {
    use scripted::{json_answer, Act, Scripted};
    let statuses = ["418 I'm a teapot", "207 Multi-Status", "299 Odd", "200 OK"];
    // The partner answers each request it reads with the next of `statuses`.
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let partner = Scripted::start(move |_, _, _| {
        let n = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Act::Answer(json_answer(statuses[n.min(statuses.len() - 1)], "", "{}"))
    });
    let gw = Gateway::start(
        "",
        &[("acme-ship", &ship_partner(&partner.url()))],
        &[("SHIP_TOKEN", "t")],
    );
    check_metrics(&gw.metrics());

    let shipment = r#"{"order_id":"o1","shipments":[{"customer_id":"c-1","name":"A"}]}"#;
    let post = |target: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        gw.send("POST", target, &all, Some(body)).status
    };
    let ship = "/acme-ship/v1/shipments";
    for want in [418, 207, 299, 200] {
        assert_eq!(post(ship, &[], shipment.as_bytes()), want);
    }
    let too_large = vec![b' '; 200_000];
    assert_eq!(post(ship, &[], &too_large), 413);
    assert_eq!(post(ship, &[("content-type", "text/plain")], b"{}"), 415);
    let get = gw.send("GET", ship, &[], None).status;
    assert_eq!(get, 405);
    assert_eq!(post("/acme-ship/v1/nothing", &[], b"{}"), 403);
    assert_eq!(post("/nobody/v1/shipments", &[], b"{}"), 404);
    // A head too large for the gateway: answered before any partner or route is known.
    let mut head = format!("POST {ship} HTTP/1.1\r\nhost: gw\r\n").into_bytes();
    head.extend_from_slice(format!("x-filler: {}\r\n", "a".repeat(200_000)).as_bytes());
    let mut stream = std::net::TcpStream::connect(gw.addr).unwrap();
    let _ = std::io::Write::write_all(&mut stream, &head);
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let text = gw.metrics();
    check_metrics(&text);
    let requests = |partner: &str, route: &str, status: u16| {
        metric(
            &text,
            &format!(
                r#"partner_gateway_requests_total{{partner="{partner}",route="{route}",status="{status}"}}"#
            ),
        )
    };
    for status in [418, 207, 299, 200, 413, 415] {
        assert_eq!(
            requests("acme-ship", "/v1/shipments", status),
            1.0,
            "{status}\n{text}"
        );
    }
    // A method the route does not take is counted on the route that owns the path; a path
    // no route owns is not known.
    assert_eq!(requests("acme-ship", "/v1/shipments", 405), 1.0, "{text}");
    assert_eq!(requests("acme-ship", "unknown", 403), 1.0, "{text}");
    assert_eq!(requests("unknown", "unknown", 404), 1.0, "{text}");
    assert_eq!(requests("unknown", "unknown", 431), 1.0, "{text}");
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("partner_gateway_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 10.0, "{text}");
    let refused = |partner: &str, reason: &str| {
        metric(
            &text,
            &format!(
                r#"partner_gateway_requests_refused_total{{partner="{partner}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(refused("acme-ship", "body_too_large"), 1.0, "{text}");
    assert_eq!(
        refused("acme-ship", "unsupported_media_type"),
        1.0,
        "{text}"
    );
    assert_eq!(refused("acme-ship", "method_not_allowed"), 1.0, "{text}");
    assert_eq!(refused("acme-ship", "route_not_allowed"), 1.0, "{text}");
    assert_eq!(refused("unknown", "unknown_partner"), 1.0, "{text}");
    assert_eq!(refused("unknown", "header_too_large"), 1.0, "{text}");
    let durations = r#"partner_gateway_request_duration_seconds_count{partner="acme-ship",route="/v1/shipments"}"#;
    assert_eq!(metric(&text, durations), 7.0, "{text}");
    assert_eq!(partner.requests().len(), 4);
}
