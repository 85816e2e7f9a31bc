//! TLS as a client for the CLI and the opt-out database: rustls with the ring provider,
//! trusting a PEM bundle or the system's roots (`rustls-native-certs`: `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` name other roots, instead of the system's). Partners are reached through
//! pingora instead (see `partner`).
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A client configuration trusting `root_cert` (a PEM file) or, without one, the system's roots.
pub fn client_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem = crate::loader::read_policy_file(std::path::Path::new(path))
                .with_context(|| format!("cannot read {path}"))?;
            for cert in pem_certs(&pem).with_context(|| path.to_string())? {
                roots
                    .add(cert)
                    .with_context(|| format!("{path}: unusable certificate"))?;
            }
        }
        None => {
            // A trust store named in the environment that cannot be read is an error, not a
            // quiet fall back to the system's roots (which would trust every public CA).
            let mut from_env = false;
            for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
                let Some(named) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
                    continue;
                };
                from_env = true;
                let readable = std::env::split_paths(&named).all(|p| std::fs::metadata(p).is_ok());
                if !readable {
                    anyhow::bail!(
                        "{var} names {}, which cannot be read",
                        named.to_string_lossy()
                    );
                }
            }
            let found = rustls_native_certs::load_native_certs();
            match found.errors.first() {
                Some(e) if from_env => anyhow::bail!("cannot load the trusted roots: {e}"),
                _ => {}
            }
            for cert in found.certs {
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
        .map_err(|e| {
            anyhow!(
                "not a PEM certificate file: {}",
                super::files::pem_error(&e)
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in the file");
    }
    Ok(certs)
}
