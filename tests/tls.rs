//! TLS on both legs with real handshakes on loopback: the gateway's listener (HTTP/1.1 and h2,
//! mTLS, certificate identities) and partners over https (trust, names, expiry, client
//! certificates), certificate rotation and the expiry metric.
mod tls_util;
mod util;

use std::path::Path;

use std::time::Duration;
use tls_util::*;
use util::*;

const BODY: &str =
    r#"{"order_id":7,"shipments":[{"customer_id":"c1","name":"Ada","email":"ada@example.com"}]}"#;
const FILTERED: &str = r#"{"order_id":7,"shipments":[{"customer_id":"c1","name":"Ada"}]}"#;

/// `tls:` for gateway.yaml with absolute paths.
fn listener_yaml(server: &Pair, client_ca: Option<&Path>, identity: bool) -> String {
    let mut yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n",
        server.cert.display(),
        server.key.display()
    );
    if let Some(ca) = client_ca {
        yaml.push_str(&format!("  client_ca: {}\n", ca.display()));
    }
    if identity {
        yaml.push_str("  client_identity: san_dns\n");
    }
    yaml
}

struct Setup {
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    server: Pair,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test Gateway CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = ca.write_leaf(dir.path(), "gateway", &["localhost", "127.0.0.1"], false);
    Setup {
        dir,
        ca_file,
        server,
    }
}

/// A gateway whose listener speaks TLS (no client certificates), in front of one shipping
/// partner at `mock`.
fn tls_ship_gateway(s: &Setup, mock: &Mock) -> Gateway {
    Gateway::start(
        &listener_yaml(&s.server, None, false),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t")],
    )
}

#[test]
fn tls_listener_serves_http1_and_h2_through_the_same_decisions() {
    let s = setup();
    let mock = Mock::start();
    let gateway = tls_ship_gateway(&s, &mock);

    let mut h1 = TlsConn::connect(
        gateway.addr,
        client_config(&s.ca_file, None, &[b"http/1.1"]),
    )
    .unwrap();
    let r = h1.post_json("/acme-ship/v1/shipments", BODY).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Kept alive: a refusal on the same connection.
    let r = h1.post_json("/acme-ship/v1/nothing-here", BODY).unwrap();
    assert_refused(&r, 403, "route_not_allowed");

    let (status, _, _) = h2_request(
        gateway.addr,
        client_config(&s.ca_file, None, &[b"h2"]),
        "POST",
        "/acme-ship/v1/shipments",
        BODY.as_bytes(),
    );
    assert_eq!(status, 200);
    let received = mock.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    for record in &received {
        assert_eq!(record["body"], FILTERED);
    }

    // h2 refusals are the same JSON refusals, and reach nobody.
    let (status, content_type, body) = h2_request(
        gateway.addr,
        client_config(&s.ca_file, None, &[b"h2"]),
        "POST",
        "/acme-ship/v1/shipments",
        br#"{"order_id":1,"order_id":2}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "bad_request");
    let (status, _, _) = h2_request(
        gateway.addr,
        client_config(&s.ca_file, None, &[b"h2"]),
        "POST",
        "/nobody/v1/x",
        b"{}",
    );
    assert_eq!(status, 404);
    assert_eq!(mock.received().len(), 2);

    let metrics = gateway.metrics();
    assert!(
        metric(
            &metrics,
            r#"partner_gateway_certificate_expiry_timestamp_seconds{name="listener"}"#
        ) > 3.0e9,
        "{metrics}"
    );
}

#[test]
fn h2_refusals_decided_before_the_body_arrives_end_without_a_reset() {
    let s = setup();
    let mock = Mock::start();
    let gateway = tls_ship_gateway(&s, &mock);
    let cases = [
        (
            "/acme-ship/v1/nothing-here",
            "application/json",
            403,
            "route_not_allowed",
        ),
        ("/nobody/v1/x", "application/json", 404, "unknown_partner"),
    ];
    for (path, content_type, status, code) in cases {
        let (got, ct, body, reset) = h2_refused_before_the_body(
            gateway.addr,
            client_config(&s.ca_file, None, &[b"h2"]),
            path,
            content_type,
            BODY.as_bytes(),
            Duration::from_millis(100),
        );
        assert_eq!(got, status, "{path}");
        assert_eq!(ct.as_deref(), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], code, "{path}");
        // The gateway waits for the rest of the body instead of resetting the stream at once
        // (curl 7.x reports a reset stream as a failure, losing the refusal).
        assert_eq!(reset, None, "{path}");
    }
    assert!(mock.received().is_empty());
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let s = setup();
    let mock = Mock::start();
    let gateway = tls_ship_gateway(&s, &mock);
    let raw = format!(
        "POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // HTTP/1.1, and HTTP/2 with prior knowledge (h2c): neither gets an HTTP answer.
    let h2c = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &[0, 0, 0, 4, 0, 0, 0, 0, 0][..],
    ]
    .concat();
    for raw in [raw.as_bytes(), &h2c] {
        let answer = plain_text_answer(gateway.addr, raw);
        assert!(
            !answer.starts_with(b"HTTP/") && !answer.windows(4).any(|w| w == b"HTTP"),
            "got an HTTP answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // An HTTP/2 SETTINGS frame would start with a 3-byte length and type 4.
        assert!(answer.len() < 9 || answer[3] != 4, "{answer:?}");
    }
    assert!(mock.received().is_empty());
}

#[test]
fn client_certificates_must_chain_to_client_ca() {
    let s = setup();
    let callers_ca = Ca::new("Callers CA");
    let callers_ca_file = callers_ca.write(s.dir.path(), "callers-ca.pem");
    let good = callers_ca.write_leaf(s.dir.path(), "orders", &["orders-service"], false);
    let stranger =
        Ca::new("Other CA").write_leaf(s.dir.path(), "other", &["orders-service"], false);
    let mock = Mock::start();
    let gateway = Gateway::start(
        &listener_yaml(&s.server, Some(&callers_ca_file), false),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t")],
    );
    let refused = |client: Option<&Pair>| {
        let config = client_config(&s.ca_file, client, &[b"http/1.1"]);
        match TlsConn::connect(gateway.addr, config) {
            Err(_) => {}
            Ok(mut conn) => {
                let result = conn.post_json("/acme-ship/v1/shipments", BODY);
                assert!(result.is_err(), "got an HTTP answer: {result:?}");
            }
        }
    };
    refused(None);
    refused(Some(&stranger));
    assert!(mock.received().is_empty());

    let mut conn =
        TlsConn::connect(gateway.addr, client_config(&s.ca_file, Some(&good), &[])).unwrap();
    let r = conn.post_json("/acme-ship/v1/shipments", BODY).unwrap();
    assert_eq!(r.status, 200);
    let metrics = gateway.metrics();
    assert!(
        metric(
            &metrics,
            r#"partner_gateway_certificate_expiry_timestamp_seconds{name="client_ca"}"#
        ) > 3.0e9
    );
}

#[test]
fn certificate_identity_is_the_caller_for_allowed_callers() {
    let s = setup();
    let callers_ca = Ca::new("Callers CA");
    let callers_ca_file = callers_ca.write(s.dir.path(), "callers-ca.pem");
    let orders = callers_ca.write_leaf(s.dir.path(), "orders", &["orders-service"], false);
    let support = callers_ca.write_leaf(s.dir.path(), "support", &["support-desk"], false);
    let nameless = callers_ca.write_leaf(s.dir.path(), "nameless", &["10.1.2.3"], false);
    let mock = Mock::start();
    let gateway = Gateway::start(
        &listener_yaml(&s.server, Some(&callers_ca_file), true),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t")],
    );
    let send = |client: &Pair| {
        let config = client_config(&s.ca_file, Some(client), &[]);
        let mut conn = TlsConn::connect(gateway.addr, config).unwrap();
        conn.post_json("/acme-ship/v1/shipments", BODY).unwrap()
    };
    assert_eq!(send(&orders).status, 200);
    assert_refused(&send(&support), 403, "caller_not_allowed");
    assert_refused(&send(&nameless), 401, "unauthenticated");
    assert_eq!(mock.received().len(), 1);
}

#[test]
fn with_jwt_callers_too_the_token_and_the_certificate_must_name_the_same_caller() {
    let s = setup();
    let callers_ca = Ca::new("Callers CA");
    let callers_ca_file = callers_ca.write(s.dir.path(), "callers-ca.pem");
    let orders = callers_ca.write_leaf(s.dir.path(), "orders", &["orders-service"], false);
    let support = callers_ca.write_leaf(s.dir.path(), "support", &["support-desk"], false);
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let tls = listener_yaml(&s.server, Some(&callers_ca_file), true);
    let mock = Mock::start();
    let gateway = Gateway::start_with(
        |listen, admin| {
            format!(
                "listen: {listen}\nadmin_listen: {admin}\ncallers:\n  issuer: https://auth.ohsoft.example\n  audience: partner-gateway\n  keys: {certs}/callers.jwks.json\nsigning: {{ disabled: true }}\n{tls}"
            )
        },
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t")],
    );
    let token = |sub: &str| {
        let jwt = partner_gateway::cli::token::mint(
            &Path::new(certs).join("callers-demo.pem"),
            sub,
            std::time::Duration::from_secs(300),
            "https://auth.ohsoft.example",
            "partner-gateway",
            Some("callers-demo-1"),
        )
        .unwrap();
        format!("Bearer {jwt}")
    };
    let send = |client: &Pair, authorization: Option<&str>| {
        let config = client_config(&s.ca_file, Some(client), &[]);
        let mut conn = TlsConn::connect(gateway.addr, config).unwrap();
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(authorization.map(|a| ("authorization", a)));
        conn.request(
            "POST",
            "/acme-ship/v1/shipments",
            &headers,
            Some(BODY.as_bytes()),
        )
        .unwrap()
    };
    let r = send(&orders, Some(&token("orders-service")));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.only_body(), FILTERED);
    // The token names another caller than the certificate.
    assert_refused(
        &send(&orders, Some(&token("support-desk"))),
        403,
        "caller_not_allowed",
    );
    assert_refused(
        &send(&support, Some(&token("orders-service"))),
        403,
        "caller_not_allowed",
    );
    // The certificate alone is not enough when JWT callers are configured.
    assert_refused(&send(&orders, None), 401, "unauthenticated");
    // Both agree, but that caller may not use this partner.
    assert_refused(
        &send(&support, Some(&token("support-desk"))),
        403,
        "caller_not_allowed",
    );
    assert_eq!(mock.received().len(), 1);
}

#[test]
fn the_demo_runs_both_legs_over_tls_with_the_demo_certificates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(BIN)
        .args(["demo", "--tls", "--policy"])
        .arg(Path::new(root).join("policy"))
        .current_dir(root)
        // A real partner credential in the environment is used but never printed.
        .env("ACME_SHIP_API_TOKEN", "S3CRET-acme-from-env")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("S3CRET"), "{stdout}");
    assert!(
        stdout.contains("(the partner's credential from the environment: not shown)"),
        "{stdout}"
    );
    assert!(stdout.contains("TLS on both legs"), "{stdout}");
    assert!(
        stdout.contains("the partner verified the gateway's client certificate (partner-gateway.ohsoft.example)"),
        "{stdout}"
    );
    assert!(stdout.contains("every partner received only what its policy allows"));
}

/// `check` (and `serve`) on a policy whose certificate files are broken in every way: each
/// problem is one `FILE:LINE: key PATH: message` line, and nothing panics.
#[test]
fn check_and_serve_name_every_bad_certificate_or_key_file() {
    let s = setup();
    let dir = s.dir.path();
    let ca = Ca::new("Partner CA");
    let partner_client = ca.write_leaf(dir, "client", &["gw.example"], false);
    let other = ca.write_leaf(dir, "other", &["gw.example"], false);
    let expired = ca.write_leaf(dir, "expired", &["localhost"], true);
    std::fs::write(
        dir.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("not-x509.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let run = |tls_yaml: &str, partner_tls: &str| {
        let policy = PolicyDir::new(
            &gateway_yaml(free_addr(), free_addr(), tls_yaml),
            &[(
                "acme-ship",
                &format!("{}{partner_tls}", ship_partner("https://127.0.0.1:1")),
            )],
        );
        let out = std::process::Command::new(BIN)
            .args(["check", "--policy"])
            .arg(policy.policy())
            .output()
            .unwrap();
        let (code, stdout) = (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        if code == Some(0) {
            return (code, stdout, String::new());
        }
        // An invalid policy: `serve` must refuse to start, with the same lines.
        let serve = std::process::Command::new(BIN)
            .args(["serve", "--policy"])
            .arg(policy.policy())
            .env("SHIP_TOKEN", "t")
            .output()
            .unwrap();
        let serve_err = String::from_utf8_lossy(&serve.stderr).into_owned();
        assert!(!serve.status.success(), "{serve_err}");
        assert!(!serve_err.contains("panicked"), "{serve_err}");
        (code, stdout, serve_err)
    };
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
        dir.join("garbage.pem").display(),
        s.server.key.display(),
        dir.join("missing.pem").display()
    );
    let partner_tls = format!(
        "tls:\n  ca: {}\n  client_cert: {}\n  client_key: {}\n",
        dir.join("not-x509.pem").display(),
        partner_client.cert.display(),
        other.key.display()
    );
    let (code, out, serve_err) = run(&tls, &partner_tls);
    assert_eq!(code, Some(1), "{out}");
    for expected in [
        format!(
            "gateway.yaml:7: tls.cert {}: not a PEM certificate file",
            dir.join("garbage.pem").display()
        ),
        format!(
            "gateway.yaml:9: tls.client_ca {}: cannot read file",
            dir.join("missing.pem").display()
        ),
        format!(
            "acme-ship.yaml:24: tls.ca {}: certificate 1 is not valid X.509",
            dir.join("not-x509.pem").display()
        ),
        format!(
            "acme-ship.yaml:26: tls.client_key {}: does not match the certificate in {}",
            other.key.display(),
            partner_client.cert.display()
        ),
    ] {
        assert!(out.contains(&expected), "{expected}\nin:\n{out}");
        assert!(
            serve_err.contains(&expected),
            "{expected}\nin:\n{serve_err}"
        );
    }

    // Neither a FIFO (opening it would wait for a writer) nor a device that never ends is read.
    let fifo = dir.join("fifo.pem");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: /dev/zero\n",
        fifo.display(),
        s.server.key.display()
    );
    let started = std::time::Instant::now();
    let (code, out, _) = run(&tls, "");
    assert_eq!(code, Some(1), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    for file in [fifo.display().to_string(), "/dev/zero".to_string()] {
        assert!(
            out.contains(&format!("{file}: cannot read file: not a regular file")),
            "{file} in:\n{out}"
        );
    }

    // A key pasted on one line (`\n` for its line breaks, as from an environment variable) is
    // refused without a byte of it in the message: check, serve and reload lines are logged.
    let key = std::fs::read_to_string(&s.server.key).unwrap();
    let one_line = dir.join("one-line-key.pem");
    std::fs::write(&one_line, key.trim().replace('\n', "\\n")).unwrap();
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n",
        s.server.cert.display(),
        one_line.display()
    );
    let (code, out, serve_err) = run(&tls, "");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a PEM private key"), "{out}");
    let secret = key.lines().nth(1).unwrap();
    for text in [&out, &serve_err] {
        assert!(!text.contains(&secret[..16]), "the key leaked: {text}");
    }

    // An expired certificate is only a warning for `check`.
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n",
        expired.cert.display(),
        expired.key.display()
    );
    let (code, out, _) = run(&tls, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("expired"), "{out}");

    // So is one not valid yet: installed by a rotation, every handshake with it fails.
    let (cert, key) = ca.leaf_valid(&["localhost"], (2080, 2090));
    let future = (dir.join("future.pem"), dir.join("future-key.pem"));
    std::fs::write(&future.0, cert).unwrap();
    std::fs::write(&future.1, key).unwrap();
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n",
        future.0.display(),
        future.1.display()
    );
    let (code, out, _) = run(&tls, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("is not valid before") && out.contains("2080"),
        "{out}"
    );
}

/// [`tls_ship_gateway`] with `header_timeout_ms: 1000`.
fn tls_gateway_with_a_1s_head_deadline(s: &Setup, mock: &Mock) -> Gateway {
    Gateway::start_prepared(
        |addr, admin| {
            gateway_yaml(addr, admin, &listener_yaml(&s.server, None, false)).replace(
                "upstream_timeout_ms: 1500",
                "upstream_timeout_ms: 1500, header_timeout_ms: 1000",
            )
        },
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t")],
        |_| {},
    )
}

#[test]
fn h2_idle_connections_close_after_the_head_deadline_and_head_refusals_have_no_body() {
    let s = setup();
    let mock = Mock::start();
    let gateway = tls_gateway_with_a_1s_head_deadline(&s, &mock);
    let config = || client_config(&s.ca_file, None, &[b"h2"]);
    assert!(h2_idle_closed_within(
        gateway.addr,
        config(),
        std::time::Duration::from_secs(5)
    ));
    // A refusal of HEAD carries no body over h2 either.
    let (status, _, body) = h2_request(gateway.addr, config(), "HEAD", "/nope/x", b"");
    assert_eq!(status, 404);
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
    // A connection in use is not idle: requests go on being answered.
    let (status, _, _) = h2_request(
        gateway.addr,
        config(),
        "POST",
        "/acme-ship/v1/shipments",
        br#"{"order_id": 1}"#,
    );
    assert_eq!(status, 200);
}

/// How long until the gateway ends a TCP connection that sent `raw` and then nothing (`None`
/// when it is still open after `wait`).
fn closed_after(addr: std::net::SocketAddr, raw: &[u8], wait: Duration) -> Option<Duration> {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(wait)).unwrap();
    tcp.write_all(raw).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue, // an alert, say
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed())
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn a_handshake_that_does_not_finish_is_ended_at_the_head_deadline() {
    let s = setup();
    let mock = Mock::start();
    let gateway = tls_gateway_with_a_1s_head_deadline(&s, &mock);
    let wait = Duration::from_secs(10);
    // Nothing at all, and the first bytes of a ClientHello: both closed after about 1 s (pingora
    // alone would wait 60 s).
    for raw in [
        &b""[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
    ] {
        let took = closed_after(gateway.addr, raw, wait);
        let took = took.unwrap_or_else(|| panic!("{raw:?}: still open after {wait:?}"));
        assert!(took >= Duration::from_millis(900), "{raw:?}: {took:?}");
    }
    let metrics = gateway.metrics();
    assert_eq!(
        metric(
            &metrics,
            "partner_gateway_connections_closed_total{reason=\"header_timeout\"}"
        ),
        2.0,
        "{metrics}"
    );
    // A handshake that finishes in time is not cut off: the connection serves requests for
    // longer than the deadline.
    let mut conn = TlsConn::connect(gateway.addr, client_config(&s.ca_file, None, &[])).unwrap();
    for _ in 0..3 {
        let r = conn.post_json("/acme-ship/v1/shipments", BODY).unwrap();
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(600));
    }
}

/// Answers one HTTPS request on loopback (certificate `pair`) with `body` as JSON; its port.
fn serve_once_over_tls(pair: &Pair, body: Vec<u8>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let certs = CertificateDer::pem_file_iter(&pair.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = tls.write_all(answer.as_bytes());
        let _ = tls.write_all(&body);
        let _ = tls.flush();
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    port
}

#[test]
fn verify_token_reads_an_https_jwks_and_checks_a_stored_token_as_of_its_time() {
    let s = setup();
    let mock = Mock::start();
    let gateway = Gateway::start(
        &signing_yaml(),
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t")],
    );
    let r = gateway.post_json("/acme-ship/v1/shipments", BODY);
    assert_eq!(r.status, 200);
    let headers = headers_of(&mock.received()[0]);
    let token = headers
        .iter()
        .find(|(n, _)| n == "ohsoft-data-use-token")
        .map(|(_, v)| v.clone())
        .unwrap();
    let jwks = gateway.admin_get("/.well-known/jwks.json").body;
    let verify = |jwks_url: &str, at: Option<&str>| {
        let mut command = std::process::Command::new(BIN);
        command
            .args(["verify-token", "--jwks", jwks_url])
            .env("SSL_CERT_FILE", &s.ca_file);
        if let Some(at) = at {
            command.args(["--at", at]);
        }
        let out = command.arg(&token).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Over https, trusting the CA SSL_CERT_FILE names.
    let port = serve_once_over_tls(&s.server, jwks.clone());
    let (ok, stderr) = verify(
        &format!("https://localhost:{port}/.well-known/jwks.json"),
        None,
    );
    assert!(ok, "{stderr}");
    // A certificate the bundle does not vouch for is refused.
    let other = Ca::new("Another CA");
    let stranger = other.write_leaf(s.dir.path(), "stranger", &["localhost"], false);
    let port = serve_once_over_tls(&stranger, jwks);
    let (ok, stderr) = verify(&format!("https://localhost:{port}/jwks.json"), None);
    assert!(!ok && stderr.contains("cannot fetch the JWKS"), "{stderr}");
    // A trust store the environment names that cannot be read is an error, not the system's.
    let out = std::process::Command::new(BIN)
        .args([
            "verify-token",
            "--jwks",
            "https://localhost:1/jwks.json",
            &token,
        ])
        .env("SSL_CERT_FILE", s.dir.path().join("missing.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SSL_CERT_FILE names"), "{stderr}");
    // A stored token checked later: expired now (a day from now), valid as of its ledger time.
    let jwks_url = format!("http://{}/.well-known/jwks.json", gateway.admin);
    let tomorrow = (std::time::SystemTime::now() + Duration::from_secs(86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let (ok, stderr) = verify(&jwks_url, Some(&tomorrow));
    assert!(!ok && stderr.contains("expired"), "{stderr}");
    let now = chrono::Utc::now().to_rfc3339();
    let (ok, stderr) = verify(&jwks_url, Some(&now));
    assert!(ok, "{stderr}");
}
