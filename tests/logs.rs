//! The log never holds request content: a marker string sent in bodies, queries, path
//! parameters, headers, tokens, methods and admin paths — on forwarded, refused and failing
//! requests (200, 400, 401, 404, 413, 431, 451, 502, 504) — appears in no line, with the gateway at
//! the most verbose level (`RUST_LOG=trace`). Every line is one JSON object, and every request
//! has one access line with exactly the documented fields.
mod util;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

const M: &str = "LEAKMARKER7731";
const ADMIN_ENV: &str = "LOGS_TEST_ADMIN_TOKEN";
const ADMIN_TOKEN: &str = "logs-admin-token";

const ACCESS_FIELDS: [&str; 14] = [
    "time",
    "level",
    "request_id",
    "partner",
    "route",
    "method",
    "status",
    "reason",
    "duration_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    "records_forwarded",
    "records_dropped",
];

fn gateway_yaml(listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"listen: {listen}
admin_listen: {admin}
limits: {{ max_body_bytes: 2000, max_depth: 16, upstream_timeout_ms: 400 }}
admin_token_env: {ADMIN_ENV}
optouts: {{ path: data/optouts }}
{}"#,
        callers_and_signing_yaml()
    )
}

fn contractor(upstream: &str) -> String {
    format!(
        r#"kind: contractor
purpose: shipping
upstream: {upstream}
routes:
  - path: /v1/items/{{id}}
    methods: [POST]
    allow: [a]
    query: [page]
    headers: [x-request-id]
allowed_callers: [orders-service]
"#
    )
}

fn business_partner(upstream: &str) -> String {
    format!(
        r#"kind: business_partner
purpose: marketing
upstream: {upstream}
routes:
  - path: /v1/contact
    methods: [POST]
    records: $
    subject: customer_id
    allow: [customer_id, name]
allowed_callers: [orders-service]
"#
    )
}

fn token() -> String {
    partner_gateway::cli::token::mint(
        &PathBuf::from(CERTS).join("callers-demo.pem"),
        "orders-service",
        Duration::from_secs(300),
        CALLER_ISSUER,
        CALLER_AUDIENCE,
        Some("callers-demo-1"),
    )
    .unwrap()
}

/// A gateway whose stderr goes to a file; the file's lines once it was killed.
struct Logged {
    addr: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
    proc: Option<Proc>,
    _policy: PolicyDir,
}

impl Logged {
    fn start(partners: &[(&str, &str)], format: &str) -> Logged {
        let (addr, admin) = (free_addr(), free_addr());
        let policy = PolicyDir::new(&gateway_yaml(addr, admin), partners);
        let log = policy.root().join("gateway.log");
        let child = Command::new(BIN)
            .args(["serve", "--log-format", format, "--policy"])
            .arg(policy.policy())
            .current_dir(policy.root())
            .env("RUST_LOG", "trace")
            .env(ADMIN_ENV, ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut proc = Proc { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err()
            || std::net::TcpStream::connect(admin).is_err()
        {
            assert!(Instant::now() < deadline, "gateway did not start");
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!(
                    "gateway exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Logged {
            addr,
            admin,
            log,
            proc: Some(proc),
            _policy: policy,
        }
    }

    fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> u16 {
        http1::send(
            &self.addr.to_string(),
            method,
            target,
            headers,
            Some(body.as_bytes()),
        )
        .map(|r| r.status)
        .unwrap_or(0)
    }

    fn admin(&self, method: &str, path: &str, auth: &str, body: Option<&str>) -> u16 {
        let auth = format!("Bearer {auth}");
        http1::send(
            &self.admin.to_string(),
            method,
            path,
            &[("authorization", auth.as_str())],
            body.map(str::as_bytes),
        )
        .unwrap()
        .status
    }

    /// Raw bytes on the proxy port; whatever comes back (if anything) is ignored.
    fn raw(&self, bytes: &[u8]) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(bytes);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }

    /// Stops the gateway and returns its log lines.
    fn lines(&mut self) -> Vec<String> {
        // Access lines are written after the answer: give the last one a moment.
        std::thread::sleep(Duration::from_millis(300));
        self.proc = None;
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn no_request_content_reaches_any_log_line_at_trace_level() {
    let ok = Mock::start();
    let slow = Mock::start_with_delay(3000);
    let down = format!("http://{}", free_addr());
    let mut gw = Logged::start(
        &[
            ("ship", &contractor(&ok.url())),
            ("slow", &contractor(&slow.url())),
            ("down", &contractor(&down)),
            ("bp", &business_partner(&ok.url())),
            ("bpdown", &business_partner(&down)),
        ],
        "json",
    );
    let token = token();
    let bearer = format!("Bearer {token}");
    let auth = bearer.as_str();
    let json = ("content-type", "application/json");
    let marked = [
        ("x-request-id", M),
        ("x-other", M),
        ("cookie", M),
        ("user-agent", M),
        ("referer", M),
        ("x-forwarded-for", M),
    ];
    let body = format!(r#"{{"a":"{M}","b":"{M}"}}"#);
    let target = format!("/ship/v1/items/{M}?page={M}&other={M}");

    let mut headers = vec![json, ("authorization", auth)];
    headers.extend(marked);
    assert_eq!(gw.send("POST", &target, &headers, &body), 200);
    // 400: malformed JSON, and a bad path
    let broken = format!(r#"{{"a":"{M}""#);
    assert_eq!(gw.send("POST", &target, &headers, &broken), 400);
    assert_eq!(
        gw.send(
            "POST",
            &format!("/ship/v1/items/{M}/../x?q={M}"),
            &headers,
            &body
        ),
        400
    );
    // 401: a marker as the caller token
    let bad_auth = format!("Bearer {M}");
    assert_eq!(
        gw.send(
            "POST",
            &target,
            &[json, ("authorization", &bad_auth)],
            &body
        ),
        401
    );
    // 404, 403, 405: unknown partner, unknown route, unknown method
    assert_eq!(
        gw.send("POST", &format!("/{M}/v1/items/1?x={M}"), &headers, &body),
        404
    );
    assert_eq!(gw.send("POST", &format!("/ship/{M}"), &headers, &body), 403);
    assert_eq!(gw.send(M, &target, &headers, &body), 405);
    // 413
    let big = format!(r#"{{"a":"{}"}}"#, M.repeat(300));
    assert_eq!(gw.send("POST", &target, &headers, &big), 413);
    // 451: a customer (the marker) who opted out
    let opted_out = r#"{"scopes":["partner_sharing"]}"#.to_string();
    assert_eq!(
        gw.admin(
            "PUT",
            &format!("/optouts/{M}"),
            ADMIN_TOKEN,
            Some(&opted_out)
        ),
        200
    );
    assert_eq!(
        gw.admin("GET", &format!("/optouts/{M}"), ADMIN_TOKEN, None),
        200
    );
    assert_eq!(gw.admin("GET", &format!("/optouts/{M}?{M}"), M, None), 401);
    let record = format!(r#"{{"customer_id":"{M}","name":"{M}"}}"#);
    assert_eq!(gw.send("POST", "/bp/v1/contact", &headers, &record), 451);
    // 502 and 504 (one 502 on a route with records: the record was decided, never forwarded)
    let other = format!(r#"{{"customer_id":"c-{M}","name":"{M}"}}"#);
    assert_eq!(gw.send("POST", "/bpdown/v1/contact", &headers, &other), 502);
    assert_eq!(
        gw.send(
            "POST",
            &format!("/down/v1/items/{M}?page={M}"),
            &headers,
            &body
        ),
        502
    );
    assert_eq!(
        gw.send(
            "POST",
            &format!("/slow/v1/items/{M}?page={M}"),
            &headers,
            &body
        ),
        504
    );
    // Broken HTTP that pingora itself rejects: bad content-length, bad header bytes.
    gw.raw(
        format!("POST /ship/v1/items/{M}?{M} HTTP/1.1\r\nhost: x\r\ncontent-length: {M}\r\n\r\n")
            .as_bytes(),
    );
    gw.raw(format!("GET /ship/{M} HTTP/1.1\r\nhost: x\r\nx-bad: \x01{M}\r\n\r\n").as_bytes());
    gw.raw(format!("POST /ship/v1/items/{M} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz{M}\r\n").as_bytes());
    // A head over the limit (431), answered before pingora parses it: it has its access line too.
    let huge = M.repeat(70_000 / M.len());
    gw.raw(
        format!("POST /ship/v1/items/{M} HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n").as_bytes(),
    );

    let lines = gw.lines();
    let leaks: Vec<&String> = lines
        .iter()
        .filter(|l| l.to_ascii_uppercase().contains(M))
        .collect();
    assert!(leaks.is_empty(), "the marker reached the log:\n{leaks:#?}");

    let mut statuses = BTreeSet::new();
    for line in &lines {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        let object = value.as_object().expect("a JSON object");
        assert!(
            object.contains_key("time") && object.contains_key("level"),
            "{line}"
        );
        if object.contains_key("request_id") {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            let mut expected = ACCESS_FIELDS.to_vec();
            expected.sort_unstable();
            let mut keys = keys.clone();
            keys.sort_unstable();
            assert_eq!(keys, expected, "{line}");
            statuses.insert(object["status"].as_u64().unwrap());
            let refused = object["reason"].as_str();
            assert_eq!(refused.is_some(), object["status"] != 200, "{line}");
            // Counted like records_forwarded_total: a refusal before any body byte went
            // forwarded none (a 504 after the body went counts what the partner got).
            let forwarded = object["records_forwarded"].as_u64();
            if refused.is_some() && object["bytes_out"] == 0 {
                assert_eq!(forwarded, Some(0), "{line}");
            }
            // A partner that could not be reached got no byte.
            if object["status"] == 502 {
                assert_eq!(object["bytes_out"], 0, "{line}");
            }
        }
    }
    for status in [200, 400, 401, 403, 404, 405, 413, 431, 451, 502, 504] {
        assert!(
            statuses.contains(&status),
            "no access line with status {status}: {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains(r#""message":"started""#)),
        "no start event: {lines:#?}"
    );
    // A wrong admin token shows in the log (without the path's id or the token).
    assert!(
        lines.iter().any(|l| l.contains(
            "requests refused so far for a missing or wrong admin token (latest: GET /optouts)"
        )),
        "no line for the refused admin token: {lines:#?}"
    );
}

#[test]
fn text_format_writes_the_same_fields_readably() {
    let ok = Mock::start();
    let mut gw = Logged::start(&[("ship", &contractor(&ok.url()))], "text");
    let bearer = format!("Bearer {}", token());
    let headers = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    assert_eq!(
        gw.send("POST", "/ship/v1/items/7", &headers, r#"{"a":1}"#),
        200
    );
    let lines = gw.lines();
    let access = lines
        .iter()
        .find(|l| l.contains("request_id="))
        .unwrap_or_else(|| panic!("no access line: {lines:#?}"));
    assert!(!access.starts_with('{'), "{access}");
    for field in [
        "partner=\"ship\"",
        "route=\"/v1/items/{id}\"",
        "status=200",
        "reason=null",
    ] {
        assert!(access.contains(field), "{field} missing: {access}");
    }
}

#[test]
fn a_stderr_no_one_reads_never_holds_up_requests_nor_the_exit() {
    let (addr, admin) = (free_addr(), free_addr());
    let policy = PolicyDir::new(&gateway_yaml(addr, admin), &[]);
    // A pipe whose reader never reads: it fills after 64 KiB, about 200 access lines; past
    // the 10,000 lines the gateway queues, lines are dropped.
    let child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(policy.policy())
        .current_dir(policy.root())
        .env(ADMIN_ENV, ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc { child };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..3000 {
                    let r = http1::send(&addr.to_string(), "GET", "/nobody/x", &[], None)
                        .unwrap_or_else(|e| panic!("request {t}/{i} got no answer: {e}"));
                    assert_eq!(r.status, 404, "request {t}/{i}");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "requests are held up by the log"
    );
    let r = http1::send(&admin.to_string(), "GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 200);
    // SIGTERM: the gateway drains and exits although its last lines cannot be written.
    let pid = proc.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A policy `serve` refuses is logged like every other event: one JSON object per line, whose
/// message names the file, line and field.
#[test]
fn a_refused_start_is_a_json_line_naming_file_and_line() {
    let (addr, admin) = (free_addr(), free_addr());
    let yaml = format!("{}bogus_key: 1\n", gateway_yaml(addr, admin));
    let policy = PolicyDir::new(&yaml, &[("ship", &contractor("http://127.0.0.1:9"))]);
    let out = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(policy.policy())
        .current_dir(policy.root())
        .env(ADMIN_ENV, ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let refused = lines
        .iter()
        .find(|l| l["level"] == "error")
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("gateway.yaml:"), "{message}");
    assert!(message.contains("bogus_key"), "{message}");
    // Past the log's filter: a filter that would drop it (`none` names a target, `off` drops
    // everything, a field directive keeps only events with that field) still gets the line.
    for filter in [
        "none",
        "off",
        "info,partner_gateway=off",
        "[{partner}]=info",
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--policy"])
            .arg(policy.policy())
            .current_dir(policy.root())
            .env(ADMIN_ENV, ADMIN_TOKEN)
            .env("RUST_LOG", filter)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line: Value = serde_json::from_str(stderr.trim())
            .unwrap_or_else(|e| panic!("RUST_LOG={filter}: not one JSON line ({e}): {stderr:?}"));
        assert!(
            line["message"].as_str().unwrap().contains("bogus_key"),
            "{line}"
        );
    }
}
