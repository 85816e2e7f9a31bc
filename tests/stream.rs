//! Streaming routes (`stream: ndjson`) through the real gateway, in front of a loopback
//! partner that records the raw bytes it receives and decodes the chunked body itself: what
//! the partner gets line by line, opted-out records dropped, a bad line cutting the stream
//! off without the last chunk, limits, the token, the ledger, and a large body in bounded
//! memory.
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use util::*;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
const LEDGER_KEY: &str = "stream-ledger-key";
const ADMIN_TOKEN: &str = "stream-admin-token";
/// Raw bytes and decoded body kept per connection (the rest is only counted and hashed).
const KEEP: usize = 1 << 20;

/// One connection the partner accepted.
#[derive(Default, Clone)]
struct Conn {
    head: String,
    /// The first [`KEEP`] raw bytes after the head, chunk framing included.
    raw: Vec<u8>,
    raw_len: u64,
    /// The first [`KEEP`] bytes of the de-chunked body.
    body: Vec<u8>,
    body_len: u64,
    body_sha256: String,
    /// The terminating `0\r\n\r\n` arrived.
    complete: bool,
    /// The connection is over (answered, or closed by the gateway).
    done: bool,
}

/// The partner: a raw TCP server that decodes chunked bodies itself and answers 200 with a
/// small JSON body once a body is complete.
struct Partner {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Conn>>>,
}

/// Reads from the socket and keeps the first bytes read (the raw wire view).
struct Tee {
    inner: TcpStream,
    conn: Arc<Mutex<Vec<Conn>>>,
    index: usize,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut conns = self.conn.lock().unwrap();
        let c = &mut conns[self.index];
        c.raw_len += n as u64;
        let room = KEEP.saturating_sub(c.raw.len()).min(n);
        c.raw.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl Partner {
    fn start() -> Partner {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let shared = conns.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let conns = shared.clone();
                std::thread::spawn(move || serve(stream, conns));
            }
        });
        Partner { addr, conns }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn conns(&self) -> Vec<Conn> {
        self.conns.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `n` connections are over.
    fn wait_done(&self, n: usize) -> Vec<Conn> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let conns = self.conns();
            if conns.iter().filter(|c| c.done).count() >= n {
                return conns;
            }
            assert!(Instant::now() < deadline, "partner connections not over");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most 10 s) until the body of connection `i` holds `n` bytes.
    fn wait_body(&self, i: usize, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.conns().get(i).map_or(0, |c| c.body_len) < n {
            assert!(
                Instant::now() < deadline,
                "partner did not receive {n} bytes"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(stream: TcpStream, conns: Arc<Mutex<Vec<Conn>>>) {
    let index = {
        let mut c = conns.lock().unwrap();
        c.push(Conn::default());
        c.len() - 1
    };
    let mut writer = stream.try_clone().unwrap();
    let tee = Tee {
        inner: stream,
        conn: conns.clone(),
        index,
    };
    let mut reader = BufReader::new(tee);
    let result = read_request(&mut reader, &conns, index);
    if let Ok(true) = result {
        let body = br#"{"partner":"ok"}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(body);
    }
    conns.lock().unwrap()[index].done = true;
}

/// Reads one request: its head, then a chunked body. `Ok(true)` when the last chunk came.
fn read_request(
    reader: &mut BufReader<Tee>,
    conns: &Arc<Mutex<Vec<Conn>>>,
    index: usize,
) -> std::io::Result<bool> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    {
        let mut c = conns.lock().unwrap();
        c[index].head = head;
        // The raw view starts after the head.
        let skip = c[index].head.len().min(c[index].raw.len());
        c[index].raw.drain(..skip);
        c[index].raw_len -= skip as u64;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size)? == 0 {
            return Ok(false);
        }
        let n = usize::from_str_radix(size.trim_end(), 16).map_err(std::io::Error::other)?;
        if n == 0 {
            let mut end = String::new();
            reader.read_line(&mut end)?;
            let mut c = conns.lock().unwrap();
            c[index].complete = end == "\r\n";
            c[index].body_sha256 = URL_SAFE_NO_PAD.encode(hasher.finalize());
            return Ok(c[index].complete);
        }
        let mut left = n;
        while left > 0 {
            let take = left.min(buf.len());
            reader.read_exact(&mut buf[..take])?;
            hasher.update(&buf[..take]);
            let mut c = conns.lock().unwrap();
            let room = KEEP.saturating_sub(c[index].body.len()).min(take);
            c[index].body.extend_from_slice(&buf[..room]);
            c[index].body_len += take as u64;
            left -= take;
        }
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        // Hash so far, for bodies cut off later.
        conns.lock().unwrap()[index].body_sha256 =
            URL_SAFE_NO_PAD.encode(hasher.clone().finalize());
    }
}

fn partner_yaml(upstream: &str) -> String {
    format!(
        r#"kind: business_partner
purpose: marketing
upstream: {upstream}
routes:
  - path: /v1/contacts
    methods: [POST, PUT]
    stream: ndjson
    subject: customer_id
    allow: [customer_id, city, 'tags[*]']
    transform:
      email: mask
    categories:
      customer_id: user.unique_id
      city: user.contact.address.city
      'tags[*]': user.behavior
      email: user.contact.email
    query: [batch]
  - path: /v1/single
    methods: [POST]
    records: $
    subject: customer_id
    allow: [customer_id]
  - path: /v1/owners/{{owner:subject}}/contacts
    methods: [POST]
    stream: ndjson
    subject: customer_id
    allow: [customer_id]
allowed_callers: [marketing]
"#
    )
}

struct Setup {
    partner: Partner,
    gateway: Gateway,
}

fn setup(limits: &str) -> Setup {
    setup_as(limits, "business_partner")
}

/// [`setup`] with the partner of another `kind`.
fn setup_as(limits: &str, kind: &str) -> Setup {
    let partner = Partner::start();
    let extra = format!(
        "optouts: {{ path: data/optouts }}\nadmin_token_env: STREAM_ADMIN\nsigning:\n  issuer: https://partner-gateway.ohsoft.example\n  key: {CERTS}/data-use-signing.pem\n  kid: data-use-1\nledger:\n  path: data/ledger\n  subject_key_env: STREAM_LEDGER_KEY\n"
    );
    let yaml =
        partner_yaml(&partner.url()).replace("kind: business_partner", &format!("kind: {kind}"));
    let partners = [("ads", yaml)];
    let partners: Vec<(&str, &str)> = partners.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let gateway = Gateway::start_with(
        |addr, admin| {
            let yaml = gateway_yaml(addr, admin, &extra);
            if limits.is_empty() {
                yaml
            } else {
                yaml.replace(
                    "limits: { max_body_bytes: 100000, max_depth: 16, upstream_timeout_ms: 1500 }",
                    limits,
                )
            }
        },
        &partners,
        &[
            ("STREAM_ADMIN", ADMIN_TOKEN),
            ("STREAM_LEDGER_KEY", LEDGER_KEY),
        ],
    );
    Setup { partner, gateway }
}

fn opt_out(gateway: &Gateway, id: &str) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http1::send(
        &gateway.admin.to_string(),
        "PUT",
        &format!("/optouts/{id}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(br#"{"scopes": ["partner_sharing"]}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Sends a chunked request whose body chunks come from `chunks` (on a thread, so that a
/// gateway answering early is read while the body is still being sent), and reads the answer.
fn stream_request(
    addr: SocketAddr,
    target: &str,
    content_type: &str,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> Response {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nhost: gw\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).unwrap();
    let sender = std::thread::spawn(move || {
        for chunk in chunks {
            if chunk.is_empty() {
                continue;
            }
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if writer.write_all(&frame).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let response = http1::read_response(stream, false).unwrap();
    let _ = sender.join();
    response
}

/// The chunks of `lines`, one per element, then nothing.
fn chunks(parts: &[&str]) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    parts
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect::<Vec<_>>()
        .into_iter()
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn ledger_lines(gateway: &Gateway) -> Vec<Value> {
    let dir = gateway.policy.root().join("data/ledger");
    let mut out = Vec::new();
    for name in partner_gateway::ledger::ledger_files(&dir).unwrap() {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    out
}

/// The record of the only request in the ledger and its outcome line.
fn record_and_outcome(gateway: &Gateway) -> (Value, Value) {
    let lines = ledger_lines(gateway);
    let records: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("partner").is_some())
        .collect();
    assert_eq!(records.len(), 1, "{lines:#?}");
    let seq = &records[0]["seq"];
    let outcome = lines
        .iter()
        .find(|l| l.get("outcome_of") == Some(seq))
        .unwrap_or_else(|| panic!("no outcome: {lines:#?}"));
    (records[0].clone(), outcome.clone())
}

fn hmac(id: &str) -> String {
    gateway_core::ledger::subject_hash(LEDGER_KEY.as_bytes(), id)
}

/// `audit who-received --customer id --format json` on the gateway's ledger: its stdout.
fn who_received(s: &Setup, id: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["audit", "who-received", "--policy"])
        .arg(s.gateway.policy.policy())
        .args(["--ledger"])
        .arg(s.gateway.policy.root().join("data/ledger"))
        .args(["--customer", id, "--format", "json"])
        .env("STREAM_LEDGER_KEY", LEDGER_KEY)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `parts` one by one, running `before` (once) just before part `at` is handed out.
fn gated(
    parts: Vec<Vec<u8>>,
    at: usize,
    mut before: impl FnMut() + Send + 'static,
) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    parts.into_iter().enumerate().map(move |(n, part)| {
        if n == at {
            before();
        }
        part
    })
}

/// Waits (at most 10 s) until partner connection `i` has received `want` body bytes.
fn wait_for_body(conns: &Mutex<Vec<Conn>>, i: usize, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while conns.lock().unwrap().get(i).map_or(0, |c| c.body_len) < want && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn records_are_filtered_line_by_line_and_forwarded_chunked() {
    let s = setup("");
    opt_out(&s.gateway, "c-out");
    // Records cut anywhere between chunks (inside a subject id, the opted-out one's included,
    // and between `\r` and `\n`), each chunk sent on its own.
    let body = [
        "{\"customer_id\":\"c-",
        "1\",\"city\":\"Ulm\",\"email\":\"a@x\",\"phone\":\"SECRET-1\"}\n{\"customer_id\":\"c-o",
        "ut\",\"city\":\"SECRET-2\"}\r",
        "\n\r\n{\"customer_id\":2,\"tags\":[\"a\",\"b\"],\"ip\":\"SECRET-3\"}\n ",
        "  \n{\"customer_id\":\"c-3\",\"city\":\"Bo",
        "nn\"}",
    ];
    let paced = chunks(&body).inspect(|_| std::thread::sleep(Duration::from_millis(20)));
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts?batch=7&secret=SECRET-4",
        "application/x-ndjson",
        paced,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.body, br#"{"partner":"ok"}"#,
        "the partner's answer is relayed"
    );
    assert_eq!(r.header("ohsoft-records-dropped"), Some("1"));

    let conns = s.partner.wait_done(1);
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert!(c.complete, "the stream ended with its last chunk");
    let expected = "{\"customer_id\":\"c-1\",\"city\":\"Ulm\",\"email\":\"***\"}\n{\"customer_id\":2,\"tags\":[\"a\",\"b\"]}\n{\"customer_id\":\"c-3\",\"city\":\"Bonn\"}\n";
    assert_eq!(String::from_utf8_lossy(&c.body), expected);
    assert!(!String::from_utf8_lossy(&c.raw).contains("SECRET"));
    let head = c.head.to_ascii_lowercase();
    assert!(
        head.starts_with("post /v1/contacts?batch=7 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/x-ndjson\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");

    // The token says stream and binds no body; the ledger's outcome has the digest of what was sent.
    let token = c
        .head
        .lines()
        .find_map(|l| l.strip_prefix("ohsoft-data-use-token: "))
        .expect("a data-use token");
    let claims = payload(token);
    assert_eq!(claims["stream"], true, "{claims}");
    assert!(claims.get("body_sha256").is_none(), "{claims}");
    assert_eq!(claims["aud"], "ads");
    let (record, outcome) = record_and_outcome(&s.gateway);
    assert_eq!(record["stream"], true);
    assert_eq!(record["body_sha256"], Value::Null);
    assert_eq!(record["token_jti"], claims["jti"]);
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(expected.as_bytes()));
    assert_eq!(outcome["body_sha256"], digest.as_str());
    assert_eq!(c.body_sha256, digest);
    assert_eq!(outcome["status"], 200);
    assert_eq!(outcome["records_forwarded"], 3);
    assert_eq!(outcome["records_dropped"], 1);
    assert_eq!(
        outcome["fields"],
        serde_json::json!(["city", "customer_id", "email", "tags[*]"])
    );
    let mut subjects = vec![hmac("c-1"), hmac("2"), hmac("c-3")];
    subjects.sort();
    assert_eq!(outcome["subjects"], serde_json::json!(subjects));

    let m = s.gateway.metrics();
    let series =
        |name: &str| format!("partner_gateway_{name}{{partner=\"ads\",route=\"/v1/contacts\"}}");
    assert_eq!(metric(&m, &series("records_forwarded_total")), 3.0);
    assert_eq!(
        metric(
            &m,
            "partner_gateway_records_dropped_total{partner=\"ads\",reason=\"opted_out\",route=\"/v1/contacts\"}"
        ),
        1.0
    );

    // The ledger verifies, and who-received finds the customer in the stream's outcome.
    let dir = s.gateway.policy.root().join("data/ledger");
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = who_received(&s, "c-3");
    assert!(text.contains("/v1/contacts"), "{text}");
    let text = who_received(&s, "c-out");
    assert!(
        !text.contains("/v1/contacts"),
        "an opted-out customer was not disclosed: {text}"
    );
}

/// A customer id the route types in its URL goes to the ledger before the stream starts: the
/// partner got it whatever the body held.
#[test]
fn a_customer_id_in_a_streams_url_is_in_its_ledger_from_the_start() {
    let s = setup("");
    let body = ["{\"customer_id\":\"c-9\"}\n"];
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/owners/c-owner/contacts",
        "application/x-ndjson",
        chunks(&body),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (record, outcome) = record_and_outcome(&s.gateway);
    // The URL's id is in the record, written before the head goes out (a stream cut off is
    // found for it too), the records' ids in the outcome.
    assert_eq!(record["subjects"], serde_json::json!([hmac("c-owner")]));
    assert_eq!(outcome["subjects"], serde_json::json!([hmac("c-9")]));
    let text = who_received(&s, "c-owner");
    assert!(
        text.contains("/v1/owners/{owner:subject}/contacts"),
        "{text}"
    );
}

/// A stream's distinct customers are written to the ledger in subjects lines as they gather
/// (4,096 a line), not held until its end: memory stays bounded however many customers one
/// stream carries, and every one of them is in the ledger exactly once here.
#[test]
fn a_long_streams_customers_go_to_the_ledger_as_they_gather() {
    let s = setup("");
    const N: usize = 10_000;
    let body: Vec<Vec<u8>> = (0..N)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|ids| {
            ids.iter()
                .map(|i| format!("{{\"customer_id\":\"c-{i}\",\"city\":\"Ulm\"}}\n"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let (record, outcome) = streamed_to_contacts(&s, body);
    let batches = subjects_lines(&s.gateway, &record);
    assert_eq!(batches.len(), N / 4096, "{}", batches.len());
    let mut all: Vec<String> = Vec::new();
    for list in batches
        .iter()
        .map(|b| &b["subjects"])
        .chain([&outcome["subjects"]])
    {
        let list: Vec<String> = serde_json::from_value(list.clone()).unwrap();
        assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
        all.extend(list);
    }
    all.sort();
    let mut want: Vec<String> = (0..N).map(|i| hmac(&format!("c-{i}"))).collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(outcome["records_forwarded"], N as u64);

    let dir = s.gateway.policy.root().join("data/ledger");
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 stream subjects lines"), "{text}");
    for id in ["c-0", "c-9999"] {
        let text = who_received(&s, id);
        assert!(text.contains("/v1/contacts"), "{id}: {text}");
    }
}

/// On a route that honours no opt-outs a subject id is only bounded by the line's length: the
/// ids held for a stream are written out once they take 256 KiB, however few they are, so
/// long ids never pile up in memory.
#[test]
fn long_customer_ids_go_to_the_ledger_before_they_pile_up() {
    let s = setup_as("", "contractor");
    let id = |i: usize| format!("{i}-{}", "x".repeat(90_000));
    let body: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("{{\"customer_id\":\"{}\",\"city\":\"Ulm\"}}\n", id(i)).into_bytes())
        .collect();
    let (record, outcome) = streamed_to_contacts(&s, body);
    let batches = subjects_lines(&s.gateway, &record);
    assert_eq!(batches.len(), 1, "{batches:?}");
    let mut first: Vec<String> = (0..3).map(|i| hmac(&id(i))).collect();
    first.sort();
    assert_eq!(batches[0]["subjects"], serde_json::json!(first));
    let mut rest: Vec<String> = (3..5).map(|i| hmac(&id(i))).collect();
    rest.sort();
    assert_eq!(outcome["subjects"], serde_json::json!(rest));
}

/// Streams `body` to the contacts route, which forwards it (200): its ledger record and outcome.
fn streamed_to_contacts(s: &Setup, body: Vec<Vec<u8>>) -> (Value, Value) {
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        body.into_iter(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    record_and_outcome(&s.gateway)
}

/// The subjects lines of the stream whose record is `record`.
fn subjects_lines(gateway: &Gateway, record: &Value) -> Vec<Value> {
    ledger_lines(gateway)
        .into_iter()
        .filter(|l| l.get("subjects_of") == Some(&record["seq"]))
        .collect()
}

/// A subjects line that cannot be written (here: the ledger file deleted under the gateway)
/// stops the stream like a bad line: 503, and the line that completed the set never leaves.
/// (The deletion may be noticed earlier, within 0.1 s: then the stream stops sooner.)
#[test]
fn a_subjects_line_that_cannot_be_written_stops_the_stream() {
    let s = setup("");
    let dir = s.gateway.policy.root().join("data/ledger");
    let parts: Vec<Vec<u8>> = (0..10)
        .map(|part| {
            (part * 500..(part + 1) * 500)
                .map(|i| format!("{{\"customer_id\":\"c-{i}\",\"city\":\"Ulm\"}}\n"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let partner_conns = s.partner.conns.clone();
    let gate = gated(parts, 2, move || {
        // Once the first lines reached the partner (the record is written by then).
        wait_for_body(&partner_conns, 0, 1);
        for name in partner_gateway::ledger::ledger_files(&dir).unwrap() {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    });
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        gate,
    );
    assert_refused(&r, 503, "not_ready");
    let conns = s.partner.wait_done(1);
    let c = &conns[0];
    assert!(!c.complete, "the partner's body was finished");
    let got = String::from_utf8_lossy(&c.body);
    assert!(got.contains("\"c-0\""), "the first lines left");
    assert!(
        !got.contains("\"c-4095\""),
        "the line completing the set never left"
    );
    let m = s.gateway.metrics();
    assert!(metric(&m, "partner_gateway_ledger_errors_total") >= 1.0);
}

/// A stream still under way (or cut off) has a record and no outcome line: `audit report`
/// counts it as a request and says that what it forwarded is not known.
#[test]
fn the_report_flags_a_stream_without_outcome() {
    let s = setup("");
    let policy = s.gateway.policy.policy();
    let partner_conns = s.partner.conns.clone();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let report = |policy: &std::path::Path, format: &str| {
        let out = std::process::Command::new(BIN)
            .args(["audit", "report", "--policy"])
            .arg(policy)
            .args(["--format", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let parts = vec![
        b"{\"customer_id\":\"c-1\",\"city\":\"Ulm\"}\n".to_vec(),
        b"{\"customer_id\":\"c-2\",\"city\":\"Ulm\"}\n".to_vec(),
    ];
    let gate = gated(parts, 1, {
        let seen = seen.clone();
        move || {
            wait_for_body(&partner_conns, 0, 1);
            let mut seen = seen.lock().unwrap();
            seen.push(report(&policy, "json"));
            seen.push(report(&policy, "md"));
        }
    });
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        gate,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = seen.lock().unwrap();
    let during: Value = serde_json::from_str(&seen[0]).unwrap();
    assert_eq!(during["streams_without_outcome"], 1, "{during}");
    assert_eq!(during["requests"], 1);
    assert!(
        seen[1].contains("1 streamed request(s) in the period have no outcome line"),
        "{}",
        seen[1]
    );
    let after: Value = serde_json::from_str(&report(&s.gateway.policy.policy(), "json")).unwrap();
    assert_eq!(after["streams_without_outcome"], 0, "{after}");
    assert_eq!(after["records_forwarded"], 2);
}

/// A line that fails mid-stream: the partner has the lines before it, then the connection
/// closes without the last chunk; nothing of the bad line or after it arrives.
#[test]
fn a_bad_line_cuts_the_stream_off_without_the_last_chunk() {
    let s = setup("");
    let cases: &[(&str, u16, &str)] = &[
        (
            "{\"customer_id\":\"c-9\",\"city\":\"BAD\",\"city\":\"x\"}\n",
            400,
            "bad_request",
        ),
        ("{\"city\":\"BAD\"}\n", 422, "subject_missing"),
        (
            "{\"customer_id\":\"c-9\",\"city\":{\"BAD\":1}}\n",
            400,
            "bad_request",
        ),
        ("[\"BAD\"]\n", 400, "bad_request"),
        (
            "{\"customer_id\":\"c-9\",\"city\":\"BAD\0\"}\n",
            400,
            "bad_request",
        ),
        (
            "{\"customer_id\":\"c-9\"}\r{\"city\":\"BAD\"}\n",
            400,
            "bad_request",
        ),
    ];
    for (i, (bad, status, code)) in cases.iter().enumerate() {
        let good = format!("{{\"customer_id\":\"c-{i}\",\"city\":\"GOOD\"}}\n");
        let first = good.repeat(3);
        let later = "{\"customer_id\":\"c-later\",\"city\":\"LATER\"}\n".repeat(3);
        // The bad line goes only once the partner has the first lines: they were streamed.
        let partner_conns = s.partner.conns.clone();
        let want = first.len() as u64;
        let parts: Vec<Vec<u8>> = vec![
            first.clone().into_bytes(),
            bad.as_bytes().to_vec(),
            later.into_bytes(),
        ];
        let gate = gated(parts, 1, move || wait_for_body(&partner_conns, i, want));
        let r = stream_request(
            s.gateway.addr,
            "/ads/v1/contacts",
            "application/x-ndjson",
            gate,
        );
        assert_refused(&r, *status, code);
        assert!(
            r.json()["message"].as_str().unwrap().starts_with("line 4:"),
            "{}",
            r.json()
        );
        let conns = s.partner.wait_done(i + 1);
        let c = &conns[i];
        assert!(
            !c.complete,
            "case {i}: the partner must see an incomplete body"
        );
        assert_eq!(String::from_utf8_lossy(&c.body), first, "case {i}");
        assert!(!c.raw.ends_with(b"0\r\n\r\n"), "case {i}: no last chunk");
        let raw = String::from_utf8_lossy(&c.raw);
        assert!(
            !raw.contains("BAD") && !raw.contains("LATER"),
            "case {i}: {raw:?}"
        );
    }
    s.partner.wait_body(0, 1);
    let m = s.gateway.metrics();
    let refused = |reason: &str| {
        metric(
            &m,
            &format!(
                "partner_gateway_requests_refused_total{{partner=\"ads\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(refused("bad_request"), 5.0);
    assert_eq!(refused("subject_missing"), 1.0);
    // The ledger: every stream has a record and an outcome with the refusal's status and the
    // digest of what the partner really got.
    let lines = ledger_lines(&s.gateway);
    let outcomes: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("outcome_of").is_some())
        .collect();
    assert_eq!(outcomes.len(), cases.len());
    for (o, (c, (_, status, _))) in outcomes.iter().zip(s.partner.conns().iter().zip(cases)) {
        assert_eq!(o["status"], *status);
        assert_eq!(o["body_sha256"], c.body_sha256.as_str());
        assert_eq!(o["records_forwarded"], 3);
    }
}

#[test]
fn lines_decided_before_a_bad_one_in_the_same_chunk_are_sent_and_ledgered_as_sent() {
    let s = setup("");
    let good =
        "{\"customer_id\":\"c-1\",\"city\":\"GOOD\"}\n{\"customer_id\":2,\"city\":\"GOOD\"}\n";
    let body =
        format!("{good}{{\"city\":\"BAD\"}}\n{{\"customer_id\":\"c-3\",\"city\":\"LATER\"}}\n");
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        chunks(&[body.as_str()]),
    );
    assert_refused(&r, 422, "subject_missing");
    assert!(r.json()["message"].as_str().unwrap().starts_with("line 3:"));
    let c = &s.partner.wait_done(1)[0];
    assert!(!c.complete, "the partner must see an incomplete body");
    assert_eq!(String::from_utf8_lossy(&c.body), good);
    let (_, outcome) = record_and_outcome(&s.gateway);
    assert_eq!(outcome["status"], 422);
    assert_eq!(outcome["body_sha256"], c.body_sha256.as_str());
    assert_eq!(outcome["records_forwarded"], 2);
    let mut subjects = vec![hmac("c-1"), hmac("2")];
    subjects.sort();
    assert_eq!(outcome["subjects"], serde_json::json!(subjects));
    // the metrics count what the partner got, as the ledger does
    let m = s.gateway.metrics();
    let forwarded =
        "partner_gateway_records_forwarded_total{partner=\"ads\",route=\"/v1/contacts\"}";
    assert_eq!(metric(&m, forwarded), 2.0);
}

#[test]
fn limits_and_refusals_before_connecting() {
    let s = setup("limits: { max_body_bytes: 64, max_depth: 16, upstream_timeout_ms: 1500 }");
    // A line over max_body_bytes: 413, the stream cut off, even though the line never ends.
    let ok = "{\"customer_id\":\"c-1\",\"city\":\"x\"}\n";
    let long = format!("{{\"customer_id\":\"c-2\",\"city\":\"{}", "y".repeat(200));
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        chunks(&[ok, &long]).chain(std::iter::repeat_n(vec![b'y'; 1000], 1000)),
    );
    assert_refused(&r, 413, "body_too_large");
    let conns = s.partner.wait_done(1);
    assert!(!conns[0].complete);
    assert_eq!(String::from_utf8_lossy(&conns[0].body), ok);
    // Many lines, each under the limit: any total size passes.
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson; charset=utf-8",
        std::iter::repeat_n(ok.repeat(100).into_bytes(), 20),
    );
    assert_eq!(r.status, 200);
    let conns = s.partner.wait_done(2);
    assert!(conns[1].complete);
    assert_eq!(conns[1].body_len, (ok.len() * 2000) as u64);

    // Refused on the head alone: no connection to the partner at all.
    for (ct, status, code) in [
        ("application/json", 415, "unsupported_media_type"),
        ("text/plain", 415, "unsupported_media_type"),
    ] {
        let r = stream_request(s.gateway.addr, "/ads/v1/contacts", ct, chunks(&[ok]));
        assert_refused(&r, status, code);
    }
    let r = s.gateway.send(
        "POST",
        "/ads/v1/contacts",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
        Some(ok.as_bytes()),
    );
    assert_refused(&r, 415, "unsupported_media_type");
    let r = s.gateway.send("GET", "/ads/v1/contacts", &[], None);
    assert_refused(&r, 405, "method_not_allowed");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        s.partner.conns().len(),
        2,
        "no connection for head refusals"
    );
    // A content-length body works too, and an empty stream is an empty chunked body.
    let r = s.gateway.send(
        "PUT",
        "/ads/v1/contacts",
        &[("content-type", "application/x-ndjson")],
        Some(ok.as_bytes()),
    );
    assert_eq!(r.status, 200);
    let r = s.gateway.send(
        "POST",
        "/ads/v1/contacts",
        &[("content-type", "application/x-ndjson")],
        None,
    );
    assert_eq!(r.status, 200);
    let conns = s.partner.wait_done(4);
    assert_eq!(String::from_utf8_lossy(&conns[2].body), ok);
    assert!(conns[3].complete && conns[3].body_len == 0);
}

/// VmHWM of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A body far bigger than anything the gateway may hold flows through; the gateway's peak
/// memory grows by a small fraction of it.
#[test]
fn a_large_stream_flows_through_in_bounded_memory() {
    const TOTAL: usize = 200 << 20;
    let s = setup("limits: { max_body_bytes: 65536, max_depth: 16, upstream_timeout_ms: 20000 }");
    let before = peak_rss(s.gateway.pid());
    // A thousand customers: the ledger keeps each distinct customer id of a stream once.
    let line = |i: usize| {
        let i = i % 1000;
        // Long removed notes keep a debug build fast per byte (the per-record work is small).
        let note = "n".repeat(2000 + i % 2000);
        format!("{{\"customer_id\":\"c-{i}\",\"city\":\"Ulm\",\"note\":\"{note}\",\"tags\":[\"a\",\"b\"]}}\n")
    };
    let mut sent = 0usize;
    let mut i = 0usize;
    let lines = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = lines.clone();
    let body = std::iter::from_fn(move || {
        if sent >= TOTAL {
            return None;
        }
        let mut chunk = Vec::with_capacity(256 * 1024);
        while chunk.len() < 256 * 1024 {
            chunk.extend_from_slice(line(i).as_bytes());
            i += 1;
        }
        counted.store(i, std::sync::atomic::Ordering::SeqCst);
        sent += chunk.len();
        Some(chunk)
    });
    let started = Instant::now();
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let conns = s.partner.wait_done(1);
    let c = &conns[0];
    assert!(c.complete);
    let expected: usize = (0..lines.load(std::sync::atomic::Ordering::SeqCst))
        .map(|i| {
            format!(
                "{{\"customer_id\":\"c-{}\",\"city\":\"Ulm\",\"tags\":[\"a\",\"b\"]}}\n",
                i % 1000
            )
            .len()
        })
        .sum();
    assert_eq!(
        c.body_len, expected as u64,
        "every record arrived, filtered"
    );
    let after = peak_rss(s.gateway.pid());
    eprintln!(
        "{} MiB in {:?}: gateway VmHWM {} -> {} MiB",
        TOTAL >> 20,
        started.elapsed(),
        before >> 20,
        after >> 20
    );
    assert!(
        after < before + (TOTAL as u64) / 4,
        "peak RSS grew from {before} to {after} bytes for a {TOTAL}-byte stream"
    );
}

#[test]
fn a_stream_whose_body_stalls_is_a_request_timeout() {
    let s = setup(
        "limits: { max_body_bytes: 100000, max_depth: 16, upstream_timeout_ms: 1500, body_timeout_ms: 400 }",
    );
    let parts = vec![
        b"{\"customer_id\":\"c-1\",\"city\":\"GOOD\"}\n".to_vec(),
        b"{\"customer_id\":\"c-2\"}\n".to_vec(),
    ];
    let gate = gated(parts, 1, || std::thread::sleep(Duration::from_millis(1500)));
    let r = stream_request(
        s.gateway.addr,
        "/ads/v1/contacts",
        "application/x-ndjson",
        gate,
    );
    assert_refused(&r, 408, "request_timeout");
    let conns = s.partner.wait_done(1);
    assert!(
        !conns[0].complete,
        "the partner must see an incomplete body"
    );
    let metrics = s.gateway.metrics();
    assert_eq!(
        metric(
            &metrics,
            "partner_gateway_connections_closed_total{reason=\"body_timeout\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "partner_gateway_requests_refused_total{partner=\"ads\",reason=\"request_timeout\"}"
        ),
        1.0
    );
    let (_, outcome) = record_and_outcome(&s.gateway);
    assert_eq!(outcome["status"], 408, "{outcome}");
}
