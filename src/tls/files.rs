//! Certificate and key files the policy names: read, parsed and checked before anything is
//! built from them (pingora panics on bad files), each problem reported as `FILE:LINE: message`
//! on the policy line that names the file, with the file's path in the message.
use std::sync::Arc;

use gateway_core::policy::{Diagnostic, NamedFile};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A PEM parse error in words. Never the file's text: a key pasted on one line (`\n` for its
/// line breaks) reaches the parser as one long BEGIN line, which the library's error quotes.
pub fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => {
            "a block whose END line is missing or does not match its BEGIN line (a file cut short, or a key pasted on one line)".to_string()
        }
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line".to_string(),
        Error::Base64Decode(_) => "a block that is not valid base64".to_string(),
        Error::NoItemsFound => "no block of the expected kind".to_string(),
        Error::SectionTooLarge => "a block larger than 256 MB".to_string(),
        _ => "unreadable PEM".to_string(),
    }
}

/// A problem with one named file.
pub fn problem(file: &NamedFile, message: impl std::fmt::Display) -> Diagnostic {
    Diagnostic {
        file: file.source.clone(),
        line: file.line,
        message: format!("{} {}: {message}", file.key, file.path.display()),
    }
}

fn read(file: &NamedFile) -> Result<Vec<u8>, Diagnostic> {
    crate::loader::read_policy_file(&file.path)
        .map_err(|e| problem(file, format!("cannot read file: {e}")))
}

/// Every certificate in a PEM file (at least one; each one parseable X.509).
pub fn read_certs(file: &NamedFile) -> Result<Vec<CertificateDer<'static>>, Diagnostic> {
    let bytes = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            problem(
                file,
                format!("not a PEM certificate file: {}", pem_error(&e)),
            )
        })?;
    if certs.is_empty() {
        return Err(problem(
            file,
            "not a PEM certificate file (no -----BEGIN CERTIFICATE----- block)",
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        X509Certificate::from_der(cert.as_ref()).map_err(|e| {
            problem(
                file,
                format!("certificate {} is not valid X.509: {e}", i + 1),
            )
        })?;
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1 RSA).
pub fn read_key(file: &NamedFile) -> Result<PrivateKeyDer<'static>, Diagnostic> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let encrypted = bytes
            .windows(b"ENCRYPTED PRIVATE KEY".len())
            .any(|w| w == b"ENCRYPTED PRIVATE KEY")
            || bytes.windows(b"Proc-Type: 4,ENCRYPTED".len()).any(|w| w == b"Proc-Type: 4,ENCRYPTED");
        if encrypted {
            problem(
                file,
                "the private key is encrypted, and the gateway reads no passphrase: store it decrypted with tight file permissions (`openssl pkey -in KEY -out KEY.pem`)",
            )
        } else {
            problem(
                file,
                format!("not a PEM private key (PKCS#8, SEC1 or RSA): {}", pem_error(&e)),
            )
        }
    })
}

/// The certificate's notBefore and notAfter, in Unix seconds (the certificate was parsed by
/// [`read_certs`]).
pub fn validity(cert: &CertificateDer<'_>) -> (i64, i64) {
    X509Certificate::from_der(cert.as_ref())
        .map(|(_, c)| {
            let v = c.validity();
            (v.not_before.timestamp(), v.not_after.timestamp())
        })
        .unwrap_or((0, 0))
}

/// The certificate's notAfter, in Unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> i64 {
    validity(cert).1
}

/// The certificate's first DNS subject alternative name; `None` when it is no name at all (empty,
/// blank, only dots, or with spaces or control characters: malformed, and no caller is named so).
pub fn first_dns_san(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .filter(|dns| {
            dns.bytes().all(|b| b.is_ascii_graphic()) && !dns.trim_matches('.').is_empty()
        })
}

/// A warning when a certificate has expired or is not valid yet (`now` in Unix seconds): a
/// rotation that installs either makes every handshake with it fail.
pub fn expiry_warning(
    file: &NamedFile,
    certs: &[CertificateDer<'_>],
    now: i64,
) -> Option<Diagnostic> {
    let validities: Vec<(i64, i64)> = certs.iter().map(validity).collect();
    if let Some(expired) = validities.iter().map(|v| v.1).filter(|t| *t < now).min() {
        return Some(problem(
            file,
            format!(
                "a certificate expired at {} (Unix time {expired}): handshakes with it will fail",
                rfc3339(expired)
            ),
        ));
    }
    let future = validities.iter().map(|v| v.0).filter(|t| *t > now).max()?;
    Some(problem(
        file,
        format!(
            "a certificate is not valid before {} (Unix time {future}): handshakes with it will fail until then",
            rfc3339(future)
        ),
    ))
}

pub fn rfc3339(unix: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// A certificate chain and its private key, checked to belong together; the problems of both
/// files when both have one.
pub fn certified_key(
    cert: &NamedFile,
    key: &NamedFile,
) -> Result<Arc<CertifiedKey>, Vec<Diagnostic>> {
    let (chain, der) = match (read_certs(cert), read_key(key)) {
        (Ok(chain), Ok(der)) => (chain, der),
        (chain, der) => return Err([chain.err(), der.err()].into_iter().flatten().collect()),
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| vec![problem(key, format!("unusable private key: {e}"))])?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(vec![problem(
                key,
                format!("does not match the certificate in {}", cert.path.display()),
            )])
        }
        Err(e) => Err(vec![problem(
            cert,
            format!("cannot check the key against it: {e}"),
        )]),
    }
}
