//! TLS test material made at test time with rcgen (CAs, server and client certificates, expired
//! ones too), and real TLS clients: HTTP/1.1 over rustls and HTTP/2 over tokio-rustls + h2.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use partner_gateway::http1::{self, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// PEM files of one certificate and its key, written to disk.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now, or expired when `expired`.
    pub fn leaf(&self, names: &[&str], expired: bool) -> (String, String) {
        let years = if expired { (2000, 2001) } else { (2020, 2090) };
        self.leaf_valid(names, years)
    }

    /// A leaf for `names` valid from the first of January of one year to that of the other.
    pub fn leaf_valid(&self, names: &[&str], (from, to): (i32, i32)) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf to `dir/{stem}.pem` and `dir/{stem}-key.pem`.
    pub fn write_leaf(&self, dir: &Path, stem: &str, names: &[&str], expired: bool) -> Pair {
        let (cert, key) = self.leaf(names, expired);
        let pair = Pair {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&pair.cert, cert).unwrap();
        std::fs::write(&pair.key, key).unwrap();
        pair
    }
}

/// A rustls client config trusting `ca_pem`, presenting `client` if given, offering `alpn`.
pub fn client_config(ca_pem: &Path, client: Option<&Pair>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(pair) => {
            let chain = CertificateDer::pem_file_iter(&pair.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// An HTTP/1.1 connection over TLS, kept alive between requests.
pub struct TlsConn {
    pub stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsConn {
    /// Connects and completes the handshake (for TLS 1.3 the server's verdict on the client
    /// certificate only shows on the first read).
    pub fn connect(addr: SocketAddr, config: rustls::ClientConfig) -> std::io::Result<TlsConn> {
        let name = ServerName::try_from("localhost").unwrap();
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsConn { stream })
    }

    /// The server's leaf certificate, DER.
    pub fn server_cert(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// Sends one request (keep-alive) and reads its answer.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\n").into_bytes();
        for (name, value) in headers {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let body = body.unwrap_or_default();
        raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        raw.extend_from_slice(body);
        self.stream.write_all(&raw)?;
        self.stream.flush()?;
        http1::read_response(&mut self.stream, false)
    }

    pub fn post_json(&mut self, target: &str, body: &str) -> std::io::Result<Response> {
        self.request(
            "POST",
            target,
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    }
}

/// Whether anything that looks like an HTTP answer comes back for `raw` written in plain text.
pub fn plain_text_answer(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = tcp.write_all(raw);
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    answer
}

/// An HTTP/2 connection to `addr` (TLS, ALPN h2) and its driver, not yet spawned.
async fn h2_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::client::Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 negotiated"
    );
    h2::client::handshake(tls).await.unwrap()
}

/// A TLS connection to `addr` speaking HTTP/2 (ALPN h2), ready for a request.
async fn h2_client(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> h2::client::SendRequest<bytes::Bytes> {
    let (client, connection) = h2_connect(addr, config).await;
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// Whether the gateway closes an HTTP/2 connection that opens no stream within `wait`.
pub fn h2_idle_closed_within(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    wait: std::time::Duration,
) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_client, connection) = h2_connect(addr, config).await;
        tokio::time::timeout(wait, connection).await.is_ok()
    })
}

/// An HTTP/2 answer read whole: status, `content-type` and body.
async fn read_h2_answer(response: h2::client::ResponseFuture) -> (u16, Option<String>, Vec<u8>) {
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let mut recv = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, content_type, out)
}

/// One HTTP/2 request over TLS (ALPN h2 only): status, `content-type` and body.
pub fn h2_request(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, Option<String>, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = h2_client(addr, config).await;
        let request = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, body.is_empty()).unwrap();
        if !body.is_empty() {
            send.send_data(bytes::Bytes::copy_from_slice(body), true)
                .unwrap();
        }
        let (status, content_type, out) = read_h2_answer(response).await;
        (status, content_type, out)
    })
}

/// A server-certificate verifier that accepts anything: only for reading a mock partner's own
/// log in tests (its certificate may be expired or for another name on purpose).
#[derive(Debug)]
struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config that does not verify the server (mock logs only), presenting `client`.
pub fn unverified_client_config(client: Option<&Pair>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer));
    match client {
        Some(pair) => {
            let chain = CertificateDer::pem_file_iter(&pair.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// A `mock-partner` listening with TLS (`--tls-cert/--tls-key`, and `--tls-client-ca` to
/// require client certificates).
pub struct TlsMock {
    pub addr: SocketAddr,
    /// The client certificate the log is read with, when the mock requires one.
    log_client: Option<Pair>,
    child: std::process::Child,
}

impl Drop for TlsMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsMock {
    /// Starts a mock presenting `server`; with `client_ca`, it requires a client certificate
    /// chaining to it, and its log is read presenting `log_client`.
    pub fn start(server: &Pair, client_ca: Option<&Path>, log_client: Option<&Pair>) -> TlsMock {
        let addr = crate::util::free_addr();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_partner-gateway"));
        command
            .args(["mock-partner", "--listen", &addr.to_string(), "--tls-cert"])
            .arg(&server.cert)
            .arg("--tls-key")
            .arg(&server.key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(ca) = client_ca {
            command.arg("--tls-client-ca").arg(ca);
        }
        let mut child = command.spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mock-partner exited with {status}");
            }
            assert!(std::time::Instant::now() < deadline, "mock never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsMock {
            addr,
            log_client: log_client.cloned(),
            child,
        }
    }

    /// `https://{host}:{port}`.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.addr.port())
    }

    /// Every request the mock recorded, in order.
    pub fn received(&self) -> Vec<serde_json::Value> {
        let config = unverified_client_config(self.log_client.as_ref());
        let mut conn = TlsConn::connect(self.addr, config).unwrap();
        let r = conn.request("GET", "/_mock/requests", &[], None).unwrap();
        assert_eq!(r.status, 200);
        match serde_json::from_slice(&r.body).unwrap() {
            serde_json::Value::Array(items) => items,
            other => panic!("unexpected mock log {other}"),
        }
    }
}

/// One HTTP/2 request refused on its head: the head goes first, and its body only once the
/// whole answer arrived and the gateway had `wait` to reset the stream (which some clients
/// take for a failure). Status, `content-type`, body, and the reset the gateway sent, if any.
pub fn h2_refused_before_the_body(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    path: &str,
    content_type: &str,
    body: &[u8],
    wait: Duration,
) -> (u16, Option<String>, Vec<u8>, Option<h2::Reason>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = h2_client(addr, config).await;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("https://localhost{path}"))
            .header("content-type", content_type)
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        let (status, content_type, out) = read_h2_answer(response).await;
        let reset = tokio::time::timeout(wait, std::future::poll_fn(|cx| send.poll_reset(cx)))
            .await
            .ok()
            .and_then(Result::ok);
        if reset.is_none() {
            let _ = send.send_data(bytes::Bytes::copy_from_slice(body), true);
        }
        (status, content_type, out, reset)
    })
}
