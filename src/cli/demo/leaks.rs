//! The demo's checks on what a partner received: no header a caller's browser-facing system
//! carries along may arrive, and the data-use token must verify against the gateway's live
//! JWKS and cover exactly the body received.

use std::net::SocketAddr;

use crate::cli::token;

/// Headers the demo sends along with every sample that must never reach a partner.
pub(super) const BROWSER_HEADERS: [(&str, &str); 4] = [
    ("cookie", "ohsoft_session=8f14e45f"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) OhSoftWeb/3.1",
    ),
    ("x-forwarded-for", "203.0.113.7"),
    ("referer", "https://shop.ohsoft.example/checkout"),
];

/// True when the partner received nothing it should not have; prints what went wrong.
pub(super) fn received_only_allowed(
    headers: &[(String, String)],
    body: &[u8],
    admin_addr: SocketAddr,
) -> anyhow::Result<bool> {
    for (leaked, _) in BROWSER_HEADERS {
        if headers.iter().any(|(n, _)| n == leaked) {
            println!("  LEAK: {leaked} reached the partner");
            return Ok(false);
        }
    }
    let Some((_, token)) = headers.iter().find(|(n, _)| n == "ohsoft-data-use-token") else {
        return Ok(true);
    };
    let jwks_url = format!("http://{admin_addr}/.well-known/jwks.json");
    let claims = token::verify(&jwks_url, None, token)?;
    let digest_ok = claims["body_sha256"] == gateway_core::tagging::body_sha256(body);
    println!(
        "  data-use token verified against {jwks_url}: use={}, sub={}, body_sha256 {}",
        claims["use"],
        claims["sub"],
        if digest_ok {
            "matches the body received"
        } else {
            "DOES NOT MATCH"
        }
    );
    Ok(digest_ok)
}
