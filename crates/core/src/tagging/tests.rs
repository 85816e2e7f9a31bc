use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::jose::KeyError;
use crate::policy::model::PartnerKind;

const ED: &[u8] = include_bytes!("../callers/testdata/ed25519.pem");
const ED_OTHER: &[u8] = include_bytes!("../callers/testdata/ed25519-other.pem");
const ED_OTHER_PUB: &[u8] = include_bytes!("../callers/testdata/ed25519-other.pub.pem");
const EC: &[u8] = include_bytes!("../callers/testdata/p256.pem");
const EC_PUB: &[u8] = include_bytes!("../callers/testdata/p256.pub.pem");
const RSA: &[u8] = include_bytes!("../callers/testdata/rsa.pem");
const RSA_PUB: &[u8] = include_bytes!("../callers/testdata/rsa.pub.pem");

const ISS: &str = "https://partner-gateway.ohsoft.example";
const NOW: u64 = 1_800_000_000;
const BODY: &[u8] = br#"{"order_id":"A-1","shipments":[{"name":"Ada"}]}"#;

fn input<'a>(body: &'a [u8], legal_basis: Option<&'a str>) -> TokenInput<'a> {
    let body_sha256: &'static str = Box::leak(body_sha256(body).into_boxed_str());
    TokenInput {
        aud: "acme-ship",
        sub: "orders-service",
        use_: PartnerKind::Contractor.data_use(),
        purpose: "shipping",
        policy_version: "3f2a9c0d11e4",
        body_sha256,
        legal_basis,
        now_unix: NOW,
        ttl_secs: 300,
        jti: "0f8e6c1a-jti",
    }
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn data_use_header_values() {
    let tag = |use_, purpose, legal_basis| DataUseTag {
        use_,
        purpose,
        policy_version: "3f2a9c0d11e4",
        legal_basis,
    };
    let ok: Vec<(DataUseTag, &str)> = vec![
        (
            tag("on-behalf-of-ohsoft", "shipping", None),
            r#"use="on-behalf-of-ohsoft", purpose="shipping", policy="3f2a9c0d11e4""#,
        ),
        (
            tag("legal-obligation", "tax audit", Some("case 2026/17")),
            r#"use="legal-obligation", purpose="tax audit", policy="3f2a9c0d11e4", legal-basis="case 2026/17""#,
        ),
        (
            tag("partner-sharing", r#"say "hi" \o/"#, None),
            r#"use="partner-sharing", purpose="say \"hi\" \\o/", policy="3f2a9c0d11e4""#,
        ),
        (
            tag("co-branded", "", None),
            r#"use="co-branded", purpose="", policy="3f2a9c0d11e4""#,
        ),
    ];
    for (t, want) in ok {
        let got = t.to_header_value().unwrap();
        assert_eq!(got, want);
        // What a partner's RFC 8941 parser reads back is exactly what went in.
        let dict: sfv::Dictionary = sfv::Parser::new(&got).parse().unwrap();
        let get = |k: &str| match dict.get(k) {
            Some(sfv::ListEntry::Item(i)) => {
                i.bare_item.as_string().map(|s| s.as_str().to_string())
            }
            _ => None,
        };
        assert_eq!(get("use").as_deref(), Some(t.use_));
        assert_eq!(get("purpose").as_deref(), Some(t.purpose));
        assert_eq!(get("policy").as_deref(), Some(t.policy_version));
        assert_eq!(get("legal-basis").as_deref(), t.legal_basis);
    }

    let bad: Vec<(DataUseTag, &str)> = vec![
        (tag("on-behalf-of-ohsoft", "ship\nping", None), "purpose"),
        (
            tag("on-behalf-of-ohsoft", "shipping", Some("case\r\nx-evil: 1")),
            "legal-basis",
        ),
        (tag("on-behalf-of-ohsoft", "livraison é", None), "purpose"),
        (tag("on-behalf-of-ohsoft", "tab\there", None), "purpose"),
        (tag("on-behalf-of-ohsoft", "nul\0", None), "purpose"),
        (tag("on-behalf-of-ohsoft", "del\x7f", None), "purpose"),
    ];
    for (t, member) in bad {
        match t.to_header_value() {
            Err(TagError::InvalidValue { member: m, .. }) => assert_eq!(m, member, "{t:?}"),
            other => panic!("{t:?}: {other:?}"),
        }
    }
    assert!(header::is_sf_string("case 2026/17 \"x\""));
    assert!(!header::is_sf_string("é"));
}

#[test]
fn body_digest() {
    assert_eq!(
        body_sha256(b""),
        "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    );
    assert_eq!(
        body_sha256(b"abc"),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
}

#[test]
fn sign_and_verify_round_trip() {
    for (pem, alg) in [(ED, "EdDSA"), (EC, "ES256")] {
        let signer = TokenSigner::from_pkcs8_pem(pem, "data-use-1", ISS).unwrap();
        assert_eq!(signer.algorithm(), alg);
        let jwks = Jwks::new(&signer).to_json();
        let token = signer.sign(&input(BODY, None)).unwrap();

        let h = header(&token);
        assert_eq!(h["kid"], "data-use-1");
        assert_eq!(h["alg"], alg);
        assert_eq!(h["typ"], DATA_USE_TOKEN_TYP);

        let claims = verify_data_use_token(&jwks, &token, Some(BODY), NOW + 10).unwrap();
        assert_eq!(claims, signer.claims(&input(BODY, None)));
        assert_eq!(claims.iss, ISS);
        assert_eq!(claims.aud, "acme-ship");
        assert_eq!(claims.sub, "orders-service");
        assert_eq!(claims.use_, "on-behalf-of-ohsoft");
        assert_eq!(claims.body_sha256, Some(body_sha256(BODY)));
        assert!(claims.exp - claims.iat <= MAX_TTL_SECS);
        let raw = payload(&token);
        let mut names: Vec<&str> = raw
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "aud",
                "body_sha256",
                "exp",
                "iat",
                "iss",
                "jti",
                "policy_version",
                "purpose",
                "sub",
                "use"
            ],
            "{alg}: legal_basis is absent when the request had none"
        );

        // Without a body the digest is not checked; with a tampered body it fails.
        assert!(verify_data_use_token(&jwks, &token, None, NOW).is_ok());
        let tampered = br#"{"order_id":"A-1","shipments":[{"name":"Eve"}]}"#;
        assert!(matches!(
            verify_data_use_token(&jwks, &token, Some(tampered), NOW),
            Err(TokenVerifyError::BodyMismatch { .. })
        ));
        assert!(matches!(
            verify_data_use_token(&jwks, &token, Some(b""), NOW),
            Err(TokenVerifyError::BodyMismatch { .. })
        ));
    }
}

#[test]
fn legal_basis_is_carried() {
    let signer = TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap();
    let token = signer
        .sign(&input(BODY, Some("court order 12/2026")))
        .unwrap();
    let claims =
        verify_data_use_token(&Jwks::new(&signer).to_json(), &token, Some(BODY), NOW).unwrap();
    assert_eq!(claims.legal_basis.as_deref(), Some("court order 12/2026"));
    assert_eq!(payload(&token)["legal_basis"], "court order 12/2026");
}

#[test]
fn ttl_is_clamped() {
    let signer = TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap();
    for (ttl, want) in [(10_000, MAX_TTL_SECS), (300, 300), (60, 60), (0, 1)] {
        let token = signer
            .sign(&TokenInput {
                ttl_secs: ttl,
                ..input(BODY, None)
            })
            .unwrap();
        let p = payload(&token);
        assert_eq!(
            p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(),
            want,
            "ttl {ttl}"
        );
    }
}

#[test]
fn refused_tokens() {
    let signer = TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap();
    let jwks = Jwks::new(&signer).to_json();
    let good = signer.sign(&input(BODY, None)).unwrap();
    let impostor = TokenSigner::from_pkcs8_pem(ED_OTHER, "data-use-1", ISS).unwrap();
    let unknown = TokenSigner::from_pkcs8_pem(ED, "data-use-9", ISS).unwrap();

    let hand_signed = |h: Header, claims: &Value| {
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_pem(ED).unwrap()).unwrap()
    };
    let mut typed = Header::new(Algorithm::EdDSA);
    typed.kid = Some("data-use-1".into());
    typed.typ = Some(DATA_USE_TOKEN_TYP.into());
    let long_lived = {
        let mut c = serde_json::to_value(signer.claims(&input(BODY, None))).unwrap();
        c["exp"] = json!(NOW + 600);
        hand_signed(typed.clone(), &c)
    };
    let not_yet = {
        let mut c = serde_json::to_value(signer.claims(&input(BODY, None))).unwrap();
        c["nbf"] = json!(NOW + 3600);
        hand_signed(typed.clone(), &c)
    };
    let caller_typed = {
        let mut h = typed.clone();
        h.typ = Some("JWT".into());
        hand_signed(
            h,
            &serde_json::to_value(signer.claims(&input(BODY, None))).unwrap(),
        )
    };
    let no_kid = {
        let mut h = typed.clone();
        h.kid = None;
        hand_signed(
            h,
            &serde_json::to_value(signer.claims(&input(BODY, None))).unwrap(),
        )
    };
    let missing_claim = {
        let mut c = serde_json::to_value(signer.claims(&input(BODY, None))).unwrap();
        c.as_object_mut().unwrap().remove("body_sha256");
        hand_signed(typed.clone(), &c)
    };
    let hs_with_public_key = {
        let mut h = typed.clone();
        h.alg = Algorithm::HS256;
        let jwk_bytes = jwks.as_bytes();
        jsonwebtoken::encode(
            &h,
            &serde_json::to_value(signer.claims(&input(BODY, None))).unwrap(),
            &EncodingKey::from_secret(jwk_bytes),
        )
        .unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(
            json!({"alg": "none", "kid": "data-use-1", "typ": DATA_USE_TOKEN_TYP}).to_string()
        ),
        good.split('.').nth(1).unwrap()
    );

    type Check = fn(&TokenVerifyError) -> bool;
    let cases: Vec<(&str, String, u64, Check)> = vec![
        (
            "other key, same kid",
            impostor.sign(&input(BODY, None)).unwrap(),
            NOW,
            |e| matches!(e, TokenVerifyError::BadSignature),
        ),
        (
            "unknown kid",
            unknown.sign(&input(BODY, None)).unwrap(),
            NOW,
            |e| matches!(e, TokenVerifyError::UnknownKid(_)),
        ),
        ("expired", good.clone(), NOW + MAX_TTL_SECS + 30, |e| {
            matches!(e, TokenVerifyError::Expired { .. })
        }),
        ("issued in the future", good.clone(), NOW - 31, |e| {
            matches!(e, TokenVerifyError::IssuedInFuture { .. })
        }),
        ("lifetime over 5 minutes", long_lived, NOW, |e| {
            matches!(e, TokenVerifyError::LifetimeTooLong(600))
        }),
        (
            "not valid before an hour from now",
            not_yet,
            NOW,
            |e| matches!(e, TokenVerifyError::Claims(m) if m.contains("nbf")),
        ),
        ("caller token type", caller_typed, NOW, |e| {
            matches!(e, TokenVerifyError::WrongType)
        }),
        ("no kid", no_kid, NOW, |e| {
            matches!(e, TokenVerifyError::NoKid)
        }),
        ("missing body_sha256", missing_claim, NOW, |e| {
            matches!(e, TokenVerifyError::Claims(_))
        }),
        (
            "HS256 with the JWKS as secret",
            hs_with_public_key,
            NOW,
            |e| matches!(e, TokenVerifyError::WrongAlgorithm),
        ),
        ("alg none", alg_none, NOW, |e| {
            matches!(e, TokenVerifyError::Malformed(_))
        }),
        ("garbage", "a.b".into(), NOW, |e| {
            matches!(e, TokenVerifyError::Malformed(_))
        }),
        (
            "tampered payload",
            {
                let parts: Vec<&str> = good.split('.').collect();
                let mut c = payload(&good);
                c["aud"] = json!("other-partner");
                format!(
                    "{}.{}.{}",
                    parts[0],
                    URL_SAFE_NO_PAD.encode(c.to_string()),
                    parts[2]
                )
            },
            NOW,
            |e| matches!(e, TokenVerifyError::BadSignature),
        ),
    ];
    for (name, token, now, check) in cases {
        let err = verify_data_use_token(&jwks, &token, Some(BODY), now).unwrap_err();
        assert!(check(&err), "{name}: {err:?}");
    }
    assert!(verify_data_use_token("{}", &good, None, NOW).is_err());
}

#[test]
fn jwks_shape_and_rotation() {
    let old = TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap();
    let new = TokenSigner::from_pkcs8_pem(EC, "data-use-2", ISS).unwrap();

    // Step 1: the old key signs, the new key is published already.
    let mut jwks = Jwks::new(&old);
    jwks.publish_pem("data-use-2", EC_PUB).unwrap();
    assert_eq!(jwks.kids(), ["data-use-1", "data-use-2"]);
    let doc = jwks.to_value();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["kid"], "data-use-1");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(keys[0]["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(keys[1]["kty"], "EC");
    assert_eq!(keys[1]["crv"], "P-256");
    assert_eq!(keys[1]["alg"], "ES256");
    assert!(keys[1]["y"].is_string());
    for k in keys {
        assert!(k.get("d").is_none(), "no private material is published");
    }
    // The published EC key is the one the new signer's private key derives.
    assert_eq!(keys[1], Jwks::new(&new).to_value()["keys"][0]);

    // Step 2: the new key signs, the old one is still published: tokens of both verify.
    let mut jwks2 = Jwks::new(&new);
    jwks2.publish_jwks_json(&Jwks::new(&old).to_json()).unwrap();
    let json = jwks2.to_json();
    for s in [&old, &new] {
        let t = s.sign(&input(BODY, None)).unwrap();
        assert!(
            verify_data_use_token(&json, &t, Some(BODY), NOW).is_ok(),
            "{}",
            s.kid()
        );
    }
    // Step 3: the old key is retired: its tokens no longer verify.
    let t = old.sign(&input(BODY, None)).unwrap();
    assert!(matches!(
        verify_data_use_token(&Jwks::new(&new).to_json(), &t, Some(BODY), NOW),
        Err(TokenVerifyError::UnknownKid(_))
    ));

    // publish_file: JWKS (kids inside) or PEM (kid given).
    let mut j = Jwks::new(&new);
    j.publish_file(Jwks::new(&old).to_json().as_bytes(), "ignored")
        .unwrap();
    j.publish_file(ED_OTHER_PUB, "data-use-0").unwrap();
    assert_eq!(j.kids(), ["data-use-2", "data-use-1", "data-use-0"]);

    let mut dup = Jwks::new(&old);
    assert!(matches!(
        dup.publish_pem("data-use-1", EC_PUB),
        Err(TagError::Key(KeyError::DuplicateKid(_)))
    ));
    assert!(
        dup.publish_pem("rsa", RSA_PUB).is_err(),
        "RS256 is not a data-use algorithm"
    );
    assert!(dup
        .publish_pem("two", &[EC_PUB, ED_OTHER_PUB].concat())
        .is_err());
    assert!(dup.publish_jwks_json(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).is_err(), "kid required");
}

#[test]
fn signer_key_errors() {
    let cases: Vec<(&[u8], &str, &str)> = vec![
        (RSA, "data-use-1", "Ed25519 (EdDSA) or P-256 (ES256)"),
        (EC_PUB, "data-use-1", "public key"),
        (b"not a key", "data-use-1", "no PEM private key"),
        (ED, "", "kid"),
        (ED, "has space", "kid"),
    ];
    for (pem, kid, want) in cases {
        let err = TokenSigner::from_pkcs8_pem(pem, kid, ISS)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{kid:?}: {err}");
    }
    let signer = TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap();
    assert_eq!(
        signer.sign(&TokenInput {
            jti: "",
            ..input(BODY, None)
        }),
        Err(TagError::Empty("jti"))
    );
    assert_eq!(
        signer.sign(&TokenInput {
            sub: "",
            ..input(BODY, None)
        }),
        Err(TagError::Empty("sub"))
    );
}

#[test]
fn stream_tokens_say_stream_and_bind_no_body() {
    let signer = TokenSigner::from_pkcs8_pem(ED, "data-use-1", ISS).unwrap();
    let jwks = Jwks::new(&signer).to_json();
    let token = signer.sign_stream(&input(BODY, None)).unwrap();
    let raw = payload(&token);
    assert_eq!(raw["stream"], true);
    assert!(raw.get("body_sha256").is_none(), "{raw}");
    let claims = verify_data_use_token(&jwks, &token, None, NOW + 10).unwrap();
    assert!(claims.stream && claims.body_sha256.is_none());
    // A stream token can never stand for a given body.
    let err = verify_data_use_token(&jwks, &token, Some(BODY), NOW + 10).unwrap_err();
    assert!(
        matches!(err, TokenVerifyError::BodyMismatch { .. }),
        "{err}"
    );
    // Ordinary tokens carry no `stream` claim.
    let plain = payload(&signer.sign(&input(BODY, None)).unwrap());
    assert!(plain.get("stream").is_none(), "{plain}");
}
