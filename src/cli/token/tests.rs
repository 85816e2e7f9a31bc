use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use gateway_core::callers::{CallerKeys, CallerVerifier};
use gateway_core::tagging::{Jwks, TokenInput, TokenSigner};

use super::*;

fn certs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

#[test]
fn ttl_forms() {
    let ok = [
        ("300", 300),
        ("300s", 300),
        ("5m", 300),
        ("1h", 3600),
        (" 24h ", 86_400),
        ("1s", 1),
    ];
    for (s, secs) in ok {
        assert_eq!(parse_ttl(s).unwrap(), Duration::from_secs(secs), "{s}");
    }
    for s in [
        "",
        "0",
        "0s",
        "5d",
        "m",
        "-5m",
        "1.5h",
        "25h",
        "99999999999999999999h",
        "5 m",
    ] {
        assert!(parse_ttl(s).is_err(), "{s}");
    }
}

#[test]
fn jti_is_a_fresh_uuid() {
    let (a, b) = (new_jti(), new_jti());
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4");
}

/// The committed demo keys fit together: `token` mints with callers-demo.pem what the
/// gateway accepts with callers.jwks.json, and the signing key loads.
#[test]
fn demo_keys_fit_together() {
    let (iss, aud) = ("https://auth.ohsoft.example", "partner-gateway");
    let jwks = std::fs::read(certs("callers.jwks.json")).unwrap();
    let v = CallerVerifier::new(CallerKeys::parse(&jwks).unwrap(), iss, aud, None).unwrap();
    for kid in [Some("callers-demo-1"), None] {
        let t = mint(
            &certs("callers-demo.pem"),
            "orders-service",
            parse_ttl("5m").unwrap(),
            iss,
            aud,
            kid,
        )
        .unwrap();
        let caller = v.verify(Some(&format!("Bearer {t}")), now_unix()).unwrap();
        assert_eq!(caller.sub, "orders-service");
    }
    let signing = std::fs::read(certs("data-use-signing.pem")).unwrap();
    let signer = TokenSigner::from_pkcs8_pem(
        &signing,
        "data-use-1",
        "https://partner-gateway.ohsoft.example",
    )
    .unwrap();
    assert_eq!(signer.algorithm(), "EdDSA");
    assert!(mint(
        &certs("missing.pem"),
        "x",
        Duration::from_secs(60),
        iss,
        aud,
        None
    )
    .is_err());
}

fn signed(body: &[u8]) -> (String, String) {
    let signing = std::fs::read(certs("data-use-signing.pem")).unwrap();
    let signer = TokenSigner::from_pkcs8_pem(
        &signing,
        "data-use-1",
        "https://partner-gateway.ohsoft.example",
    )
    .unwrap();
    let jti = new_jti();
    let token = signer
        .sign(&TokenInput {
            aud: "acme-ship",
            sub: "orders-service",
            use_: "on-behalf-of-ohsoft",
            purpose: "shipping",
            policy_version: "3f2a9c0d11e4",
            body_sha256: &gateway_core::tagging::body_sha256(body),
            legal_basis: None,
            now_unix: now_unix(),
            ttl_secs: 300,
            jti: &jti,
        })
        .unwrap();
    (Jwks::new(&signer).to_json(), token)
}

#[test]
fn verify_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"{"order_id":"A-1"}"#;
    let (jwks, token) = signed(body);
    let jwks_path = dir.path().join("jwks.json");
    let body_path = dir.path().join("body.json");
    let other_path = dir.path().join("other.json");
    std::fs::write(&jwks_path, jwks).unwrap();
    std::fs::write(&body_path, body).unwrap();
    std::fs::write(&other_path, br#"{"order_id":"A-2"}"#).unwrap();
    let jwks_arg = jwks_path.to_str().unwrap();

    let claims = verify(jwks_arg, Some(&body_path), &token).unwrap();
    assert_eq!(claims["aud"], "acme-ship");
    assert_eq!(claims["use"], "on-behalf-of-ohsoft");
    assert!(verify(jwks_arg, None, &format!("{token}\n")).is_ok());
    let err = format!(
        "{:#}",
        verify(jwks_arg, Some(&other_path), &token).unwrap_err()
    );
    assert!(err.contains("body_sha256 does not match"), "{err}");
    let err = format!(
        "{:#}",
        verify_at(jwks_arg, None, &token, Some(now_unix() + 3600)).unwrap_err()
    );
    assert!(err.contains("expired"), "{err}");
    assert!(verify("/nonexistent/jwks.json", None, &token).is_err());
    // An https URL is fetched (here: a port nothing listens on).
    let err = format!(
        "{:#}",
        verify("https://127.0.0.1:1/jwks.json", None, &token).unwrap_err()
    );
    assert!(err.contains("cannot fetch the JWKS"), "{err}");
}

#[test]
fn verify_from_http() {
    let body = br#"{"order_id":"A-1"}"#;
    let (jwks, token) = signed(body);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for status in ["200 OK", "404 Not Found"] {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n])
                .starts_with("GET /.well-known/jwks.json HTTP/1.1\r\n"));
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/jwk-set+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            s.write_all(reply.as_bytes()).unwrap();
        }
    });
    let url = format!("http://{addr}/.well-known/jwks.json");
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, body).unwrap();
    assert_eq!(
        verify(&url, Some(&body_path), &token).unwrap()["sub"],
        "orders-service"
    );
    let err = format!("{:#}", verify(&url, None, &token).unwrap_err());
    assert!(err.contains("HTTP 404"), "{err}");
    server.join().unwrap();
}
