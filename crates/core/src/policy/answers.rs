/*!
What of a partner's answer may reach OhSoft's callers: the answer headers relayed from every
partner, and those never relayed whatever a route's `response_headers` says (credentials,
cookies, challenges, connection and framing headers — the gateway sets the framing itself).
Used by the loader (a route may not list a never-relayed header) and by the proxy.
*/

/// Answer headers relayed from every partner.
pub const DEFAULT_RESPONSE_HEADERS: [&str; 9] = [
    "content-type",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "expires",
    "vary",
    "location",
    "retry-after",
];

/// Describes the relayed bytes themselves, so it passes with them (a body relayed unchanged
/// stays in the encoding the partner chose).
pub const CONTENT_ENCODING: &str = "content-encoding";

const NEVER_RELAYED: [&str; 15] = [
    "set-cookie",
    "set-cookie2",
    "www-authenticate",
    "authorization",
    "cookie",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
    "alt-svc",
    "strict-transport-security",
];

/// Whether a (lowercase) answer header name may never reach a caller.
pub fn never_relayed(name: &str) -> bool {
    NEVER_RELAYED.contains(&name) || name.starts_with("proxy-")
}

/// Whether a (lowercase) answer header name is relayed, given a route's `response_headers`.
pub fn relayed(name: &str, route_headers: &[String]) -> bool {
    (DEFAULT_RESPONSE_HEADERS.contains(&name)
        || name == CONTENT_ENCODING
        || route_headers.iter().any(|h| h == name))
        && !never_relayed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_headers_pass_unless_never_relayed() {
        let route = vec!["x-rate-limit".to_string(), "set-cookie".to_string()];
        for name in ["content-type", "etag", "x-rate-limit", "content-encoding"] {
            assert!(relayed(name, &route), "{name}");
        }
        for name in [
            "set-cookie",
            "server",
            "proxy-authenticate",
            "content-length",
        ] {
            assert!(!relayed(name, &route), "{name}");
        }
    }
}
