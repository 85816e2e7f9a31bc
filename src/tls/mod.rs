/*!
TLS on both legs. [`TlsMaterial::load`] reads every certificate and key file a policy names and
checks it (readable, PEM, key matches certificate; expired is a warning) before anything is
built from it, so a bad file is a `FILE:LINE: message` from `check`, `serve` and reloads, never a
pingora panic. The listener's certificate and client CA live in [`ListenerTlsState`], swapped by
reloads; partners' CA sets and client certificates travel with each policy ([`PartnerPeerTls`]).
*/
mod client;
pub(crate) mod files;
mod listener;
mod partner;

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::policy::{Diagnostic, Policy};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

pub use client::client_config;
pub use files::first_dns_san;
pub use listener::{ListenerTlsState, PeerIdentity};
pub use partner::PartnerPeerTls;

/// The listener's name among [`TlsMaterial::expiries`] and [`TlsMaterial::presented`].
const LISTENER: &str = "listener";

/// The listener's certificate and client-certificate verifier from one policy load.
pub struct ListenerMaterial {
    pub cert: Arc<CertifiedKey>,
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// Everything TLS built from one policy load.
#[derive(Default)]
pub struct TlsMaterial {
    pub listener: Option<ListenerMaterial>,
    /// Partners with an `https` upstream, by id.
    pub partners: HashMap<String, PartnerPeerTls>,
    /// `(name, notAfter in Unix seconds)` for `certificate_expiry_timestamp_seconds{name}`.
    pub expiries: Vec<(String, i64)>,
    /// The leaf certificates this gateway presents: its listener's, and its client
    /// certificate toward each partner (see [`presented_regressions`]).
    pub presented: Vec<Presented>,
}

/// One leaf certificate the gateway presents, named as in `expiries`.
pub struct Presented {
    pub name: String,
    pub file: gateway_core::policy::NamedFile,
    pub not_before: i64,
    pub not_after: i64,
}

impl Presented {
    fn of(name: String, file: &gateway_core::policy::NamedFile, chain: &[CertificateDer]) -> Self {
        let (not_before, not_after) = chain.first().map_or((0, 0), files::validity);
        Presented {
            name,
            file: file.clone(),
            not_before,
            not_after,
        }
    }

    /// Why no peer would accept it at `now`, if none would.
    fn unusable(&self, now: i64) -> Option<String> {
        if self.not_after < now {
            return Some(format!(
                "the certificate expired at {} (Unix time {})",
                files::rfc3339(self.not_after),
                self.not_after
            ));
        }
        (self.not_before > now + NOT_YET_VALID_SKEW_S).then(|| {
            format!(
                "the certificate is not valid before {} (Unix time {})",
                files::rfc3339(self.not_before),
                self.not_before
            )
        })
    }
}

/// How far ahead of this machine's clock a new certificate's notBefore may be and still be
/// swapped in by a reload: a certificate issued a moment ago by a CA whose clock runs a little
/// ahead is one an automated rotation installs, and refusing it would keep the files unread
/// until they change again.
const NOT_YET_VALID_SKEW_S: i64 = 300;

/// A listener's TLS from files given on the command line (`mock-partner --tls-cert ...`),
/// checked like the policy's.
pub fn listener_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> anyhow::Result<ListenerTlsState> {
    let named = |path: &std::path::Path, key: &'static str| gateway_core::policy::NamedFile {
        path: path.to_path_buf(),
        key,
        source: "command line".to_string(),
        line: 1,
    };
    let fail = |d: Diagnostic| anyhow::anyhow!("{}", d.message);
    let certified = files::certified_key(&named(cert, "--tls-cert"), &named(key, "--tls-key"))
        .map_err(|mut problems| fail(problems.remove(0)))?;
    let verifier = match client_ca {
        None => None,
        Some(ca) => {
            let file = named(ca, "--tls-client-ca");
            let certs = files::read_certs(&file).map_err(fail)?;
            Some(listener::client_verifier(certs).map_err(|e| fail(files::problem(&file, e)))?)
        }
    };
    Ok(ListenerTlsState::new(certified, verifier))
}

/// On a reload: a new leaf certificate the gateway presents (its listener's, or its client
/// certificate toward a partner) that no peer would accept now — expired, or not valid for
/// more than [`NOT_YET_VALID_SKEW_S`] yet — while the one serving under that name would: every
/// handshake with it would fail, so the reload is refused (`FILE:LINE`) and the serving
/// certificate stays. Only leaves are judged (an expired cross-sign further down the chain does
/// not decide). At start, or for a certificate new to the policy, it is only a warning: there
/// is nothing better to serve.
pub fn presented_regressions(
    serving: &TlsMaterial,
    new: &TlsMaterial,
    now: i64,
) -> Vec<Diagnostic> {
    let serving_usable = |name: &str| {
        serving
            .presented
            .iter()
            .any(|p| p.name == name && p.unusable(now).is_none())
    };
    new.presented
        .iter()
        .filter_map(|p| Some((p, p.unusable(now)?)))
        .filter(|(p, _)| serving_usable(&p.name))
        .map(|(p, why)| {
            let fails = if p.name == LISTENER {
                "every handshake would fail"
            } else {
                "the partner would refuse every connection"
            };
            files::problem(
                &p.file,
                format!("{why}: {fails}, so the certificate serving now keeps serving (install a valid one)"),
            )
        })
        .collect()
}

/// The identity the TLS handshake recorded for a connection's client certificate, if any.
pub fn peer_identity(digest: Option<&pingora::protocols::Digest>) -> Option<PeerIdentity> {
    let ssl = digest?.ssl_digest.as_ref()?;
    ssl.extension.get::<PeerIdentity>().cloned()
}

/// What [`TlsMaterial::load`] found: the material and its warnings, or every error.
pub type Loaded = Result<(TlsMaterial, Vec<Diagnostic>), Vec<Diagnostic>>;

impl TlsMaterial {
    /// Reads and checks every certificate and key file `policy` names. `now` (Unix seconds)
    /// decides which certificates are reported as expired.
    pub fn load(policy: &Policy, now: i64) -> Loaded {
        let mut material = TlsMaterial::default();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if let Some(tls) = &policy.gateway.tls {
            let cert = files::certified_key(&tls.cert, &tls.key);
            if let Ok(cert) = &cert {
                warnings.extend(files::expiry_warning(&tls.cert, &cert.cert, now));
                let leaf = Presented::of(LISTENER.to_string(), &tls.cert, &cert.cert);
                material
                    .expiries
                    .push((LISTENER.to_string(), leaf.not_after));
                material.presented.push(leaf);
            }
            let verifier = match &tls.client_ca {
                None => Ok(None),
                Some(ca) => files::read_certs(ca).and_then(|certs| {
                    warnings.extend(files::expiry_warning(ca, &certs, now));
                    let earliest = certs.iter().map(files::not_after).min().unwrap_or(0);
                    material.expiries.push(("client_ca".to_string(), earliest));
                    listener::client_verifier(certs)
                        .map(Some)
                        .map_err(|e| files::problem(ca, e))
                }),
            };
            match (cert, verifier) {
                (Ok(cert), Ok(client_verifier)) => {
                    material.listener = Some(ListenerMaterial {
                        cert,
                        client_verifier,
                    })
                }
                (cert, verifier) => {
                    errors.extend(cert.err().unwrap_or_default());
                    errors.extend(verifier.err());
                }
            }
        }
        for partner in policy.partners.values().filter(|p| p.upstream.tls) {
            match PartnerPeerTls::load(partner, now) {
                Ok(loaded) => {
                    warnings.extend(loaded.warnings);
                    material.expiries.extend(loaded.expiries);
                    material.presented.extend(loaded.presented);
                    material.partners.insert(partner.id.clone(), loaded.peer);
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok((material, warnings))
        } else {
            errors.sort();
            Err(errors)
        }
    }
}
