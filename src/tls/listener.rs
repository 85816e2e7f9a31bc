//! The proxy listener's TLS: a certificate resolver and a client-certificate verifier whose
//! contents a reload swaps atomically (new handshakes use the new ones, established connections
//! keep theirs), and the caller identity taken from the client certificate after the handshake.
//!
//! A resumed TLS session is a new handshake too, but rustls restores the client certificate
//! from the stored session without asking the verifier, and pingora offers no way to turn
//! resumption off. So after every handshake the presented chain (or its absence) is checked
//! again against the verifier in force ([`PeerIdentity::accepted`]); the gateway refuses the
//! requests of a connection it does not accept (see `Gateway::authenticate`).
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// The listener certificate, swapped whole on reload.
#[derive(Debug)]
pub struct SwapResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for SwapResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The client-certificate verifier in force; `None` = no client certificate is asked for.
///
/// rustls asks the verifier on every handshake whether to offer and require client
/// authentication, so swapping the inner verifier switches mTLS (and its CA) for new
/// handshakes. No CA names are sent as hints (the inner verifier's list cannot be borrowed
/// across a swap); clients send the certificate they are configured with.
#[derive(Debug)]
pub struct SwapVerifier {
    current: ArcSwapOption<Arc<dyn ClientCertVerifier>>,
}

impl SwapVerifier {
    fn inner(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.current.load_full().map(|v| Arc::clone(&*v))
    }

    /// Whether the verifier in force accepts a connection that presented `chain` (leaf first):
    /// always without one in force, otherwise only a chain it verifies now.
    fn accepts(&self, chain: Option<&[CertificateDer<'static>]>) -> bool {
        let Some(verifier) = self.inner() else {
            return true;
        };
        match chain {
            Some([leaf, intermediates @ ..]) => verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
            _ => !verifier.client_auth_mandatory(),
        }
    }
}

fn no_verifier() -> rustls::Error {
    rustls::Error::General("client certificates are not accepted".into())
}

impl ClientCertVerifier for SwapVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current.load().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current.load().is_some()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()
            .ok_or_else(no_verifier)?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()
            .ok_or_else(no_verifier)?
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()
            .ok_or_else(no_verifier)?
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the verifier for client certificates chaining to `roots`.
pub fn client_verifier(
    roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| format!("cannot build a verifier from it: {e}"))
}

/// What the listener presents and accepts; one per process, updated by reloads.
pub struct ListenerTlsState {
    resolver: Arc<SwapResolver>,
    verifier: Arc<SwapVerifier>,
}

impl ListenerTlsState {
    pub fn new(
        cert: Arc<CertifiedKey>,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
    ) -> ListenerTlsState {
        ListenerTlsState {
            resolver: Arc::new(SwapResolver {
                current: ArcSwap::new(cert),
            }),
            verifier: Arc::new(SwapVerifier {
                current: ArcSwapOption::new(verifier.map(Arc::new)),
            }),
        }
    }

    /// New handshakes use these from now on; established connections are not touched.
    pub fn update(&self, cert: Arc<CertifiedKey>, verifier: Option<Arc<dyn ClientCertVerifier>>) {
        self.resolver.current.store(cert);
        self.verifier.current.store(verifier.map(Arc::new));
    }

    /// pingora listener settings: TLS 1.2 and 1.3, h2 and http/1.1 by ALPN, the swappable
    /// resolver and verifier, and the client identity recorded after each handshake. Nothing
    /// here reads a file, so `build()` cannot panic on one.
    pub fn settings(&self) -> pingora::Result<TlsSettings> {
        let callback = IdentityCallback {
            verifier: self.verifier.clone(),
        };
        let mut settings = TlsSettings::with_callbacks(Box::new(callback))?;
        settings.set_cert_resolver(self.resolver.clone());
        settings.set_client_cert_verifier(self.verifier.clone());
        settings.enable_h2();
        Ok(settings)
    }
}

/// The client certificate's identity, attached to every TLS connection after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// First DNS SAN of the client certificate; `None` without one.
    pub san_dns: Option<String>,
    /// Whether the client-certificate verifier in force when the handshake completed accepts
    /// the connection (see the module docs): false for a session resumed with a certificate
    /// that no longer chains to the CA, or without one since mTLS was turned on.
    pub accepted: bool,
}

struct IdentityCallback {
    verifier: Arc<SwapVerifier>,
}

#[async_trait]
impl TlsAccept for IdentityCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der();
        Some(Arc::new(PeerIdentity {
            san_dns: tls
                .peer_certificate_der()
                .and_then(super::files::first_dns_san),
            accepted: self.verifier.accepts(chain),
        }))
    }
}
