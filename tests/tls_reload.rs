//! Reloads and TLS: rotated certificate and CA files reach the next handshake while open
//! keep-alive connections keep working (SIGHUP, the file watcher, `POST /reload`); what only a
//! restart can change is refused; bad files on reload keep the old certificates; a burst of
//! reloads under load loses no request and never mixes two policies.
mod tls_util;
mod util;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tls_util::*;
use util::*;

const BODY: &str =
    r#"{"order_id":7,"shipments":[{"customer_id":"c1","name":"Ada","email":"ada@example.com"}]}"#;
const ADMIN_ENV: &str = "TLS_RELOAD_TEST_ADMIN_TOKEN";
const ADMIN_TOKEN: &str = "rotate-me";

/// A gateway CA, the gateway's certificate files and a callers CA file, at fixed paths that
/// rotations overwrite.
struct Pki {
    dir: tempfile::TempDir,
    gateway_ca: Ca,
    /// The file test clients trust: every gateway CA ever used.
    trust: PathBuf,
    server: Pair,
    callers_ca: PathBuf,
}

impl Pki {
    fn new(callers: &Ca) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let gateway_ca = Ca::new("Gateway CA");
        let trust = gateway_ca.write(dir.path(), "trust.pem");
        let server = gateway_ca.write_leaf(dir.path(), "gateway", &["localhost"], false);
        let callers_ca = callers.write(dir.path(), "callers-ca.pem");
        Pki {
            dir,
            gateway_ca,
            trust,
            server,
            callers_ca,
        }
    }

    fn tls_yaml(&self, client_ca: bool) -> String {
        let mut yaml = format!(
            "{ADMIN_ENV_LINE}tls:\n  cert: {}\n  key: {}\n",
            self.server.cert.display(),
            self.server.key.display()
        );
        if client_ca {
            yaml.push_str(&format!("  client_ca: {}\n", self.callers_ca.display()));
        }
        yaml
    }

    /// Writes a new gateway certificate and key over the old files (each replaced whole, by
    /// rename, as a deployment tool or Kubernetes does).
    fn rotate_server_cert(&self) -> Vec<u8> {
        let (cert, key) = self.gateway_ca.leaf(&["localhost"], false);
        replace(&self.server.key, key.as_bytes());
        replace(&self.server.cert, cert.as_bytes());
        pem_der(&cert)
    }
}

const ADMIN_ENV_LINE: &str = "admin_token_env: TLS_RELOAD_TEST_ADMIN_TOKEN\n";

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn start(pki: &Pki, client_ca: bool, partners: &[(&str, &str)]) -> Gateway {
    // A generous partner timeout: these tests run under load and must not see a 504.
    Gateway::start_with(
        |listen, admin| {
            gateway_yaml(listen, admin, &pki.tls_yaml(client_ca))
                .replace("upstream_timeout_ms: 1500", "upstream_timeout_ms: 10000")
        },
        partners,
        &[("SHIP_TOKEN", "t"), (ADMIN_ENV, ADMIN_TOKEN)],
    )
}

fn post_reload(gateway: &Gateway) -> Response {
    gateway.reload(Some(ADMIN_TOKEN))
}

/// A new connection presenting `client`, if the handshake and one request succeed.
fn try_connect(gateway: &Gateway, pki: &Pki, client: Option<&Pair>) -> Option<TlsConn> {
    let mut conn = TlsConn::connect(gateway.addr, client_config(&pki.trust, client, &[])).ok()?;
    let r = conn.post_json("/acme-ship/v1/shipments", BODY).ok()?;
    (r.status == 200).then_some(conn)
}

/// The first connection to a gateway just started (retried for a while: on a loaded machine the
/// first request may time out at the partner).
fn first_connection(gateway: &Gateway, pki: &Pki, client: Option<&Pair>) -> TlsConn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(conn) = try_connect(gateway, pki, client) {
            return conn;
        }
        assert!(Instant::now() < deadline, "no first connection");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until a new handshake presents `cert_der`; returns that connection.
fn wait_for_cert(gateway: &Gateway, pki: &Pki, client: Option<&Pair>, cert_der: &[u8]) -> TlsConn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(conn) = try_connect(gateway, pki, client) {
            if conn.server_cert() == cert_der {
                return conn;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate never showed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rotating_certificates_with_sighup_reaches_new_handshakes_and_keeps_open_connections() {
    let callers_v1 = Ca::new("Callers CA 2025");
    let pki = Pki::new(&callers_v1);
    let caller_v1 = callers_v1.write_leaf(pki.dir.path(), "orders-v1", &["orders-service"], false);
    let mock = Mock::start();
    let gateway = start(&pki, true, &[("acme-ship", &ship_partner(&mock.url()))]);
    let mut open = first_connection(&gateway, &pki, Some(&caller_v1));
    let first_cert = open.server_cert();

    // New gateway certificate and a new callers CA (with a caller certificate from it).
    let callers_v2 = Ca::new("Callers CA 2026");
    let caller_v2 = callers_v2.write_leaf(pki.dir.path(), "orders-v2", &["orders-service"], false);
    let new_cert = pki.rotate_server_cert();
    replace(&pki.callers_ca, callers_v2.pem().as_bytes());
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());

    let mut fresh = wait_for_cert(&gateway, &pki, Some(&caller_v2), &new_cert);
    assert_ne!(new_cert, first_cert);
    assert_eq!(
        fresh
            .post_json("/acme-ship/v1/shipments", BODY)
            .unwrap()
            .status,
        200
    );
    // A certificate from the retired callers CA no longer gets in on a new connection...
    assert!(try_connect(&gateway, &pki, Some(&caller_v1)).is_none());
    // ...while the connection opened before the rotation keeps working, on its old certificate.
    for _ in 0..3 {
        let r = open.post_json("/acme-ship/v1/shipments", BODY).unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(open.server_cert(), first_cert);
    let metrics = gateway.metrics();
    assert!(
        metric(
            &metrics,
            r#"partner_gateway_policy_reloads_total{result="ok"}"#
        ) >= 2.0
    );
}

#[test]
fn rotated_certificate_files_are_noticed_without_a_signal() {
    let callers = Ca::new("Callers CA");
    let pki = Pki::new(&callers);
    let mock = Mock::start();
    let gateway = start(&pki, false, &[("acme-ship", &ship_partner(&mock.url()))]);
    let mut open = first_connection(&gateway, &pki, None);
    let new_cert = pki.rotate_server_cert();
    wait_for_cert(&gateway, &pki, None, &new_cert);
    assert_eq!(
        open.post_json("/acme-ship/v1/shipments", BODY)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn admin_reload_rotates_and_bad_files_keep_the_old_certificate() {
    let callers = Ca::new("Callers CA");
    let pki = Pki::new(&callers);
    let mock = Mock::start();
    let gateway = start(&pki, false, &[("acme-ship", &ship_partner(&mock.url()))]);
    let old_cert = first_connection(&gateway, &pki, None).server_cert();
    let cert_line = std::fs::read_to_string(gateway.policy.policy().join("gateway.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.trim_start().starts_with("cert:"))
        .unwrap()
        + 1;

    // Not PEM, a key that does not match, an unreadable file: 422 naming file and line.
    let good_cert = std::fs::read(&pki.server.cert).unwrap();
    let good_key = std::fs::read(&pki.server.key).unwrap();
    let (_, other_key) = pki.gateway_ca.leaf(&["localhost"], false);
    let broken: [(&Path, &[u8], &str); 3] = [
        (
            &pki.server.cert,
            b"not a certificate",
            "not a PEM certificate",
        ),
        (
            &pki.server.key,
            other_key.as_bytes(),
            "does not match the certificate",
        ),
        (&pki.server.cert, b"", "not a PEM certificate"),
    ];
    for (file, bytes, expected) in broken {
        replace(file, bytes);
        let r = post_reload(&gateway);
        assert_refused(&r, 422, "invalid_policy");
        let errors = r.json()["errors"].to_string();
        assert!(errors.contains(expected), "{errors}");
        assert!(errors.contains(&file.display().to_string()), "{errors}");
        assert!(errors.contains("gateway.yaml:"), "{errors}");
        replace(&pki.server.cert, &good_cert);
        replace(&pki.server.key, &good_key);
        // Still serving, on the old certificate.
        let conn = try_connect(&gateway, &pki, None).expect("still serving");
        assert_eq!(conn.server_cert(), old_cert);
    }
    // A certificate that has expired, replacing a valid one: every handshake would fail.
    let (expired_cert, expired_key) = pki.gateway_ca.leaf(&["localhost"], true);
    replace(&pki.server.key, expired_key.as_bytes());
    replace(&pki.server.cert, expired_cert.as_bytes());
    let r = post_reload(&gateway);
    assert_refused(&r, 422, "invalid_policy");
    let errors = r.json()["errors"].to_string();
    assert!(errors.contains("expired"), "{errors}");
    assert!(errors.contains("keeps serving"), "{errors}");
    assert!(
        errors.contains(&format!("gateway.yaml:{cert_line}:")),
        "{errors}"
    );
    assert_eq!(
        try_connect(&gateway, &pki, None).unwrap().server_cert(),
        old_cert
    );
    // Nor is one valid only from a date years ahead.
    let (future_cert, future_key) = pki.gateway_ca.leaf_valid(&["localhost"], (2080, 2090));
    replace(&pki.server.key, future_key.as_bytes());
    replace(&pki.server.cert, future_cert.as_bytes());
    let r = post_reload(&gateway);
    assert_refused(&r, 422, "invalid_policy");
    let errors = r.json()["errors"].to_string();
    assert!(errors.contains("not valid before"), "{errors}");
    assert!(errors.contains("2080"), "{errors}");
    assert!(errors.contains("keeps serving"), "{errors}");
    assert_eq!(
        try_connect(&gateway, &pki, None).unwrap().server_cert(),
        old_cert
    );
    replace(&pki.server.cert, &good_cert);
    replace(&pki.server.key, &good_key);

    std::fs::remove_file(&pki.server.key).unwrap();
    let r = post_reload(&gateway);
    assert_refused(&r, 422, "invalid_policy");
    let errors = r.json()["errors"].to_string();
    assert!(errors.contains("cannot read file"), "{errors}");
    assert!(
        errors.contains(&format!("gateway.yaml:{}:", cert_line + 1)),
        "{errors}"
    );
    assert_eq!(
        try_connect(&gateway, &pki, None).unwrap().server_cert(),
        old_cert
    );

    let new_cert = pki.rotate_server_cert();
    let r = post_reload(&gateway);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        try_connect(&gateway, &pki, None).unwrap().server_cert(),
        new_cert
    );
}

#[test]
fn a_reload_cannot_switch_the_listener_between_tls_and_plain_http() {
    let callers = Ca::new("Callers CA");
    let pki = Pki::new(&callers);
    let mock = Mock::start();
    let tls_gateway = start(&pki, false, &[("acme-ship", &ship_partner(&mock.url()))]);
    let file = tls_gateway.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let mut without_tls = yaml.split("tls:").next().unwrap().to_string();
    // Keep the top-level `signing` line that follows the `tls` section.
    without_tls.extend(
        yaml.lines()
            .filter(|l| l.starts_with("signing"))
            .map(|l| format!("{l}\n")),
    );
    replace(&file, without_tls.as_bytes());
    let r = post_reload(&tls_gateway);
    assert_refused(&r, 422, "invalid_policy");
    assert!(r.json()["errors"].to_string().contains("`tls` was removed"));
    assert!(try_connect(&tls_gateway, &pki, None).is_some());

    let plain = Gateway::start(
        ADMIN_ENV_LINE,
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[("SHIP_TOKEN", "t"), (ADMIN_ENV, ADMIN_TOKEN)],
    );
    let file = plain.policy.policy().join("gateway.yaml");
    let mut yaml = std::fs::read_to_string(&file).unwrap();
    yaml.push_str(pki.tls_yaml(false).trim_start_matches(ADMIN_ENV_LINE));
    replace(&file, yaml.as_bytes());
    let r = post_reload(&plain);
    assert_refused(&r, 422, "invalid_policy");
    let errors = r.json()["errors"].to_string();
    assert!(errors.contains("`tls` was added"), "{errors}");
    assert_eq!(plain.post_json("/acme-ship/v1/shipments", BODY).status, 200);
}

/// The shipping partner forwarding `order_id` and one more top-level field.
fn partner_allowing(upstream: &str, field: &str) -> String {
    format!(
        "kind: contractor\npurpose: shipping\nupstream: {upstream}\nroutes:\n  - path: /v1/orders\n    methods: [POST]\n    allow: [order_id, {field}]\nallowed_callers: [orders-service]\n"
    )
}

#[test]
fn a_burst_of_reloads_under_load_loses_no_request_and_never_mixes_policies() {
    let callers = Ca::new("Callers CA");
    let pki = Pki::new(&callers);
    let mock = Mock::start();
    let gateway = start(
        &pki,
        false,
        &[("shop", &partner_allowing(&mock.url(), "name"))],
    );
    let file = gateway.policy.policy().join("partners/shop.yaml");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let body = r#"{"order_id":1,"name":"Ada","email":"ada@example.com"}"#;
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (stop, sent, trust) = (stop.clone(), sent.clone(), pki.trust.clone());
            let addr = gateway.addr;
            std::thread::spawn(move || {
                let connect = || TlsConn::connect(addr, client_config(&trust, None, &[])).unwrap();
                let mut conn = connect();
                while !stop.load(Ordering::Relaxed) {
                    // Half the workers keep one connection; the others handshake every time.
                    if worker % 2 == 1 {
                        conn = connect();
                    }
                    let r = conn.post_json("/shop/v1/orders", body).unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut versions = std::collections::HashMap::new();
    for round in 0..30 {
        let field = if round % 2 == 0 { "email" } else { "name" };
        replace(&file, partner_allowing(&mock.url(), field).as_bytes());
        let r = post_reload(&gateway);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        versions.insert(r.json()["version"].as_str().unwrap().to_string(), field);
        std::thread::sleep(Duration::from_millis(30));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a request failed during the reloads");
    }
    assert_eq!(versions.len(), 2, "{versions:?}");

    let received = mock.received();
    assert_eq!(
        received.len(),
        sent.load(Ordering::Relaxed),
        "no request lost or repeated"
    );
    assert!(received.len() > 30, "load ran: {}", received.len());
    for record in &received {
        let tag = headers_of(record)
            .into_iter()
            .find(|(name, _)| name == "ohsoft-data-use")
            .unwrap()
            .1;
        let version = tag.split("policy=\"").nth(1).unwrap().trim_end_matches('"');
        let field = versions[version];
        let expected = if field == "name" {
            r#"{"order_id":1,"name":"Ada"}"#
        } else {
            r#"{"order_id":1,"email":"ada@example.com"}"#
        };
        assert_eq!(record["body"], expected, "policy {version}");
    }
}

/// Connects with `config` (whose session store a clone shares, so a later connection resumes
/// the session) and posts one body: the status, or `None` when the connection failed.
fn status_with(gateway: &Gateway, config: &rustls::ClientConfig) -> (Option<u16>, bool) {
    let Ok(mut conn) = TlsConn::connect(gateway.addr, config.clone()) else {
        return (None, false);
    };
    let resumed = conn.stream.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let status = conn
        .post_json("/acme-ship/v1/shipments", BODY)
        .ok()
        .map(|r| r.status);
    (status, resumed)
}

#[test]
fn a_resumed_tls_session_is_checked_against_the_client_ca_in_force() {
    let callers = Ca::new("Callers CA");
    let pki = Pki::new(&callers);
    let mock = Mock::start();
    let client = callers.write_leaf(pki.dir.path(), "caller", &["caller.example"], false);
    let gateway = start(&pki, true, &[("acme-ship", &ship_partner(&mock.url()))]);
    let with_cert = client_config(&pki.trust, Some(&client), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_with(&gateway, &with_cert).0 != Some(200) {
        assert!(Instant::now() < deadline, "no first connection");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Resumption works while the CA stays.
    assert_eq!(status_with(&gateway, &with_cert), (Some(200), true));

    // The callers' CA is rotated: the old one is gone.
    let forwarded = mock.received().len();
    let other = Ca::new("Other callers CA");
    replace(&pki.callers_ca, other.pem().as_bytes());
    assert_eq!(post_reload(&gateway).status, 200);
    let (status, resumed) = status_with(&gateway, &with_cert);
    assert!(
        resumed,
        "the session was not resumed: the test proves nothing"
    );
    assert_eq!(status, Some(401), "a resumed session outlived its CA");
    // A full handshake with the old certificate is refused outright.
    let fresh = client_config(&pki.trust, Some(&client), &[]);
    assert_eq!(status_with(&gateway, &fresh).0, None);
    assert_eq!(
        mock.received().len(),
        forwarded,
        "a request reached the partner"
    );
    let metrics = gateway.metrics();
    assert!(
        metric(&metrics, "partner_gateway_requests_refused_total{partner=\"acme-ship\",reason=\"unauthenticated\"}") >= 1.0,
        "{metrics}"
    );
}

#[test]
fn a_session_from_before_mtls_was_turned_on_cannot_skip_the_certificate() {
    let callers = Ca::new("Callers CA");
    let pki = Pki::new(&callers);
    let mock = Mock::start();
    let gateway = start(&pki, false, &[("acme-ship", &ship_partner(&mock.url()))]);
    let without_cert = client_config(&pki.trust, None, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_with(&gateway, &without_cert).0 != Some(200) {
        assert!(Instant::now() < deadline, "no first connection");
        std::thread::sleep(Duration::from_millis(100));
    }
    let forwarded = mock.received().len();
    let file = gateway.policy.policy().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let key_line = format!("  key: {}\n", pki.server.key.display());
    assert!(yaml.contains(&key_line), "{yaml}");
    let with_ca = yaml.replace(
        &key_line,
        &format!("{key_line}  client_ca: {}\n", pki.callers_ca.display()),
    );
    std::fs::write(&file, with_ca).unwrap();
    assert_eq!(post_reload(&gateway).status, 200);
    let (status, resumed) = status_with(&gateway, &without_cert);
    assert!(
        resumed,
        "the session was not resumed: the test proves nothing"
    );
    assert_eq!(status, Some(401), "a resumed session skipped mTLS");
    assert_eq!(
        mock.received().len(),
        forwarded,
        "a request reached the partner"
    );
}
