/*!
`demo --tls`: both legs over TLS with the DEMO certificates in `certs/` (see certs/README.md).
The gateway listens with `certs/gateway.pem` and requires a client certificate from the demo CA
(the demo's requests present `certs/caller-orders-service.pem`); every mock partner listens with
`certs/partner.pem` (verified by the gateway against the demo CA, `tls.ca`) and requires the
gateway's client certificate (`certs/gw-to-partners.pem`).
*/
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_core::policy::{ListenerTls, NamedFile, PartnerTls, Policy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::cli::mock_partner::MockTls;
use crate::http1::{self, Response};

/// The DEMO certificate files, in the `certs/` next to the policy directory.
pub struct DemoCerts {
    dir: PathBuf,
}

impl DemoCerts {
    pub fn new(policy_dir: &Path) -> anyhow::Result<DemoCerts> {
        let base = policy_dir
            .canonicalize()
            .with_context(|| format!("cannot find {}", policy_dir.display()))?;
        let dir = base.parent().unwrap_or(&base).join("certs");
        anyhow::ensure!(
            dir.join("demo-ca.pem").exists(),
            "no demo certificates in {} (run certs/gen-demo-keys.sh tls)",
            dir.display()
        );
        Ok(DemoCerts { dir })
    }

    fn file(&self, name: &str, key: &'static str) -> NamedFile {
        NamedFile {
            path: self.dir.join(name),
            key,
            source: "demo --tls".to_string(),
            line: 1,
        }
    }

    /// Puts TLS on both legs of `policy`: the listener (with client certificates from the demo
    /// CA) and every partner (`https://127.0.0.1:PORT`, verified by the certificate's IP SAN
    /// against the demo CA only, presenting the gateway's client certificate).
    pub fn apply(&self, policy: &mut Policy) -> anyhow::Result<()> {
        policy.gateway.tls = Some(ListenerTls {
            cert: self.file("gateway.pem", "tls.cert"),
            key: self.file("gateway-key.pem", "tls.key"),
            client_ca: Some(self.file("demo-ca.pem", "tls.client_ca")),
            client_identity: None,
        });
        for partner in policy.partners.values_mut() {
            let partner =
                Arc::get_mut(partner).context("policy is shared before the demo starts")?;
            partner.upstream.tls = true;
            partner.tls = Some(PartnerTls {
                ca: Some(self.file("demo-ca.pem", "tls.ca")),
                server_name: None,
                client_cert: Some((
                    self.file("gw-to-partners.pem", "tls.client_cert"),
                    self.file("gw-to-partners-key.pem", "tls.client_key"),
                )),
            });
        }
        Ok(())
    }

    /// How each mock partner listens: the partner certificate, and only the demo CA's clients.
    pub fn mock(&self) -> MockTls {
        MockTls {
            cert: Some(self.dir.join("partner.pem")),
            key: Some(self.dir.join("partner-key.pem")),
            client_ca: Some(self.dir.join("demo-ca.pem")),
        }
    }

    /// The demo caller's TLS client: trusts the demo CA, presents the caller certificate.
    pub fn client(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let read_certs = |name: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
            let path = self.dir.join(name);
            CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs("demo-ca.pem")? {
            roots.add(cert)?;
        }
        let key_path = self.dir.join("caller-orders-service-key.pem");
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certs("caller-orders-service.pem")?, key)?;
        Ok(Arc::new(config))
    }
}

/// How the demo sends its requests to the gateway: plain HTTP, or over TLS.
pub struct DemoClient {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl DemoClient {
    /// Waits (at most 15 s) until a TLS handshake with `addr` completes, then closes cleanly.
    pub fn wait_for_handshake(
        addr: SocketAddr,
        config: &Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(tcp) = TcpStream::connect(addr) {
                let conn = rustls::ClientConnection::new(
                    config.clone(),
                    ServerName::try_from("localhost")?,
                )?;
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                let mut handshake = Ok(0);
                while stream.conn.is_handshaking() && handshake.is_ok() {
                    handshake = stream.conn.complete_io(&mut stream.sock).map(|_| 0);
                }
                if handshake.is_ok() {
                    stream.conn.send_close_notify();
                    let _ = stream.conn.complete_io(&mut stream.sock);
                    return Ok(());
                }
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "no TLS handshake with {addr} after 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One request on a new connection (`connection: close`), its answer read whole.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Response> {
        let Some(config) = &self.tls else {
            let addr = self.addr.to_string();
            return Ok(http1::send(&addr, method, target, headers, body)?);
        };
        let mut raw =
            format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n")
                .into_bytes();
        for (name, value) in headers {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let body = body.unwrap_or_default();
        raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        raw.extend_from_slice(body);
        let name = ServerName::try_from("localhost")?;
        let conn = rustls::ClientConnection::new(config.clone(), name)?;
        let tcp = TcpStream::connect(self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream.write_all(&raw)?;
        stream.flush()?;
        Ok(http1::read_response(stream, method == "HEAD")?)
    }
}
