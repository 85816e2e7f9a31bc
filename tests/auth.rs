//! End to end, on the real binary: caller authentication (401/403), the data-use tag
//! and the signed data-use token as the partner receives them (verified partner-side with
//! `verify-token` against the live JWKS), header hygiene, government legal basis, and
//! `upstream_auth` secrets. Every refusal is also checked to have reached no partner.
mod util;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use util::*;

/// A second Ed25519 key that is not the demo caller's (the core's test data).
const OTHER_ED25519: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/core/src/callers/testdata/ed25519-other.pem"
);
const CALLER_KID: &str = "callers-demo-1";
const SHIP_TOKEN: &str = "ship-secret-123";
const TAX_KEY: &str = "tax-key-456";
const ADMIN_TOKEN: &str = "admin-token-789";

fn cert(name: &str) -> PathBuf {
    Path::new(CERTS).join(name)
}

fn now() -> u64 {
    partner_gateway::cli::token::now_unix()
}

// ---------------------------------------------------------------------------------------------
// The gateway under test: caller auth on, signing on, an opt-out store.

/// `gateway.yaml` with real caller authentication and data-use signing (absolute key paths).
fn auth_gateway_yaml(listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"listen: {listen}
admin_listen: {admin}
limits: {{ max_body_bytes: 100000, max_depth: 16, upstream_timeout_ms: 1500 }}
admin_token_env: AUTH_TEST_ADMIN_TOKEN
optouts: {{ path: data/optouts }}
{}"#,
        callers_and_signing_yaml()
    )
}

fn ship_partner(upstream: &str) -> String {
    format!(
        r#"kind: contractor
purpose: shipping
upstream: {upstream}
routes:
  - path: /v1/shipments
    methods: [POST]
    records: shipments[*]
    subject: customer_id
    allow:
      - order_id
      - shipments[*].customer_id
      - shipments[*].name
    headers: [x-request-id]
allowed_callers: [orders-service]
upstream_auth: {{ header: authorization, prefix: "Bearer ", env: AUTH_TEST_SHIP_TOKEN }}
"#
    )
}

fn tax_partner(upstream: &str) -> String {
    format!(
        r#"kind: government
purpose: tax-reporting
upstream: {upstream}
routes:
  - path: /v1/filings
    methods: [POST]
    records: $
    subject: customer_id
    allow: [customer_id, year]
allowed_callers: [orders-service]
upstream_auth: {{ header: x-api-key, env: AUTH_TEST_TAX_KEY }}
"#
    )
}

fn mail_partner(upstream: &str) -> String {
    marketing_partner(upstream, "allowed_callers: [marketing-service]\n")
}

struct AuthGateway {
    addr: SocketAddr,
    admin: SocketAddr,
    gateway: Gateway,
}

impl AuthGateway {
    /// `serve` with [`auth_gateway_yaml`] and the three partners, all pointing at `mock`.
    fn start(mock: &Mock) -> AuthGateway {
        let up = mock.url();
        let gateway = Gateway::start_with(
            auth_gateway_yaml,
            &[
                ("acme-ship", &ship_partner(&up)),
                ("tax", &tax_partner(&up)),
                ("mail", &mail_partner(&up)),
            ],
            &[
                ("AUTH_TEST_SHIP_TOKEN", SHIP_TOKEN),
                ("AUTH_TEST_TAX_KEY", TAX_KEY),
                ("AUTH_TEST_ADMIN_TOKEN", ADMIN_TOKEN),
            ],
        );
        AuthGateway {
            addr: gateway.addr,
            admin: gateway.admin,
            gateway,
        }
    }

    fn send(&self, target: &str, headers: &[(&str, &str)], body: &str) -> Response {
        http1::send(
            &self.addr.to_string(),
            "POST",
            target,
            headers,
            Some(body.as_bytes()),
        )
        .unwrap()
    }

    /// POST a JSON body with `Authorization: Bearer <token>` plus `extra` headers.
    fn post(&self, target: &str, token: &str, extra: &[(&str, &str)], body: &str) -> Response {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        headers.extend_from_slice(extra);
        self.send(target, &headers, body)
    }

    fn admin(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        http1::send(&self.admin.to_string(), method, path, headers, body).unwrap()
    }

    fn metrics(&self) -> String {
        String::from_utf8(self.admin("GET", "/metrics", &[], None).body).unwrap()
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.admin)
    }

    /// The policy version, from `partner_gateway_policy_info{version="…"} 1`.
    fn policy_version(&self) -> String {
        let metrics = self.metrics();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("partner_gateway_policy_info{"))
            .unwrap_or_else(|| panic!("no policy_info metric: {metrics}"));
        let start = line.find("version=\"").unwrap() + "version=\"".len();
        let end = start + line[start..].find('"').unwrap();
        line[start..end].to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

/// A valid caller token for `sub`, minted the way `partner-gateway token` does.
fn caller_token(sub: &str) -> String {
    partner_gateway::cli::token::mint(
        &cert("callers-demo.pem"),
        sub,
        Duration::from_secs(300),
        CALLER_ISSUER,
        CALLER_AUDIENCE,
        Some(CALLER_KID),
    )
    .unwrap()
}

/// Claims of a normal caller token, to be spoiled.
fn good_claims(sub: &str) -> Value {
    let t = now();
    json!({"iss": CALLER_ISSUER, "aud": CALLER_AUDIENCE, "sub": sub, "iat": t, "nbf": t, "exp": t + 300})
}

/// Signs `claims` with the private key in `pem_file` (EdDSA), `kid` in the header.
fn sign_with(pem_file: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(pem_file).unwrap();
    gateway_core::jose::PrivateKey::from_pem(&pem)
        .unwrap()
        .sign_jwt(kid, "JWT", claims)
        .unwrap()
}

fn demo_signed(claims: &Value) -> String {
    sign_with(
        cert("callers-demo.pem").to_str().unwrap(),
        Some(CALLER_KID),
        claims,
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// HMAC-SHA256 (RFC 2104), for crafting HS256 tokens keyed with public key bytes.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// An HS256 token over `claims` keyed with `key` (the RS/HS confusion attack).
fn hs256_token(key: &[u8], claims: &Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": CALLER_KID});
    let signing_input = format!("{}.{}", b64json(&header), b64json(claims));
    let sig = hmac_sha256(key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

fn decode_segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn body_sha256(body: &[u8]) -> String {
    b64(&Sha256::digest(body))
}

// ---------------------------------------------------------------------------------------------
// Partner-side helpers.

fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The single value of `name`, panicking when absent or repeated.
fn one_header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    match header_values(headers, name).as_slice() {
        [one] => one,
        other => panic!("expected exactly one {name:?} header, got {other:?} in {headers:#?}"),
    }
}

/// Runs `partner-gateway verify-token` as a partner would; returns (success, stdout, stderr).
fn verify_token(jwks: &str, body_file: Option<&Path>, token: &str) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command.args(["verify-token", "--jwks", jwks]);
    if let Some(body) = body_file {
        command.arg("--body").arg(body);
    }
    let out = command.arg(token).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks a received data-use token with `verify-token` against the live JWKS and the exact
/// body bytes the partner received; returns its claims.
fn verify_received(gw: &AuthGateway, token: &str, body: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("received.json");
    std::fs::write(&body_file, body.as_bytes()).unwrap();
    let (ok, stdout, stderr) = verify_token(&gw.jwks_url(), Some(&body_file), token);
    assert!(ok, "verify-token refused the token: {stderr}");
    assert!(stderr.contains("body_sha256 matches"), "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("claims JSON: {e}: {stdout}"))
}

fn assert_www_authenticate(response: &Response, case: &str, invalid_token: bool) {
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{case}: 401 without WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer realm=\"partner-gateway\""),
        "{case}: {challenge}"
    );
    if invalid_token {
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn valid_caller_reaches_partner_with_a_data_use_token_it_can_verify() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let version = gw.policy_version();
    let body = r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann","email":"ann@example.com"}]}"#;

    // First request: a token minted in-process.
    let r = gw.post(
        "/acme-ship/v1/shipments",
        &caller_token("orders-service"),
        &[],
        body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Second request: a token minted by the CLI, issuer/audience read from the policy.
    let out = Command::new(BIN)
        .args(["token", "--key"])
        .arg(cert("callers-demo.pem"))
        .args(["--sub", "orders-service", "--ttl", "5m", "--policy"])
        .arg(gw.gateway.policy.policy())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = gw.post("/acme-ship/v1/shipments", &cli_token, &[], body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let received = mock.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    let mut jtis = Vec::new();
    for record in &received {
        let headers = headers_of(record);
        let got_body = record["body"].as_str().unwrap();
        assert_eq!(
            got_body,
            r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#
        );
        assert_eq!(
            one_header(&headers, "ohsoft-data-use"),
            format!(r#"use="on-behalf-of-ohsoft", purpose="shipping", policy="{version}""#)
        );
        // The partner's credential, not the caller's token.
        assert_eq!(
            one_header(&headers, "authorization"),
            format!("Bearer {SHIP_TOKEN}")
        );
        let token = one_header(&headers, "ohsoft-data-use-token");

        let header = decode_segment(token, 0);
        assert_eq!(header["alg"], "EdDSA", "{header}");
        assert_eq!(header["kid"], "data-use-1", "{header}");

        let claims = verify_received(&gw, token, got_body);
        assert_eq!(claims["iss"], SIGNING_ISSUER, "{claims}");
        assert_eq!(claims["aud"], "acme-ship", "{claims}");
        assert_eq!(claims["sub"], "orders-service", "{claims}");
        assert_eq!(claims["use"], "on-behalf-of-ohsoft", "{claims}");
        assert_eq!(claims["purpose"], "shipping", "{claims}");
        assert_eq!(claims["policy_version"], version.as_str(), "{claims}");
        assert!(claims.get("legal_basis").is_none(), "{claims}");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert!(exp > iat && exp - iat <= 300, "{claims}");
        assert!(iat.abs_diff(now()) <= 60, "{claims}");
        assert_eq!(
            claims["body_sha256"],
            body_sha256(got_body.as_bytes()),
            "{claims}"
        );
        // The signed claims are the ones verify-token printed.
        assert_eq!(decode_segment(token, 1), claims);
        jtis.push(claims["jti"].as_str().unwrap().to_string());

        // A body that is not byte-for-byte what was forwarded fails the digest check.
        let dir = tempfile::tempdir().unwrap();
        for tampered in [
            got_body.replace("Ann", "Bob"),
            format!("{got_body}\n"),
            got_body.replace(',', ", "),
        ] {
            let file = dir.path().join("tampered.json");
            std::fs::write(&file, tampered.as_bytes()).unwrap();
            let (ok, _, stderr) = verify_token(&gw.jwks_url(), Some(&file), token);
            assert!(!ok, "a tampered body verified: {tampered}");
            assert!(stderr.contains("body_sha256"), "{stderr}");
        }
        // A partner pinning its own id and the gateway's issuer: the right ones pass, another
        // partner's id does not.
        for (aud, ok_expected) in [("acme-ship", true), ("mail", false)] {
            let out = Command::new(BIN)
                .args(["verify-token", "--jwks", &gw.jwks_url(), "--aud", aud])
                .args(["--iss", claims["iss"].as_str().unwrap(), token])
                .output()
                .unwrap();
            assert_eq!(
                out.status.success(),
                ok_expected,
                "--aud {aud}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A token whose claims were edited does not verify either.
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged_claims = claims.clone();
        forged_claims["aud"] = json!("someone-else");
        let forged = format!("{}.{}.{}", parts[0], b64json(&forged_claims), parts[2]);
        let (ok, _, _) = verify_token(&gw.jwks_url(), None, &forged);
        assert!(!ok, "a token with edited claims verified");
    }
    assert_ne!(jtis[0], jtis[1], "jti must be unique per request");

    // The JWKS publishes the signing key's public half only.
    let jwks = gw.admin("GET", "/.well-known/jwks.json", &[], None);
    assert_eq!(jwks.status, 200);
    let jwks = jwks.json();
    let keys = jwks["keys"].as_array().unwrap();
    let key = keys
        .iter()
        .find(|k| k["kid"] == "data-use-1")
        .unwrap_or_else(|| panic!("no data-use-1 in {jwks}"));
    assert_eq!(key["kty"], "OKP", "{jwks}");
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "private key material in {jwks}"
    );

    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_requests_total{partner="acme-ship",route="/v1/shipments",status="200"}"#
        ),
        2.0,
        "{metrics}"
    );
}

#[test]
fn missing_or_bad_caller_credentials_are_401() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let t = now();
    let good = caller_token("orders-service");
    let other_pub_pem = std::fs::read(cert("callers-demo.pub.pem")).unwrap();
    let pem_text = String::from_utf8(other_pub_pem.clone()).unwrap();
    let pem_block = &pem_text[pem_text.find("-----BEGIN").unwrap()..];
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(cert("callers.jwks.json")).unwrap()).unwrap();
    let raw_x = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();

    let forged_sig = {
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        sig[0] ^= 0x01;
        parts[2] = b64(&sig);
        parts.join(".")
    };
    let forged_claims = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut claims = decode_segment(&good, 1);
        claims["sub"] = json!("support-desk");
        format!("{}.{}.{}", parts[0], b64json(&claims), parts[2])
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = good_claims("orders-service");
        edit(&mut claims);
        claims
    };
    let alg_none = format!(
        "{}.{}.",
        b64json(&json!({"alg": "none", "typ": "JWT", "kid": CALLER_KID})),
        b64json(&good_claims("orders-service"))
    );
    let alg_none_lower = format!(
        "{}.{}.",
        b64json(&json!({"alg": "None", "typ": "JWT"})),
        b64json(&good_claims("orders-service"))
    );

    // (case, Authorization header values, whether WWW-Authenticate must say invalid_token)
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(&str, Vec<String>, bool)> = vec![
        ("no authorization header", vec![], false),
        ("Basic scheme", vec!["Basic x".into()], false),
        (
            "Basic with credentials",
            vec!["Basic b3JkZXJzOnB3".into()],
            false,
        ),
        ("Bearer alone", vec!["Bearer".into()], false),
        ("Bearer and a space", vec!["Bearer ".into()], false),
        ("bearer junk", vec!["Bearer not-a-jwt".into()], true),
        (
            "two authorization headers",
            vec![bearer(&good), bearer(&good)],
            false,
        ),
        (
            "forged signature (bit flipped)",
            vec![bearer(&forged_sig)],
            true,
        ),
        (
            "claims edited after signing",
            vec![bearer(&forged_claims)],
            true,
        ),
        (
            "signed by another key, same kid",
            vec![bearer(&sign_with(
                OTHER_ED25519,
                Some(CALLER_KID),
                &good_claims("orders-service"),
            ))],
            true,
        ),
        (
            "unknown kid, other key",
            vec![bearer(&sign_with(
                OTHER_ED25519,
                Some("callers-demo-2"),
                &good_claims("orders-service"),
            ))],
            true,
        ),
        (
            "expired",
            vec![bearer(&demo_signed(&with(&|c| {
                c["iat"] = json!(t - 900);
                c["nbf"] = json!(t - 900);
                c["exp"] = json!(t - 120);
            })))],
            true,
        ),
        (
            "nbf in the future",
            vec![bearer(&demo_signed(&with(&|c| {
                c["nbf"] = json!(t + 600);
                c["exp"] = json!(t + 900);
            })))],
            true,
        ),
        (
            "wrong audience",
            vec![bearer(
                &partner_gateway::cli::token::mint(
                    &cert("callers-demo.pem"),
                    "orders-service",
                    Duration::from_secs(300),
                    CALLER_ISSUER,
                    "some-other-service",
                    Some(CALLER_KID),
                )
                .unwrap(),
            )],
            true,
        ),
        (
            "wrong issuer",
            vec![bearer(
                &partner_gateway::cli::token::mint(
                    &cert("callers-demo.pem"),
                    "orders-service",
                    Duration::from_secs(300),
                    "https://evil.example",
                    CALLER_AUDIENCE,
                    Some(CALLER_KID),
                )
                .unwrap(),
            )],
            true,
        ),
        (
            "missing sub",
            vec![bearer(&demo_signed(&with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            })))],
            true,
        ),
        (
            "empty sub",
            vec![bearer(&demo_signed(&with(&|c| c["sub"] = json!(""))))],
            true,
        ),
        (
            "missing exp",
            vec![bearer(&demo_signed(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })))],
            true,
        ),
        (
            "missing iss",
            vec![bearer(&demo_signed(&with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            })))],
            true,
        ),
        (
            "missing aud",
            vec![bearer(&demo_signed(&with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            })))],
            true,
        ),
        ("alg none", vec![bearer(&alg_none)], true),
        ("alg None, no kid", vec![bearer(&alg_none_lower)], true),
        (
            "HS256 keyed with the public key PEM file",
            vec![bearer(&hs256_token(
                &other_pub_pem,
                &good_claims("orders-service"),
            ))],
            true,
        ),
        (
            "HS256 keyed with the public key PEM block",
            vec![bearer(&hs256_token(
                pem_block.as_bytes(),
                &good_claims("orders-service"),
            ))],
            true,
        ),
        (
            "HS256 keyed with the raw public key",
            vec![bearer(&hs256_token(&raw_x, &good_claims("orders-service")))],
            true,
        ),
    ];

    let body = r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#;
    for (case, authorization, invalid_token) in &cases {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(authorization.iter().map(|v| ("authorization", v.as_str())));
        let r = gw.send("/acme-ship/v1/shipments", &headers, body);
        assert_eq!(
            r.status,
            401,
            "{case}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_refused(&r, 401, "unauthenticated");
        assert_www_authenticate(&r, case, *invalid_token);
        // The refusal never echoes the token.
        for value in authorization {
            if let Some(token) = value.strip_prefix("Bearer ").filter(|t| t.len() > 20) {
                assert!(
                    !String::from_utf8_lossy(&r.body).contains(token),
                    "{case}: token echoed"
                );
            }
        }
        assert!(
            mock.received().is_empty(),
            "{case}: the partner received a request"
        );
    }
    // No credential at all: the plain challenge, no error code.
    let r = gw.send(
        "/acme-ship/v1/shipments",
        &[("content-type", "application/json")],
        body,
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"partner-gateway\"")
    );

    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_requests_refused_total{partner="acme-ship",reason="unauthenticated"}"#
        ),
        (cases.len() + 1) as f64,
        "{metrics}"
    );

    // The same gateway lets a good token through (the cases above failed for their own reason).
    let r = gw.post("/acme-ship/v1/shipments", &good, &[], body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.received().len(), 1);
}

/// A token signed with the right key but naming a kid the JWKS does not hold. The verifier
/// falls back to the only configured key even though that key has a different kid
/// (`CallerKeys::select` in crates/core/src/callers/mod.rs), so this is currently accepted.
#[test]
fn token_naming_an_unknown_kid_is_401() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let token = sign_with(
        cert("callers-demo.pem").to_str().unwrap(),
        Some("no-such-kid"),
        &good_claims("orders-service"),
    );
    let r = gw.post(
        "/acme-ship/v1/shipments",
        &token,
        &[],
        r#"{"order_id":"A-1","shipments":[]}"#,
    );
    assert_refused(&r, 401, "unauthenticated");
    assert_www_authenticate(&r, "unknown kid", true);
    assert!(mock.received().is_empty());
}

#[test]
fn caller_not_in_allowed_callers_is_403() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let body = r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#;
    for sub in [
        "support-desk",
        "marketing-service",
        "Orders-Service",
        "orders-service ",
    ] {
        let r = gw.post("/acme-ship/v1/shipments", &caller_token(sub), &[], body);
        assert_refused(&r, 403, "caller_not_allowed");
        assert_eq!(r.header("www-authenticate"), None, "{sub}");
        assert!(
            mock.received().is_empty(),
            "{sub}: the partner received a request"
        );
    }
    // orders-service may use acme-ship but not the business partner.
    let r = gw.post(
        "/mail/v1/audiences",
        &caller_token("orders-service"),
        &[],
        r#"{"campaign":"x","contacts":[]}"#,
    );
    assert_refused(&r, 403, "caller_not_allowed");
    assert!(mock.received().is_empty());
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_requests_refused_total{partner="acme-ship",reason="caller_not_allowed"}"#
        ),
        4.0,
        "{metrics}"
    );
}

/// `allow_unauthenticated: true` beside configured keys lets a request without a token in (local
/// development), but a token that is sent is still verified and held to `allowed_callers`: a
/// bad, expired or not-allowed one is refused as without the flag, and nothing is forwarded.
#[test]
fn allow_unauthenticated_beside_keys_still_checks_every_token_sent() {
    let mock = Mock::start();
    let yaml = |listen, admin| {
        auth_gateway_yaml(listen, admin).replacen(
            "callers:\n",
            "callers:\n  allow_unauthenticated: true\n",
            1,
        )
    };
    let gateway = Gateway::start_with(
        yaml,
        &[("acme-ship", &ship_partner(&mock.url()))],
        &[
            ("AUTH_TEST_SHIP_TOKEN", SHIP_TOKEN),
            ("AUTH_TEST_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let gw = AuthGateway {
        addr: gateway.addr,
        admin: gateway.admin,
        gateway,
    };
    let body = r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#;
    let mut expired = good_claims("orders-service");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    expired["nbf"] = json!(now() - 7200);
    let refused = [
        ("junk".to_string(), 401, "unauthenticated"),
        (demo_signed(&expired), 401, "unauthenticated"),
        (caller_token("marketing-service"), 403, "caller_not_allowed"),
    ];
    for (token, status, code) in &refused {
        let r = gw.post("/acme-ship/v1/shipments", token, &[], body);
        assert_refused(&r, *status, code);
    }
    assert!(mock.received().is_empty(), "a refused token was forwarded");

    let allowed = gw.post(
        "/acme-ship/v1/shipments",
        &caller_token("orders-service"),
        &[],
        body,
    );
    assert_eq!(
        allowed.status,
        200,
        "{}",
        String::from_utf8_lossy(&allowed.body)
    );
    let anonymous = gw.send(
        "/acme-ship/v1/shipments",
        &[("content-type", "application/json")],
        body,
    );
    assert_eq!(
        anonymous.status,
        200,
        "{}",
        String::from_utf8_lossy(&anonymous.body)
    );
    let subs: Vec<String> = mock
        .received()
        .iter()
        .map(|record| {
            let headers = headers_of(record);
            let token = one_header(&headers, "ohsoft-data-use-token");
            decode_segment(token, 1)["sub"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(subs, ["orders-service", "unauthenticated"]);
}

#[test]
fn header_hygiene_survives_connection_tricks() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let version = gw.policy_version();
    let token = caller_token("orders-service");
    let body = r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#;
    let leaky = [
        ("cookie", "session=s3cr3t"),
        ("user-agent", "Mozilla/5.0 (caller browser)"),
        ("referer", "https://shop.ohsoft.example/checkout"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-host", "shop.ohsoft.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-real-ip", "203.0.113.7"),
        ("x-api-key", "caller-supplied"),
        ("proxy-authorization", "Basic eDp5"),
    ];

    // Control: without Connection games, the route's x-request-id passes.
    let r = gw.post(
        "/acme-ship/v1/shipments",
        &token,
        &[("x-request-id", "req-0")],
        body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let mut extra = vec![
        (
            "connection",
            "ohsoft-data-use-token, ohsoft-data-use, authorization, x-request-id",
        ),
        ("x-request-id", "req-1"),
        ("ohsoft-data-use", r#"use="fake""#),
        ("ohsoft-data-use-token", "eyJhbGciOiJub25lIn0.e30."),
        ("ohsoft-legal-basis", "case-0"),
    ];
    extra.extend_from_slice(&leaky);
    let r = gw.post("/acme-ship/v1/shipments", &token, &extra, body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // Same again with the caller's tag headers not named in Connection.
    let mut extra = vec![
        ("ohsoft-data-use", r#"use="fake""#),
        ("ohsoft-data-use-token", "eyJhbGciOiJub25lIn0.e30."),
    ];
    extra.extend_from_slice(&leaky);
    let r = gw.post("/acme-ship/v1/shipments", &token, &extra, body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let received = mock.received();
    assert_eq!(received.len(), 3, "{received:#?}");
    let control = headers_of(&received[0]);
    assert_eq!(one_header(&control, "x-request-id"), "req-0");

    for (i, record) in received.iter().enumerate().skip(1) {
        let headers = headers_of(record);
        let got_body = record["body"].as_str().unwrap();
        assert_eq!(
            one_header(&headers, "ohsoft-data-use"),
            format!(r#"use="on-behalf-of-ohsoft", purpose="shipping", policy="{version}""#),
            "request {i}"
        );
        let data_use_token = one_header(&headers, "ohsoft-data-use-token");
        let claims = verify_received(&gw, data_use_token, got_body);
        assert_eq!(claims["sub"], "orders-service");
        assert_eq!(claims["aud"], "acme-ship");
        assert_eq!(
            one_header(&headers, "authorization"),
            format!("Bearer {SHIP_TOKEN}"),
            "request {i}"
        );
        if i == 1 {
            assert!(
                header_values(&headers, "x-request-id").is_empty(),
                "x-request-id was named in Connection: {headers:#?}"
            );
        }
        for name in [
            "cookie",
            "user-agent",
            "referer",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "forwarded",
            "x-real-ip",
            "x-api-key",
            "proxy-authorization",
            "ohsoft-legal-basis",
            "connection",
        ] {
            // `connection` toward the partner, if any, is the gateway's own and names nothing
            // the gateway added.
            if name == "connection" {
                for v in header_values(&headers, name) {
                    let v = v.to_ascii_lowercase();
                    assert!(
                        !v.contains("ohsoft") && !v.contains("authorization"),
                        "request {i}: connection: {v}"
                    );
                }
                continue;
            }
            assert!(
                header_values(&headers, name).is_empty(),
                "request {i}: {name} reached the partner: {headers:#?}"
            );
        }
        // No header value carries the client's address or the caller's token.
        for (n, v) in &headers {
            assert!(!v.contains("203.0.113.7"), "request {i}: {n}: {v}");
            assert!(
                !v.contains("127.0.0.1") || n == "host",
                "request {i}: {n}: {v}"
            );
            assert!(!v.contains(&token), "request {i}: caller token in {n}");
            assert!(!v.contains("fake"), "request {i}: {n}: {v}");
        }
    }
}

#[test]
fn government_partner_needs_a_legal_basis() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let version = gw.policy_version();
    let token = caller_token("orders-service");
    let body = r#"{"customer_id":"c-7","year":2025,"email":"x@example.com"}"#;

    for (case, extra) in [
        ("no legal basis", vec![]),
        ("empty legal basis", vec![("ohsoft-legal-basis", "")]),
        ("blank legal basis", vec![("ohsoft-legal-basis", "   ")]),
        ("another header", vec![("x-legal-basis", "case-2026-0042")]),
    ] {
        let r = gw.post("/tax/v1/filings", &token, &extra, body);
        assert_refused(&r, 403, "legal_basis_missing");
        assert!(
            mock.received().is_empty(),
            "{case}: the partner received a request"
        );
    }
    // Without a valid caller token the answer is still 401, legal basis or not.
    let r = gw.send(
        "/tax/v1/filings",
        &[
            ("content-type", "application/json"),
            ("ohsoft-legal-basis", "case-2026-0042"),
        ],
        body,
    );
    assert_refused(&r, 401, "unauthenticated");
    assert!(mock.received().is_empty());

    let r = gw.post(
        "/tax/v1/filings",
        &token,
        &[("ohsoft-legal-basis", "case-2026-0042")],
        body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let received = mock.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    let headers = headers_of(&received[0]);
    let got_body = received[0]["body"].as_str().unwrap();
    assert_eq!(got_body, r#"{"customer_id":"c-7","year":2025}"#);
    assert_eq!(one_header(&headers, "ohsoft-legal-basis"), "case-2026-0042");
    assert_eq!(
        one_header(&headers, "ohsoft-data-use"),
        format!(
            r#"use="legal-obligation", purpose="tax-reporting", policy="{version}", legal-basis="case-2026-0042""#
        )
    );
    assert_eq!(one_header(&headers, "x-api-key"), TAX_KEY);
    assert!(
        header_values(&headers, "authorization").is_empty(),
        "{headers:#?}"
    );
    let claims = verify_received(&gw, one_header(&headers, "ohsoft-data-use-token"), got_body);
    assert_eq!(claims["aud"], "tax", "{claims}");
    assert_eq!(claims["use"], "legal-obligation", "{claims}");
    assert_eq!(claims["purpose"], "tax-reporting", "{claims}");
    assert_eq!(claims["legal_basis"], "case-2026-0042", "{claims}");
    assert_eq!(claims["sub"], "orders-service", "{claims}");

    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            r#"partner_gateway_requests_refused_total{partner="tax",reason="legal_basis_missing"}"#
        ),
        4.0,
        "{metrics}"
    );
}

#[test]
fn business_partner_is_tagged_partner_sharing_over_the_filtered_records() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let version = gw.policy_version();

    // Customer c-2 opted out of partner sharing.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = gw.admin(
        "PUT",
        "/optouts/c-2",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Some(br#"{"scopes":["partner_sharing"]}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let body = r#"{"campaign":"spring","contacts":[{"customer_id":"c-1","name":"Ann"},{"customer_id":"c-2","name":"Bo"}]}"#;
    let r = gw.post(
        "/mail/v1/audiences",
        &caller_token("marketing-service"),
        &[],
        body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let received = mock.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    let headers = headers_of(&received[0]);
    let got_body = received[0]["body"].as_str().unwrap();
    assert_eq!(
        got_body,
        r#"{"campaign":"spring","contacts":[{"customer_id":"c-1","name":"Ann"}]}"#
    );
    assert_eq!(
        one_header(&headers, "ohsoft-data-use"),
        format!(r#"use="partner-sharing", purpose="marketing", policy="{version}""#)
    );
    // No upstream_auth for this partner: no authorization at all (certainly not the caller's).
    assert!(
        header_values(&headers, "authorization").is_empty(),
        "{headers:#?}"
    );
    // The digest covers the body after the opted-out record was dropped.
    let claims = verify_received(&gw, one_header(&headers, "ohsoft-data-use-token"), got_body);
    assert_eq!(claims["use"], "partner-sharing", "{claims}");
    assert_eq!(claims["aud"], "mail", "{claims}");
    assert_eq!(claims["sub"], "marketing-service", "{claims}");
    assert_eq!(
        claims["body_sha256"],
        body_sha256(got_body.as_bytes()),
        "{claims}"
    );
}

/// Runs `serve` and expects it to exit non-zero; returns its stderr.
fn serve_must_fail(policy: &PolicyDir, env: &[(&str, &str)], unset: &[&str]) -> String {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--policy"])
        .arg(policy.policy())
        .current_dir(policy.root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    for k in unset {
        command.env_remove(k);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running although it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "serve exited with {status}: {stderr}");
    stderr
}

#[test]
fn serve_refuses_to_start_when_an_upstream_auth_variable_is_unset() {
    let addr = free_addr();
    let admin = free_addr();
    let policy = PolicyDir::new(
        &auth_gateway_yaml(addr, admin),
        &[("acme-ship", &ship_partner("http://127.0.0.1:9"))],
    );
    let stderr = serve_must_fail(
        &policy,
        &[("AUTH_TEST_ADMIN_TOKEN", ADMIN_TOKEN)],
        &["AUTH_TEST_SHIP_TOKEN"],
    );
    assert!(stderr.contains("AUTH_TEST_SHIP_TOKEN"), "{stderr}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "the proxy listener is up"
    );

    let stderr = serve_must_fail(
        &policy,
        &[
            ("AUTH_TEST_ADMIN_TOKEN", ADMIN_TOKEN),
            ("AUTH_TEST_SHIP_TOKEN", ""),
        ],
        &[],
    );
    assert!(stderr.contains("AUTH_TEST_SHIP_TOKEN"), "{stderr}");
}

/// A caller that names the legal-basis header in `Connection` must not get a request tagged
/// with a legal basis that the partner never sees as a header: the gateway forwards it, and
/// the partner receives `ohsoft-legal-basis` anyway (the header is the route's, whatever
/// `Connection` says).
#[test]
fn legal_basis_named_in_connection_is_not_lost() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let r = gw.post(
        "/tax/v1/filings",
        &caller_token("orders-service"),
        &[
            ("ohsoft-legal-basis", "case-2026-0042"),
            ("connection", "ohsoft-legal-basis"),
        ],
        r#"{"customer_id":"c-7","year":2025}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let received = mock.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    let headers = headers_of(&received[0]);
    assert_eq!(one_header(&headers, "ohsoft-legal-basis"), "case-2026-0042");
}

/// `iss` must be one string (an array holding the issuer was accepted), and a token may not
/// live longer than `callers.max_token_lifetime_s` (default one day; a 100-year token was
/// accepted). Asked twice, so the verified-token cache cannot let a second attempt through.
#[test]
fn issuer_arrays_and_overlong_caller_tokens_are_401() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let body = r#"{"order_id":"A-1","shipments":[]}"#;
    let t = now();
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = good_claims("orders-service");
        edit(&mut c);
        demo_signed(&c)
    };
    let cases = [
        (
            "iss as an array",
            claims(&|c| c["iss"] = json!([CALLER_ISSUER])),
        ),
        (
            "100 years",
            claims(&|c| c["exp"] = json!(t + 100 * 365 * 86_400)),
        ),
        (
            "a day and a minute",
            claims(&|c| c["exp"] = json!(t + 86_460)),
        ),
        (
            "a day and a minute, no iat",
            claims(&|c| {
                c.as_object_mut().unwrap().remove("iat");
                c["exp"] = json!(t + 86_460);
            }),
        ),
        (
            "issued in the future",
            claims(&|c| {
                c["iat"] = json!(t + 30 * 86_400);
                c["exp"] = json!(t + 30 * 86_400 + 60);
            }),
        ),
    ];
    for (case, token) in &cases {
        for attempt in 0..2 {
            let r = gw.post("/acme-ship/v1/shipments", token, &[], body);
            assert_eq!(r.status, 401, "{case} (attempt {attempt})");
            assert_refused(&r, 401, "unauthenticated");
            assert_www_authenticate(&r, case, true);
        }
    }
    assert!(mock.received().is_empty());
    // Within the day it passes, on this same gateway.
    let ok = claims(&|c| c["exp"] = json!(t + 82_800));
    let r = gw.post("/acme-ship/v1/shipments", &ok, &[], body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// A refusal's status and error code.
type Answer<'a> = (u16, &'a str);

/// The caller's `Authorization` header as it comes on the wire: the name in any case, spaces
/// and tabs around the token, and the same header given twice in two spellings. What one
/// spelling lets through, another does too; anything else is refused before any partner, and a
/// token the gateway has already verified does not vouch for bytes around it.
#[test]
fn caller_credentials_are_decided_the_same_in_any_spelling_of_the_header() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let token = caller_token("orders-service");
    let body = r#"{"order_id":"A-1","shipments":[{"customer_id":"c-1","name":"Ann"}]}"#;
    let raw = |lines: &[&[u8]]| {
        let mut raw = format!(
            "POST /acme-ship/v1/shipments HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .into_bytes();
        for line in lines {
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(body.as_bytes());
        gw.gateway.raw(&raw)
    };
    let line = |name: &str, value: &str| format!("{name}: {value}").into_bytes();

    let accepted = [
        line("AUTHORIZATION", &format!("Bearer {token}")),
        line("Authorization", &format!("bearer {token}")),
        line("aUtHoRiZaTiOn", &format!("BEARER  {token}  ")),
        line("authorization", &format!("Bearer\t{token}")),
        format!("authorization:Bearer {token}").into_bytes(),
    ];
    for (i, spelling) in accepted.iter().enumerate() {
        let r = raw(&[spelling]);
        let shown = String::from_utf8_lossy(spelling);
        assert_eq!(
            r.status,
            200,
            "{shown}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let received = mock.received();
        assert_eq!(received.len(), i + 1, "{shown}");
        let headers = headers_of(received.last().unwrap());
        // The partner's credential, once, never the caller's token.
        assert_eq!(
            header_values(&headers, "authorization"),
            [format!("Bearer {SHIP_TOKEN}")]
        );
        for (n, v) in &headers {
            assert!(!v.contains(&token), "{shown}: the caller's token in {n}");
        }
    }

    let good = format!("Bearer {token}");
    let max = gateway_core::callers::MAX_TOKEN_BYTES;
    let long = format!("Bearer {}", "a".repeat(max + 1));
    let auth = |value: &str| line("authorization", value);
    let unauthenticated = (401, "unauthenticated");
    let refused: Vec<(&str, Vec<Vec<u8>>, Answer)> = vec![
        (
            "twice, two spellings",
            vec![line("Authorization", &good), line("AUTHORIZATION", &good)],
            unauthenticated,
        ),
        (
            "twice, one empty",
            vec![auth(&good), b"authorization:".to_vec()],
            unauthenticated,
        ),
        ("empty", vec![b"Authorization:".to_vec()], unauthenticated),
        (
            "only spaces",
            vec![b"Authorization:    ".to_vec()],
            unauthenticated,
        ),
        (
            "two tokens in one",
            vec![auth(&format!("{good}, {good}"))],
            unauthenticated,
        ),
        (
            "the verified token with more after it",
            vec![auth(&format!("{good}x"))],
            unauthenticated,
        ),
        (
            "the verified token, then a word",
            vec![auth(&format!("{good} x"))],
            unauthenticated,
        ),
        (
            "another scheme, the same token",
            vec![auth(&format!("Token {token}"))],
            unauthenticated,
        ),
        (
            "non-ASCII UTF-8 after the token",
            vec![auth(&format!("{good}\u{e9}"))],
            unauthenticated,
        ),
        ("too long", vec![auth(&long)], unauthenticated),
        // Not text at all: refused as a malformed request (no header drops out of a decision).
        (
            "a byte that is not UTF-8",
            vec![[auth(&good).as_slice(), b"\xff"].concat()],
            (400, "bad_request"),
        ),
    ];
    for (case, lines, (status, code)) in &refused {
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let r = raw(&lines);
        assert_eq!(
            r.status,
            *status,
            "{case}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_refused(&r, *status, code);
    }
    assert_eq!(
        mock.received().len(),
        accepted.len(),
        "a refused request reached the partner"
    );
}

/// `exp` is a hard deadline: a token the gateway verified (and remembered) is refused from the
/// second it expires, with no leeway, and a token that expired moments ago is refused outright.
#[test]
fn a_remembered_token_is_refused_from_its_exp_on() {
    let mock = Mock::start();
    let gw = AuthGateway::start(&mock);
    let body = r#"{"order_id":"A-1","shipments":[]}"#;
    let t = now();
    let mut claims = good_claims("orders-service");
    // Five seconds: room for the first request on a loaded machine.
    claims["exp"] = json!(t + 5);
    let short = demo_signed(&claims);
    let r = gw.post("/acme-ship/v1/shipments", &short, &[], body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    while now() < t + 5 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = gw.post("/acme-ship/v1/shipments", &short, &[], body);
    assert_refused(&r, 401, "unauthenticated");
    assert_www_authenticate(&r, "remembered, then expired", true);

    let mut claims = good_claims("orders-service");
    claims["exp"] = json!(now() - 1);
    let r = gw.post("/acme-ship/v1/shipments", &demo_signed(&claims), &[], body);
    assert_refused(&r, 401, "unauthenticated");
    assert_eq!(mock.received().len(), 1);
}
