//! TLS as a client for the CLI and the opt-out database: rustls with the ring provider,
//! trusting a PEM bundle or the system's roots (`rustls-native-certs`, which also reads
//! `SSL_CERT_FILE`). Partners are reached through pingora instead (see `partner`).
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A client configuration trusting `root_cert` (a PEM file) or, without one, the system's roots.
pub fn client_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
            for cert in pem_certs(&pem).with_context(|| path.to_string())? {
                roots
                    .add(cert)
                    .with_context(|| format!("{path}: unusable certificate"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        anyhow::bail!("no trusted root certificates");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in the file");
    }
    Ok(certs)
}
