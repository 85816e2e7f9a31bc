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
        body_sha256: &gateway_core::tagging::body_sha256(b"{}"),
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
        let head = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, head)
            .unwrap();
        assert!(String::from_utf8(head).unwrap().contains("\"ES256\""));
        let claims =
            gateway_core::tagging::verify_data_use_token(&keys, &token, Some(b"{}"), 1_700_000_001)
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
