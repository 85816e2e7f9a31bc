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
mod tests {
    use super::*;
    use gateway_core::tagging::TokenInput;

    /// The P-256 key `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes.
    fn p256_pem() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        key.serialize_pem()
    }

    #[test]
    fn es256_moves_to_ring_and_its_tokens_verify() {
        let mut signer =
            TokenSigner::from_pkcs8_pem(p256_pem().as_bytes(), "k1", "https://gw.example").unwrap();
        let der = signer.pkcs8_der().unwrap().to_vec();
        assert!(RingEs256::from_pkcs8(&der).is_ok());
        use_fastest_backend(&mut signer);
        let input = TokenInput {
            aud: "acme",
            sub: "orders-service",
            use_: "contractor",
            purpose: "shipping",
            policy_version: "v1",
            body: b"{}",
            legal_basis: None,
            now_unix: 1_700_000_000,
            ttl_secs: 60,
            jti: "j1",
        };
        let a = signer.sign(&input).unwrap();
        let b = signer.sign(&input).unwrap();
        assert_ne!(a, b, "ring's ES256 signatures are randomized");
        let keys = gateway_core::tagging::Jwks::new(&signer).to_json();
        for token in [a, b] {
            let (head, _) = token.split_once('.').unwrap();
            let head =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, head)
                    .unwrap();
            assert!(String::from_utf8(head).unwrap().contains("\"ES256\""));
            let claims = gateway_core::tagging::verify_data_use_token(
                &keys,
                &token,
                Some(b"{}"),
                1_700_000_001,
            )
            .unwrap();
            assert_eq!(claims.jti, "j1");
        }
    }

    #[test]
    fn a_signer_whose_signatures_do_not_verify_is_refused() {
        struct Wrong;
        impl RawSigner for Wrong {
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, String> {
                Ok(vec![7; 64])
            }
        }
        let mut signer =
            TokenSigner::from_pkcs8_pem(p256_pem().as_bytes(), "k1", "https://gw.example").unwrap();
        assert!(signer.use_signer(Box::new(Wrong)).is_err());
        // Still signs, with the core's backend.
        let other = RingEs256::from_pkcs8(signer.pkcs8_der().unwrap()).unwrap();
        assert!(signer.use_signer(Box::new(other)).is_ok());
    }
}
