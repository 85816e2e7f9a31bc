//! TLS toward one partner: the CA set it is verified against, the client certificate presented
//! to it, and the connection-pool isolation that keeps a connection verified under one trust
//! setting from carrying a request under another.
use std::sync::Arc;

use gateway_core::policy::{Diagnostic, NamedFile, Partner, PartnerTls, PartnerTlsOnly};
use pingora::prelude::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::files;

/// What a connection to one partner is built with.
pub struct PartnerPeerTls {
    /// Trusted roots instead of the system's; `None` = system roots.
    ca: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    /// Pool isolation: pingora's pool key covers the client certificate's serial but not the CA
    /// set, so every trust input (partner, server name, CA bytes, client certificate bytes) is
    /// hashed into the peer's `group_key`, which the pool key does include. A rotated CA file
    /// therefore never reuses a connection verified under the old one.
    group_key: u64,
}

/// Certificates loaded for one partner, and their expiries as `(metric name, notAfter)`.
pub struct LoadedPartner {
    pub peer: PartnerPeerTls,
    pub expiries: Vec<(String, i64)>,
    /// The client certificate's leaf, when there is one.
    pub presented: Option<super::Presented>,
    pub warnings: Vec<Diagnostic>,
}

impl PartnerPeerTls {
    /// Reads and checks the files of `partner`'s `tls` section (`None` for an https upstream
    /// without one: system roots, no client certificate).
    pub fn load(partner: &Partner, now: i64) -> Result<LoadedPartner, Vec<Diagnostic>> {
        let none = PartnerTls {
            ca: None,
            server_name: None,
            client_cert: None,
        };
        let tls = partner.tls.as_ref().unwrap_or(&none);
        Self::load_section(&partner.id, partner.server_name(), tls, now)
    }

    /// The problems of the files a `tls` section names, for `check` on a partner file that
    /// did not validate otherwise (the server name only keys the connection pool: none here).
    pub fn problems(only: &PartnerTlsOnly, now: i64) -> Vec<Diagnostic> {
        Self::load_section(&only.partner, "", &only.tls, now)
            .err()
            .unwrap_or_default()
    }

    fn load_section(
        id: &str,
        server_name: &str,
        tls: &PartnerTls,
        now: i64,
    ) -> Result<LoadedPartner, Vec<Diagnostic>> {
        let mut out = Loading {
            errors: Vec::new(),
            warnings: Vec::new(),
            expiries: Vec::new(),
            presented: None,
            hasher: Sha256::new(),
            now,
        };
        out.hasher.update(id.as_bytes());
        out.hasher.update([0]);
        out.hasher.update(server_name.as_bytes());
        let ca = tls.ca.as_ref().and_then(|file| out.ca(id, file));
        let client = tls
            .client_cert
            .as_ref()
            .and_then(|(cert, key)| out.client(id, cert, key));
        if !out.errors.is_empty() {
            return Err(out.errors);
        }
        let digest = out.hasher.finalize();
        let mut group_key = [0u8; 8];
        group_key.copy_from_slice(&digest[..8]);
        Ok(LoadedPartner {
            peer: PartnerPeerTls {
                ca,
                client,
                group_key: u64::from_be_bytes(group_key),
            },
            expiries: out.expiries,
            presented: out.presented,
            warnings: out.warnings,
        })
    }

    /// Sets the peer's trust and client certificate. Verification stays on: pingora turns it
    /// off for an empty SNI or `verify_cert = false`, and neither is ever set here.
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client.clone();
        peer.group_key = self.group_key;
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
    }
}

fn hash_certs(hasher: &mut Sha256, label: &[u8], certs: &[CertificateDer<'_>]) {
    hasher.update(label);
    for cert in certs {
        hasher.update((cert.len() as u64).to_be_bytes());
        hasher.update(cert.as_ref());
    }
}

/// pingora's CA type. The certificates were parsed by [`files::read_certs`], so `parse_x509`
/// (which panics on bad DER) cannot fail here.
fn wrap(certs: &[CertificateDer<'_>]) -> Arc<[WrappedX509]> {
    certs
        .iter()
        .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
        .collect::<Vec<_>>()
        .into()
}

/// What loading one partner's files collects: problems, expiry warnings and dates, and the
/// hash of every trust input (for the pool's `group_key`).
struct Loading {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    expiries: Vec<(String, i64)>,
    presented: Option<super::Presented>,
    hasher: Sha256,
    now: i64,
}

impl Loading {
    /// The partner's CA set. pingora adds it to a root store at connect time: a certificate it
    /// cannot use as a trust anchor is an error now, not a 502 on every request.
    fn ca(&mut self, partner: &str, file: &NamedFile) -> Option<Arc<[WrappedX509]>> {
        let usable = files::read_certs(file).and_then(|certs| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in &certs {
                roots.add(cert.clone()).map_err(|e| {
                    files::problem(file, format!("not a usable CA certificate: {e}"))
                })?;
            }
            Ok(certs)
        });
        match usable {
            Ok(certs) => {
                self.warnings
                    .extend(files::expiry_warning(file, &certs, self.now));
                let earliest = certs.iter().map(files::not_after).min().unwrap_or(0);
                self.expiries.push((format!("partner:{partner}"), earliest));
                hash_certs(&mut self.hasher, b"ca", &certs);
                Some(wrap(&certs))
            }
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    /// The client certificate presented to the partner. Checked with rustls first: pingora's
    /// own conversion panics on a key it cannot use.
    fn client(&mut self, partner: &str, cert: &NamedFile, key: &NamedFile) -> Option<Arc<CertKey>> {
        let certified = match files::certified_key(cert, key) {
            Ok(certified) => certified,
            Err(problems) => {
                self.errors.extend(problems);
                return None;
            }
        };
        self.warnings
            .extend(files::expiry_warning(cert, &certified.cert, self.now));
        let leaf = super::Presented::of(format!("partner:{partner}:client"), cert, &certified.cert);
        self.expiries.push((leaf.name.clone(), leaf.not_after));
        self.presented = Some(leaf);
        hash_certs(&mut self.hasher, b"client", &certified.cert);
        // pingora converts the key back with an unwrap at connect time: make sure that
        // conversion succeeds now.
        let key_der = files::read_key(key)
            .map(|k| k.secret_der().to_vec())
            .and_then(
                |der| match rustls::pki_types::PrivateKeyDer::try_from(&der[..]) {
                    Ok(_) => Ok(der),
                    Err(e) => Err(files::problem(key, e)),
                },
            );
        match key_der {
            Ok(key_der) => {
                let chain = certified.cert.iter().map(|c| c.to_vec()).collect();
                Some(Arc::new(CertKey::new(chain, key_der)))
            }
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}
