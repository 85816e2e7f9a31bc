//! ES256 data-use signatures through ring. Its P-256 assembly signs several times faster than
//! the core's pure-Rust `p256` (README "Load benchmark"), but it draws each signature's nonce
//! from the system's random numbers, so it lives here, in the shell, and is handed to the
//! core's signer as a [`RawSigner`]. Ed25519 keys keep the core's `ed25519-dalek`, which
//! measured faster than ring's Ed25519.
use gateway_core::jose::RawSigner;
use gateway_core::tagging::TokenSigner;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// An ES256 key in ring: fixed-size `r || s` signatures, as JWS wants them.
pub struct RingEs256 {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl RingEs256 {
    /// From a PKCS#8 P-256 key (ring needs the public key inside, as openssl writes it).
    pub fn from_pkcs8(der: &[u8]) -> Result<RingEs256, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("ring does not take this P-256 key: {e}"))?;
        Ok(RingEs256 { key, rng })
    }
}

impl RawSigner for RingEs256 {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.key
            .sign(&self.rng, message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| "ring could not sign (no random numbers?)".to_string())
    }
}

/// Moves an ES256 signer onto ring. When ring does not take the key, or its signature does
/// not verify with the key's public key, the signer keeps the core's backend (and says so).
pub fn use_fastest_backend(signer: &mut TokenSigner) {
    if signer.algorithm() != "ES256" {
        return;
    }
    let Some(der) = signer.pkcs8_der() else {
        return;
    };
    let installed = RingEs256::from_pkcs8(der)
        .and_then(|ring| signer.use_signer(Box::new(ring)).map_err(|e| e.to_string()));
    if let Err(e) = installed {
        log::warn!("ES256 data-use tokens are signed with the slower p256 backend: {e}");
    }
}

#[cfg(test)]
mod tests;
