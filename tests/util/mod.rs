//! Test harness: the real `partner-gateway` binary (serve, mock-partner) on loopback ports,
//! driven with raw HTTP/1.1. Each process is killed when its handle drops.
#![allow(dead_code)]

pub mod pg;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use partner_gateway::http1::{self, Response};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_partner-gateway");

/// Runs `command` with `input` on its stdin (stdout and stderr as the caller set them) and
/// waits for it; a child that exits before reading all of it is no error.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A loopback address nothing listens on, for a child process to bind.
///
/// The port comes from below the kernel's ephemeral range (32768 and up), so neither another
/// `bind(0)` nor an outgoing connection can take it between this check and the child's bind,
/// and one test process never hands out the same port twice (tests run in parallel threads).
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % COUNT;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < COUNT, "no free loopback port left");
        let port = FIRST + (offset + n) % COUNT;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return listener.local_addr().unwrap();
        }
    }
}

fn wait_until_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited with {status} before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listening on {addr}");
}

/// A running process, killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `mock-partner` process: the recording upstream.
pub struct Mock {
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Mock {
    pub fn start() -> Mock {
        Mock::start_with_delay(0)
    }

    pub fn start_with_delay(delay_ms: u64) -> Mock {
        let addr = free_addr();
        let mut child = Command::new(BIN)
            .args([
                "mock-partner",
                "--listen",
                &addr.to_string(),
                "--delay-ms",
                &delay_ms.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until_listening(addr, &mut child);
        Mock {
            addr,
            _proc: Proc { child },
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request the mock received, in order.
    pub fn received(&self) -> Vec<Value> {
        let r = http1::send(&self.addr.to_string(), "GET", "/_mock/requests", &[], None).unwrap();
        match serde_json::from_slice(&r.body).unwrap() {
            Value::Array(items) => items,
            other => panic!("unexpected mock log {other}"),
        }
    }

    /// The body bytes of the only request received.
    pub fn only_body(&self) -> String {
        let received = self.received();
        assert_eq!(
            received.len(),
            1,
            "expected exactly one request at the partner: {received:#?}"
        );
        received[0]["body"].as_str().unwrap().to_string()
    }

    pub fn only_headers(&self) -> Vec<(String, String)> {
        let received = self.received();
        assert_eq!(
            received.len(),
            1,
            "expected exactly one request at the partner: {received:#?}"
        );
        headers_of(&received[0])
    }
}

pub fn headers_of(record: &Value) -> Vec<(String, String)> {
    record["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A policy directory in a temp dir.
pub struct PolicyDir {
    pub dir: tempfile::TempDir,
}

impl PolicyDir {
    /// `gateway_yaml` may use `{listen}` / `{admin}`; partners are (id, yaml) with `{upstream}`.
    pub fn new(gateway_yaml: &str, partners: &[(&str, &str)]) -> PolicyDir {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy");
        std::fs::create_dir_all(policy.join("partners")).unwrap();
        std::fs::write(policy.join("gateway.yaml"), gateway_yaml).unwrap();
        for (id, yaml) in partners {
            std::fs::write(policy.join("partners").join(format!("{id}.yaml")), yaml).unwrap();
        }
        PolicyDir { dir }
    }

    pub fn policy(&self) -> PathBuf {
        self.dir.path().join("policy")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// A `serve` process on its own ports.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub policy: PolicyDir,
    proc: Option<Proc>,
    env: Vec<(String, String)>,
}

/// A minimal gateway.yaml: no caller auth (local development mode), given limits, and no
/// data-use tokens (`signing: { disabled: true }`) unless `extra` has a `signing` section.
pub fn gateway_yaml(listen: SocketAddr, admin: SocketAddr, extra: &str) -> String {
    // Last, so the line numbers of `extra` stay those of a policy without it.
    let signing = if extra.contains("signing:") {
        ""
    } else if extra.is_empty() || extra.ends_with('\n') {
        "signing: { disabled: true }\n"
    } else {
        "\nsigning: { disabled: true }\n"
    };
    format!(
        "listen: {listen}\nadmin_listen: {admin}\nlimits: {{ max_body_bytes: 100000, max_depth: 16, upstream_timeout_ms: 1500 }}\ncallers:\n  allow_unauthenticated: true\n{extra}{signing}"
    )
}

impl Gateway {
    /// Starts `serve` on a policy made of `gateway.yaml` (see [`gateway_yaml`]) and partner files.
    pub fn start(
        extra_gateway_yaml: &str,
        partners: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start_with(
            |addr, admin| gateway_yaml(addr, admin, extra_gateway_yaml),
            partners,
            env,
        )
    }

    /// Starts `serve` on a whole `gateway.yaml` made by `yaml(listen, admin)`.
    pub fn start_with(
        yaml: impl FnOnce(SocketAddr, SocketAddr) -> String,
        partners: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start_prepared(yaml, partners, env, |_| {})
    }

    /// Like [`Gateway::start_with`], with `prepare(root)` run on the directory that holds
    /// `policy/` before the gateway starts (to add files the policy names).
    pub fn start_prepared(
        yaml: impl FnOnce(SocketAddr, SocketAddr) -> String,
        partners: &[(&str, &str)],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Gateway {
        let addr = free_addr();
        let admin = free_addr();
        let policy = PolicyDir::new(&yaml(addr, admin), partners);
        prepare(policy.root());
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut gateway = Gateway {
            addr,
            admin,
            policy,
            proc: None,
            env,
        };
        gateway.spawn();
        gateway
    }

    pub fn spawn(&mut self) {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--policy"])
            .arg(self.policy.policy())
            .current_dir(self.policy.root())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        wait_until_listening(self.addr, &mut child);
        wait_until_listening(self.admin, &mut child);
        self.proc = Some(Proc { child });
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// The process id of the running `serve`.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("running").child.id()
    }

    /// Waits (at most 20 s) for the process to exit on its own, e.g. after SIGTERM.
    pub fn wait(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not exit within 20 s");
    }

    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        http1::send(&self.addr.to_string(), method, target, headers, body).unwrap()
    }

    pub fn post_json(&self, target: &str, body: &str) -> Response {
        self.send(
            "POST",
            target,
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    }

    pub fn raw(&self, raw: &[u8]) -> Response {
        http1::send_raw(&self.addr.to_string(), raw).unwrap()
    }

    pub fn admin_get(&self, path: &str) -> Response {
        http1::send(&self.admin.to_string(), "GET", path, &[], None).unwrap()
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(self.admin_get("/metrics").body).unwrap()
    }

    /// `POST /reload` on the admin port, with `Bearer <token>` when given.
    pub fn reload(&self, token: Option<&str>) -> Response {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        http1::send(
            &self.admin.to_string(),
            "POST",
            "/reload",
            &headers,
            Some(b""),
        )
        .unwrap()
    }
}

/// Asserts a JSON refusal with this status and code.
pub fn assert_refused(response: &Response, status: u16, code: &str) {
    assert_eq!(
        response.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["error"], code, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}

/// A new connection to `addr` (reads on it time out after 5 s) with `raw` written on it.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::io::Write::write_all(&mut stream, raw).unwrap();
    stream
}

/// Writes `raw` on one connection and reads until the gateway closes it (or 5 s pass).
pub fn everything_on_one_connection(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = send_raw(addr, raw);
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut all);
    all
}

/// Reads from `stream` until what was read so far is `done`; the connection closing (or a
/// read timing out) first fails the test.
pub fn read_until(stream: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&seen) {
        let n = std::io::Read::read(stream, &mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// The value of one series (its whole name with labels, exactly as exposed); a series that is
/// not exposed fails the test, so a misspelt name cannot pass as zero.
pub fn metric(text: &str, series: &str) -> f64 {
    let series = series.trim();
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or_else(|| {
            let family = series.split('{').next().unwrap_or(series);
            let near: Vec<&str> = text.lines().filter(|l| l.starts_with(family)).collect();
            panic!("no series {series} exposed; series of {family}: {near:#?}")
        })
}

/// The shipping contractor most integration tests put in front of a mock partner.
pub fn ship_partner(upstream: &str) -> String {
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
      - order_id
      - shipments[*].customer_id
      - shipments[*].name
      - shipments[*].address.**
      - shipments[*].items[*].sku
    transform:
      shipments[*].card_number: last4
    query: [page]
    headers: [x-request-id]
  - path: /v1/shipments/{{id}}
    methods: [GET]
allowed_callers: [orders-service]
upstream_auth: {{ header: authorization, prefix: "Bearer ", env: SHIP_TOKEN }}
"#
    )
}

/// The repository's DEMO certificates and keys.
pub const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
/// Issuer and audience of caller tokens signed with the DEMO caller key (`certs/callers.jwks.json`).
pub const CALLER_ISSUER: &str = "https://auth.ohsoft.example";
pub const CALLER_AUDIENCE: &str = "partner-gateway";
/// The issuer of the gateway's data-use tokens in [`signing_yaml`].
pub const SIGNING_ISSUER: &str = "https://partner-gateway.ohsoft.example";

/// The `signing` section of a gateway.yaml, with the DEMO data-use signing key.
pub fn signing_yaml() -> String {
    format!(
        "signing:\n  issuer: {SIGNING_ISSUER}\n  key: {CERTS}/data-use-signing.pem\n  kid: data-use-1\n"
    )
}

/// Real caller authentication (tokens checked against `certs/callers.jwks.json`), then
/// [`signing_yaml`].
pub fn callers_and_signing_yaml() -> String {
    format!(
        "callers:\n  issuer: {CALLER_ISSUER}\n  audience: {CALLER_AUDIENCE}\n  keys: {CERTS}/callers.jwks.json\n{}",
        signing_yaml()
    )
}

/// The marketing partner's audiences route: a campaign and its contacts, one record each.
pub const AUDIENCES_ROUTE: &str = "  - path: /v1/audiences
    methods: [POST]
    records: contacts[*]
    subject: customer_id
    allow:
      - campaign
      - contacts[*].customer_id
      - contacts[*].name
";

/// A marketing business partner: [`AUDIENCES_ROUTE`] first, then `rest` (more routes, then
/// the partner's other keys).
pub fn marketing_partner(upstream: &str, rest: &str) -> String {
    format!(
        "kind: business_partner\npurpose: marketing\nupstream: {upstream}\nroutes:\n{AUDIENCES_ROUTE}{rest}"
    )
}
