use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::jose::{pem_blocks, PublicKey, CALLER_ALGORITHMS};

const ED: &[u8] = include_bytes!("testdata/ed25519.pem");
const ED_PUB: &[u8] = include_bytes!("testdata/ed25519.pub.pem");
const ED_OTHER: &[u8] = include_bytes!("testdata/ed25519-other.pem");
const ED_OTHER_PUB: &[u8] = include_bytes!("testdata/ed25519-other.pub.pem");
const EC: &[u8] = include_bytes!("testdata/p256.pem");
const EC_PUB: &[u8] = include_bytes!("testdata/p256.pub.pem");
const RSA: &[u8] = include_bytes!("testdata/rsa.pem");
const RSA_PUB: &[u8] = include_bytes!("testdata/rsa.pub.pem");
const P384_PUB: &[u8] = include_bytes!("testdata/p384.pub.pem");
const RSA1024_PUB: &[u8] = include_bytes!("testdata/rsa1024.pub.pem");

const ISS: &str = "https://auth.ohsoft.example";
const AUD: &str = "partner-gateway";
const NOW: u64 = 1_800_000_000;
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256";

fn public_jwk(kid: &str, pem: &[u8]) -> Value {
    let text = std::str::from_utf8(pem).unwrap();
    let block = &pem_blocks(text).unwrap()[0];
    PublicKey::from_public_pem(Some(kid), block, CALLER_ALGORITHMS)
        .unwrap()
        .to_jwk()
        .unwrap()
}

/// JWKS with the EdDSA ("ed"), ES256 ("ec") and RS256 ("rsa") test keys.
fn jwks() -> String {
    json!({"keys": [public_jwk("ed", ED_PUB), public_jwk("ec", EC_PUB), public_jwk("rsa", RSA_PUB)]}).to_string()
}

fn verifier() -> CallerVerifier {
    let keys = CallerKeys::from_jwks_json(&jwks()).unwrap();
    CallerVerifier::new(keys, ISS, AUD, Some("groups".into())).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "orders-service", "exp": NOW + 120, "iat": NOW})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

fn encoding_key(alg: Algorithm, pem: &[u8]) -> EncodingKey {
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(pem),
        _ => unreachable!(),
    }
}

fn sign(alg: Algorithm, key: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, key)).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Replaces the payload of a signed token, keeping header and signature.
fn swap_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(claims), parts[2])
}

#[test]
fn refuses_bad_tokens() {
    let good_ed = sign(Algorithm::EdDSA, ED, Some("ed"), &claims());
    let cases: Vec<(&str, Option<String>, AuthError)> = vec![
        ("no header", None, AuthError::Missing),
        ("empty header", Some(String::new()), AuthError::Missing),
        (
            "basic scheme",
            Some("Basic b3JkZXJzOnNlY3JldA==".into()),
            AuthError::NotBearer,
        ),
        (
            "scheme only",
            Some("Bearer".into()),
            AuthError::MalformedHeader,
        ),
        (
            "scheme and spaces",
            Some("Bearer   ".into()),
            AuthError::MalformedHeader,
        ),
        (
            "two tokens",
            Some(format!("Bearer {good_ed} {good_ed}")),
            AuthError::MalformedHeader,
        ),
        (
            "quote in token",
            Some("Bearer abc\"def".into()),
            AuthError::MalformedHeader,
        ),
        ("not a jwt", Some(bearer("not-a-jwt")), AuthError::Malformed),
        (
            "two parts",
            Some(bearer("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0")),
            AuthError::Malformed,
        ),
        (
            "forged signature (other key, same kid)",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED_OTHER,
                Some("ed"),
                &claims(),
            ))),
            AuthError::BadSignature,
        ),
        (
            "tampered payload",
            Some(bearer(&swap_payload(
                &good_ed,
                &with(claims(), "sub", json!("admin")),
            ))),
            AuthError::BadSignature,
        ),
        (
            "expired a second ago (exp has no leeway)",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "exp", json!(NOW - 1)),
            ))),
            AuthError::Expired,
        ),
        (
            "nbf in the future beyond leeway",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "nbf", json!(NOW + LEEWAY_SECS + 1)),
            ))),
            AuthError::NotYetValid,
        ),
        (
            "nbf not a number",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "nbf", json!("soon")),
            ))),
            AuthError::InvalidClaim("nbf"),
        ),
        (
            "wrong audience",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "aud", json!("billing")),
            ))),
            AuthError::WrongAudience,
        ),
        (
            "audience list without ours",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "aud", json!(["a", "b"])),
            ))),
            AuthError::WrongAudience,
        ),
        (
            "wrong issuer",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "iss", json!("https://evil.example")),
            ))),
            AuthError::WrongIssuer,
        ),
        (
            "missing sub",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &without(claims(), "sub"),
            ))),
            AuthError::MissingClaim("sub"),
        ),
        (
            "missing exp",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &without(claims(), "exp"),
            ))),
            AuthError::MissingClaim("exp"),
        ),
        (
            "missing iss",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &without(claims(), "iss"),
            ))),
            AuthError::MissingClaim("iss"),
        ),
        (
            "missing aud",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &without(claims(), "aud"),
            ))),
            AuthError::MissingClaim("aud"),
        ),
        (
            "exp not a number",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "exp", json!("later")),
            ))),
            AuthError::MissingClaim("exp"),
        ),
        (
            "sub not a string",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "sub", json!(42)),
            ))),
            AuthError::MissingClaim("sub"),
        ),
        (
            "empty sub",
            Some(bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "sub", json!("")),
            ))),
            AuthError::InvalidClaim("sub"),
        ),
        (
            "alg none, no signature",
            Some(bearer(&format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "ed"})),
                b64(&claims())
            ))),
            AuthError::Malformed,
        ),
        (
            "alg none with a signature part",
            Some(bearer(&format!(
                "{}.{}.c2ln",
                b64(&json!({"alg": "none", "kid": "ed"})),
                b64(&claims())
            ))),
            AuthError::Malformed,
        ),
        (
            "HS256 signed with the RSA public key PEM",
            Some(bearer(&sign(
                Algorithm::HS256,
                RSA_PUB,
                Some("rsa"),
                &claims(),
            ))),
            AuthError::WrongAlgorithm,
        ),
        (
            "HS256 signed with the EC public key PEM",
            Some(bearer(&sign(
                Algorithm::HS256,
                EC_PUB,
                Some("ec"),
                &claims(),
            ))),
            AuthError::WrongAlgorithm,
        ),
        (
            "HS256 signed with the Ed25519 public key PEM",
            Some(bearer(&sign(
                Algorithm::HS256,
                ED_PUB,
                Some("ed"),
                &claims(),
            ))),
            AuthError::WrongAlgorithm,
        ),
        (
            "ES256 token naming the EdDSA key",
            Some(bearer(&sign(Algorithm::ES256, EC, Some("ed"), &claims()))),
            AuthError::WrongAlgorithm,
        ),
        (
            "RS256 token naming the ES256 key",
            Some(bearer(&sign(Algorithm::RS256, RSA, Some("ec"), &claims()))),
            AuthError::WrongAlgorithm,
        ),
        (
            "unknown kid",
            Some(bearer(&sign(Algorithm::EdDSA, ED, Some("ed-2"), &claims()))),
            AuthError::UnknownKey,
        ),
        (
            "no kid, several keys",
            Some(bearer(&sign(Algorithm::EdDSA, ED, None, &claims()))),
            AuthError::UnknownKey,
        ),
        (
            "critical header",
            Some(bearer(&{
                let mut h = Header::new(Algorithm::EdDSA);
                h.kid = Some("ed".into());
                h.crit = Some(vec!["exp".into()]);
                jsonwebtoken::encode(&h, &claims(), &encoding_key(Algorithm::EdDSA, ED)).unwrap()
            })),
            AuthError::Malformed,
        ),
        (
            "oversized token",
            Some(bearer(&"a".repeat(MAX_TOKEN_BYTES + 1))),
            AuthError::TooLong,
        ),
    ];
    let v = verifier();
    for (name, header, want) in cases {
        let got = v.verify(header.as_deref(), NOW);
        assert_eq!(got, Err(want.clone()), "{name}");
        assert!(
            want.www_authenticate()
                .starts_with("Bearer realm=\"partner-gateway\""),
            "{name}"
        );
    }
}

#[test]
fn accepts_good_tokens() {
    let cases: Vec<(&str, String, Caller)> = vec![
        (
            "EdDSA",
            bearer(&sign(Algorithm::EdDSA, ED, Some("ed"), &claims())),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
        (
            "ES256 with groups",
            bearer(&sign(
                Algorithm::ES256,
                EC,
                Some("ec"),
                &with(claims(), "groups", json!(["shipping", "support"])),
            )),
            Caller {
                sub: "orders-service".into(),
                groups: vec!["shipping".into(), "support".into()],
            },
        ),
        (
            "RS256, groups as a space-separated string",
            bearer(&sign(
                Algorithm::RS256,
                RSA,
                Some("rsa"),
                &with(claims(), "groups", json!("a b")),
            )),
            Caller {
                sub: "orders-service".into(),
                groups: vec!["a".into(), "b".into()],
            },
        ),
        (
            "lowercase scheme",
            format!(
                "bearer {}",
                sign(Algorithm::EdDSA, ED, Some("ed"), &claims())
            ),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
        (
            "uppercase scheme, extra spaces",
            format!(
                "  BEARER   {}  ",
                sign(Algorithm::EdDSA, ED, Some("ed"), &claims())
            ),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
        (
            "expiring a second from now",
            bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "exp", json!(NOW + 1)),
            )),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
        (
            "nbf within leeway",
            bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "nbf", json!(NOW + LEEWAY_SECS)),
            )),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
        (
            "audience list with ours",
            bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "aud", json!(["other", AUD])),
            )),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
        (
            "fractional exp",
            bearer(&sign(
                Algorithm::EdDSA,
                ED,
                Some("ed"),
                &with(claims(), "exp", json!(NOW as f64 + 60.5)),
            )),
            Caller {
                sub: "orders-service".into(),
                groups: vec![],
            },
        ),
    ];
    let v = verifier();
    for (name, header, want) in cases {
        assert_eq!(v.verify(Some(&header), NOW), Ok(want), "{name}");
    }
}

#[test]
fn nested_groups_claim() {
    let keys = CallerKeys::from_jwks_json(&jwks()).unwrap();
    let v = CallerVerifier::new(keys, ISS, AUD, Some("realm_access.roles".into())).unwrap();
    let token = sign(
        Algorithm::EdDSA,
        ED,
        Some("ed"),
        &with(claims(), "realm_access", json!({"roles": ["ops"]})),
    );
    assert_eq!(
        v.verify(Some(&bearer(&token)), NOW).unwrap().groups,
        vec!["ops".to_string()]
    );
    // A claim literally named like the path: taken when it is the only one, but beside the
    // nested claim the token names two sets of groups, and neither is taken.
    let literal = with(claims(), "realm_access.roles", json!(["orders-service"]));
    let token = sign(Algorithm::EdDSA, ED, Some("ed"), &literal);
    assert_eq!(
        v.verify(Some(&bearer(&token)), NOW).unwrap().groups,
        vec!["orders-service".to_string()]
    );
    let both = with(literal, "realm_access", json!({"roles": ["ops"]}));
    let token = sign(Algorithm::EdDSA, ED, Some("ed"), &both);
    assert!(v
        .verify(Some(&bearer(&token)), NOW)
        .unwrap()
        .groups
        .is_empty());
}

#[test]
fn raw_header_bytes() {
    let v = verifier();
    assert_eq!(
        v.verify_raw(Some(b"Bearer \xff\xfe"), NOW),
        Err(AuthError::MalformedHeader)
    );
    assert_eq!(v.verify_raw(None, NOW), Err(AuthError::Missing));
    let token = bearer(&sign(Algorithm::EdDSA, ED, Some("ed"), &claims()));
    assert!(v.verify_raw(Some(token.as_bytes()), NOW).is_ok());
}

#[test]
fn hs256_only_when_configured() {
    let mut keys = CallerKeys::new();
    keys.add_hs256_secret(None, HS_SECRET).unwrap();
    let v = CallerVerifier::new(keys, ISS, AUD, None).unwrap();
    let good = sign(Algorithm::HS256, HS_SECRET, None, &claims());
    assert_eq!(
        v.verify(Some(&bearer(&good)), NOW).unwrap().sub,
        "orders-service"
    );
    let wrong = sign(
        Algorithm::HS256,
        b"another secret of at least 32 bytes!!",
        None,
        &claims(),
    );
    assert_eq!(
        v.verify(Some(&bearer(&wrong)), NOW),
        Err(AuthError::BadSignature)
    );
    let eddsa = sign(Algorithm::EdDSA, ED, None, &claims());
    assert_eq!(
        v.verify(Some(&bearer(&eddsa)), NOW),
        Err(AuthError::WrongAlgorithm)
    );

    // Mixed: an HS256 secret next to the RSA key; the RSA public key as HMAC secret never works.
    let mut keys = CallerKeys::from_jwks_json(&jwks()).unwrap();
    keys.add_hs256_secret(Some("hs"), HS_SECRET).unwrap();
    let v = CallerVerifier::new(keys, ISS, AUD, None).unwrap();
    for kid in ["rsa", "ec", "ed"] {
        let t = sign(Algorithm::HS256, RSA_PUB, Some(kid), &claims());
        assert_eq!(
            v.verify(Some(&bearer(&t)), NOW),
            Err(AuthError::WrongAlgorithm),
            "{kid}"
        );
    }
    let t = sign(Algorithm::HS256, RSA_PUB, Some("hs"), &claims());
    assert_eq!(
        v.verify(Some(&bearer(&t)), NOW),
        Err(AuthError::BadSignature)
    );
    let t = sign(Algorithm::HS256, HS_SECRET, Some("hs"), &claims());
    assert!(v.verify(Some(&bearer(&t)), NOW).is_ok());

    // An HS256 secret without a kid next to a key set: HS256 tokens without kid find it, and
    // tokens naming the RSA key are still held to RS256.
    let mut keys = CallerKeys::from_jwks_json(&jwks()).unwrap();
    keys.add_hs256_secret(None, HS_SECRET).unwrap();
    let v = CallerVerifier::new(keys, ISS, AUD, None).unwrap();
    let t = sign(Algorithm::HS256, HS_SECRET, None, &claims());
    assert!(v.verify(Some(&bearer(&t)), NOW).is_ok());
    let t = sign(Algorithm::HS256, RSA_PUB, None, &claims());
    assert_eq!(
        v.verify(Some(&bearer(&t)), NOW),
        Err(AuthError::BadSignature)
    );
    let t = sign(Algorithm::HS256, RSA_PUB, Some("rsa"), &claims());
    assert_eq!(
        v.verify(Some(&bearer(&t)), NOW),
        Err(AuthError::WrongAlgorithm)
    );
    let t = sign(Algorithm::EdDSA, ED, None, &claims());
    assert_eq!(v.verify(Some(&bearer(&t)), NOW), Err(AuthError::UnknownKey));

    assert_eq!(
        CallerKeys::new().add_hs256_secret(None, b"short"),
        Err(KeyError::WeakSecret(5))
    );
}

#[test]
fn single_pem_key_without_kid() {
    let keys = CallerKeys::parse(ED_PUB).unwrap();
    let v = CallerVerifier::new(keys, ISS, AUD, None).unwrap();
    for kid in [None, Some("anything")] {
        let t = sign(Algorithm::EdDSA, ED, kid, &claims());
        assert!(v.verify(Some(&bearer(&t)), NOW).is_ok(), "{kid:?}");
    }
    let forged = sign(Algorithm::EdDSA, ED_OTHER, None, &claims());
    assert_eq!(
        v.verify(Some(&bearer(&forged)), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn several_pem_keys() {
    // Keys without kids: a token without kid finds the one key of its algorithm.
    let all = [ED_PUB, EC_PUB, RSA_PUB].concat();
    let keys = CallerKeys::parse(&all).unwrap();
    assert_eq!(keys.len(), 3);
    let v = CallerVerifier::new(keys, ISS, AUD, None).unwrap();
    for (alg, pem) in [
        (Algorithm::EdDSA, ED),
        (Algorithm::ES256, EC),
        (Algorithm::RS256, RSA),
    ] {
        let t = sign(alg, pem, None, &claims());
        assert!(v.verify(Some(&bearer(&t)), NOW).is_ok(), "{alg:?}");
    }
    let forged = sign(Algorithm::EdDSA, ED_OTHER, None, &claims());
    assert_eq!(
        v.verify(Some(&bearer(&forged)), NOW),
        Err(AuthError::BadSignature)
    );
    let hs = sign(Algorithm::HS256, ED_PUB, None, &claims());
    assert_eq!(
        v.verify(Some(&bearer(&hs)), NOW),
        Err(AuthError::UnknownKey)
    );

    // Two keys of the same algorithm without kids: ambiguous, refused.
    let two = [ED_PUB, ED_OTHER_PUB].concat();
    let v = CallerVerifier::new(CallerKeys::parse(&two).unwrap(), ISS, AUD, None).unwrap();
    let t = sign(Algorithm::EdDSA, ED, None, &claims());
    assert_eq!(v.verify(Some(&bearer(&t)), NOW), Err(AuthError::UnknownKey));
}

#[test]
fn key_loading_errors() {
    let ed = public_jwk("ed", ED_PUB);
    let cases: Vec<(&str, String, &str)> = vec![
        ("not json", "{".into(), "key set is not valid JSON"),
        (
            "no keys member",
            r#"{"kty":"OKP"}"#.into(),
            "no \"keys\" array",
        ),
        ("empty set", r#"{"keys":[]}"#.into(), "no usable key"),
        (
            "only encryption keys",
            json!({"keys": [with(ed.clone(), "use", json!("enc"))]}).to_string(),
            "no usable key",
        ),
        (
            "symmetric key",
            json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}).to_string(),
            "symmetric keys are not accepted",
        ),
        (
            "private key material",
            json!({"keys": [with(ed.clone(), "d", json!("AAAA"))]}).to_string(),
            "private key material",
        ),
        (
            "duplicate kid",
            json!({"keys": [ed.clone(), ed.clone()]}).to_string(),
            "used by more than one key",
        ),
        (
            "alg that does not fit the key",
            json!({"keys": [with(ed.clone(), "alg", json!("HS256"))]}).to_string(),
            "does not fit",
        ),
        (
            "unsupported curve",
            json!({"keys": [with(ed.clone(), "crv", json!("Ed448"))]}).to_string(),
            "not supported",
        ),
        (
            "short x",
            json!({"keys": [with(ed.clone(), "x", json!("AAAA"))]}).to_string(),
            "32 bytes",
        ),
        (
            "EC point not on the curve",
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bad",
                "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([1u8; 32])}]})
            .to_string(),
            "invalid public key",
        ),
        (
            "small RSA key",
            json!({"keys": [public_jwk_unchecked("small", RSA1024_PUB)]}).to_string(),
            "at least 2048",
        ),
        (
            "unknown key type",
            json!({"keys": [{"kty": "XYZ", "kid": "x"}]}).to_string(),
            "not supported",
        ),
    ];
    for (name, doc, want) in cases {
        let err = CallerKeys::from_jwks_json(&doc).unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err}");
    }

    for (name, pem, want) in [
        ("P-384", P384_PUB, "not supported"),
        ("RSA 1024", RSA1024_PUB, "at least 2048"),
        ("private key", ED, "is a private key"),
        (
            "not a key",
            b"hello".as_slice(),
            "neither a JWKS document nor PEM",
        ),
    ] {
        let err = CallerKeys::parse(pem).unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
    assert!(CallerVerifier::new(CallerKeys::new(), ISS, AUD, None).is_err());
}

/// The JWK of an RSA PEM without the size check, to feed the size check of the JWKS path.
fn public_jwk_unchecked(kid: &str, pem: &[u8]) -> Value {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem).unwrap();
    let mut v =
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_decoding_key(&key, None).unwrap())
            .unwrap();
    v["kid"] = json!(kid);
    v
}

#[test]
fn may_use() {
    let caller = Caller {
        sub: "orders-service".into(),
        groups: vec!["shipping".into()],
    };
    let cases: Vec<(Vec<&str>, bool)> = vec![
        (vec!["orders-service"], true),
        (vec!["support-desk", "shipping"], true),
        (vec!["support-desk"], false),
        (vec![], false),
        (vec!["Orders-Service"], false),
    ];
    for (allowed, want) in cases {
        let allowed: Vec<String> = allowed.into_iter().map(String::from).collect();
        assert_eq!(caller.may_use(&allowed), want, "{allowed:?}");
    }
}

#[test]
fn a_named_caller_is_admitted_by_its_sub_alone() {
    let partner = |allowed: &[&str]| -> Partner {
        let text = format!(
            "kind: contractor\npurpose: x\nupstream: http://127.0.0.1:1\nallowed_callers: [{}]\nroutes: []\n",
            allowed.join(", ")
        );
        let source = crate::policy::PolicySource {
            dir: "policy".into(),
            gateway: crate::policy::SourceFile {
                path: "policy/gateway.yaml".into(),
                text: "callers: {allow_unauthenticated: true}\nsigning: {disabled: true}\n".into(),
            },
            partners: vec![crate::policy::SourceFile {
                path: "policy/partners/p.yaml".into(),
                text,
            }],
        };
        let mut policy = crate::policy::load(&source, None).unwrap().policy;
        let partner = policy.partners.remove("p").unwrap();
        std::sync::Arc::try_unwrap(partner).unwrap()
    };
    let named = Caller::named("orders-service");
    assert!(named.check_partner(&partner(&["orders-service"])).is_ok());
    let refused = named.check_partner(&partner(&["shipping"])).unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (403, "caller_not_allowed")
    );
    assert_eq!(
        refused.message(),
        r#"caller "orders-service" may not send to partner "p""#
    );
    let in_group = Caller {
        sub: "orders-service".into(),
        groups: vec!["shipping".into()],
    };
    assert!(in_group.check_partner(&partner(&["shipping"])).is_ok());
}

#[test]
fn bearer_credentials_are_read_one_way() {
    let cases: &[(Option<&str>, Result<&str, AuthError>)] = &[
        (Some("Bearer abc"), Ok("abc")),
        (Some("bearer abc"), Ok("abc")),
        (Some("BEARER\tabc"), Ok("abc")),
        (Some("  Bearer   abc \t"), Ok("abc")),
        (Some("Bearer a!b"), Ok("a!b")),
        (None, Err(AuthError::Missing)),
        (Some(" \t "), Err(AuthError::Missing)),
        (Some("Basic abc"), Err(AuthError::NotBearer)),
        (Some("Bearer"), Err(AuthError::MalformedHeader)),
        (Some("Bearer \t"), Err(AuthError::MalformedHeader)),
    ];
    for (header, want) in cases {
        assert_eq!(bearer_credentials(*header), *want, "{header:?}");
    }
    // A caller token is also a b64token.
    assert_eq!(
        bearer_token(Some("Bearer a!b")),
        Err(AuthError::MalformedHeader)
    );
    assert_eq!(bearer_token(Some("Bearer ab==")), Ok("ab=="));
}

#[test]
fn www_authenticate_values() {
    assert_eq!(
        AuthError::Missing.www_authenticate(),
        r#"Bearer realm="partner-gateway""#
    );
    assert_eq!(
        AuthError::Expired.www_authenticate(),
        r#"Bearer realm="partner-gateway", error="invalid_token", error_description="the token has expired""#
    );
    assert_eq!(
        AuthError::MalformedHeader.www_authenticate(),
        r#"Bearer realm="partner-gateway", error="invalid_request", error_description="malformed authorization header""#
    );
    let r = AuthError::BadSignature.to_refusal();
    assert_eq!((r.status(), r.code()), (401, "unauthenticated"));
}

#[test]
fn minted_tokens_verify() {
    let v = verifier();
    for (pem, kid) in [(ED, "ed"), (EC, "ec"), (RSA, "rsa")] {
        let input = CallerTokenInput {
            issuer: ISS,
            audience: AUD,
            sub: "support-desk",
            kid: Some(kid),
            now_unix: NOW,
            ttl_secs: 300,
        };
        let token = mint_caller_token(pem, &input).unwrap();
        assert_eq!(
            v.verify(Some(&bearer(&token)), NOW).unwrap().sub,
            "support-desk",
            "{kid}"
        );
        assert_eq!(
            v.verify(Some(&bearer(&token)), NOW + 300),
            Err(AuthError::Expired),
            "{kid}"
        );
    }
    let input = CallerTokenInput {
        issuer: ISS,
        audience: AUD,
        sub: "x",
        kid: None,
        now_unix: NOW,
        ttl_secs: 60,
    };
    assert!(mint_caller_token(ED_PUB, &input)
        .unwrap_err()
        .to_string()
        .contains("public key"));
    assert!(mint_caller_token(ED_OTHER_PUB, &input).is_err());
    let sec1 = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
    assert!(mint_caller_token(sec1, &input)
        .unwrap_err()
        .to_string()
        .contains("openssl pkcs8"));
}

#[test]
fn iss_must_be_one_string() {
    let v = verifier();
    for iss in [json!([ISS]), json!([ISS, "https://other.example"])] {
        let t = sign(
            Algorithm::EdDSA,
            ED,
            Some("ed"),
            &with(claims(), "iss", iss.clone()),
        );
        assert_eq!(
            v.verify(Some(&bearer(&t)), NOW).unwrap_err(),
            AuthError::InvalidClaim("iss"),
            "{iss}"
        );
        assert!(v.verify_cached(Some(&bearer(&t)), NOW).is_err(), "{iss}");
    }
}

#[test]
fn token_lifetime_is_bounded() {
    let v = verifier();
    let day = DEFAULT_MAX_TOKEN_LIFETIME_SECS;
    let token = |c: Value| bearer(&sign(Algorithm::EdDSA, ED, Some("ed"), &c));
    // exp − iat: exactly a day passes, a second more does not.
    let ok = with(claims(), "exp", json!(NOW + day));
    assert!(v.verify(Some(&token(ok)), NOW).is_ok());
    let long = with(claims(), "exp", json!(NOW + day + 1));
    assert_eq!(
        v.verify(Some(&token(long.clone())), NOW).unwrap_err(),
        AuthError::LifetimeTooLong(day)
    );
    // Measured from iat, not from now: an old token that was issued for too long stays refused.
    assert!(v.verify(Some(&token(long)), NOW + 10 * 3600).is_err());
    let century = with(claims(), "exp", json!(NOW + 100 * 365 * day));
    assert!(v.verify(Some(&token(century.clone())), NOW).is_err());
    // Without iat: exp − now.
    let no_iat = without(century, "iat");
    assert_eq!(
        v.verify_cached(Some(&token(no_iat)), NOW).unwrap_err(),
        AuthError::LifetimeTooLong(day)
    );
    let no_iat_ok = without(with(claims(), "exp", json!(NOW + 3600)), "iat");
    assert!(v.verify_cached(Some(&token(no_iat_ok)), NOW).is_ok());
    // An iat in the future cannot shorten the measured lifetime.
    let future = with(
        with(claims(), "iat", json!(NOW + 50 * day)),
        "exp",
        json!(NOW + 50 * day + 60),
    );
    assert_eq!(
        v.verify(Some(&token(future)), NOW).unwrap_err(),
        AuthError::InvalidClaim("iat")
    );
    let bad_iat = with(claims(), "iat", json!("yesterday"));
    assert_eq!(
        v.verify(Some(&token(bad_iat)), NOW).unwrap_err(),
        AuthError::InvalidClaim("iat")
    );
    // A configured maximum, also on the cached path.
    let short = verifier().with_max_lifetime(60);
    assert_eq!(
        short
            .verify_cached(Some(&token(claims())), NOW)
            .unwrap_err(),
        AuthError::LifetimeTooLong(60)
    );
    assert_eq!(
        short
            .verify_cached(Some(&token(claims())), NOW)
            .unwrap_err(),
        AuthError::LifetimeTooLong(60)
    );
    assert!(short.cache().is_empty());
}
