/*!
The header rules, written once: which request headers a partner may ever receive, which one
may carry a partner's credential, which pass on every route, and which describe a connection
rather than a message (never relayed in either direction).

The policy loader refuses routes and credentials that break these rules; [`crate::plan`]
forwards only [`ALWAYS_ALLOWED`] headers and the ones a route lists; the shell relays
only what [`is_relayed_from_partner`] allows of a partner's answer.
*/

/// Headers that pass to every partner; a route may add more with `headers: [...]`.
pub const ALWAYS_ALLOWED: [&str; 2] = ["content-type", "accept"];

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1, plus the
/// non-standard `proxy-connection`).
pub const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The header names a `Connection` header lists (its values, comma-separated tokens), lowercase:
/// hop-by-hop for that one connection, so never passed on in either direction.
pub fn connection_tokens<'a>(connection_values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    connection_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Framing and routing the gateway sets itself for the partner request.
const SET_BY_GATEWAY: [&str; 4] = ["host", "content-length", "content-encoding", "expect"];

/// What the caller's request says about the caller, the client, its browser (the client
/// hints browsers send without the `sec-` prefix too: `dpr`, `viewport-width`, `save-data`…)
/// or the route it took: never forwarded, whatever a route says.
const ABOUT_THE_CALLER: [&str; 38] = [
    "authorization",
    "cookie",
    "set-cookie",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "via",
    "user-agent",
    "referer",
    "origin",
    "dnt",
    "upgrade-insecure-requests",
    "x-requested-with",
    "x-wap-profile",
    "x-host",
    "ip",
    "x-ip",
    "save-data",
    "device-memory",
    "viewport-width",
    "width",
    "dpr",
    "ect",
    "rtt",
    "downlink",
    "x-lat",
    "x-lon",
    "x-lng",
    "x-latitude",
    "x-longitude",
    "ipaddress",
    "x-location",
    "x-zip",
    "x-postcode",
];

/// Name prefixes never forwarded: proxy headers, forwarding chains and what proxies record of
/// the original request (`x-original-url`, `x-envoy-original-path`, `akamai-origin-hop`),
/// the gateway's own data-use tag and token (`ohsoft-data-use`, `ohsoft-data-use-token`),
/// which only it sets, the headers only browsers set (`sec-ch-ua`, `sec-fetch-site`, `sec-gpc`),
/// and where CDNs and platforms say what the client's address reveals (`cf-ipcity`,
/// `cloudfront-viewer-country`, `x-appengine-citylatlong`, `x-vercel-ip-city`, `x-geo-country`).
const NEVER_FORWARDED_PREFIXES: [&str; 28] = [
    "x-forwarded-",
    "proxy-",
    "ohsoft-data-use",
    "sec-",
    "x-original-",
    "x-envoy-",
    "akamai-",
    "cloudfront-viewer-",
    "cloudfront-is-",
    "x-appengine-",
    "x-vercel-ip-",
    "cf-ip",
    "x-geo",
    "x-client-geo",
    "cf-region",
    "cf-postal",
    "cf-metro",
    "cf-timezone",
    "cf-city",
    "cf-country",
    "x-nf-geo",
    "x-country",
    "x-city",
    "x-client-city",
    "x-client-region",
    "x-client-country",
    "x-client-location",
    "x-postal",
];

/// Name parts that mark the client's address, browser or cookies under whatever name a CDN,
/// load balancer or app gives them (`x-original-forwarded-for`, `cookie2`,
/// `x-device-user-agent`, `x-referrer`), or a place derived from it (`x-geoip-city`,
/// `x-client-latitude`, `x-akamai-edgescape-ip-city`).
const NEVER_FORWARDED_PARTS: [&str; 26] = [
    "forwarded",
    "cookie",
    "user-agent",
    "referer",
    "referrer",
    "clientip",
    "socketip",
    "ipcountry",
    "deviceid",
    "-ip-",
    "geoip",
    "latlong",
    "latitude",
    "longitude",
    "edgescape",
    "lat-long",
    "lat-lng",
    "postal-code",
    "metro-code",
    "timezone",
    "time-zone",
    "-geo-",
    "ipaddr",
    "latlng",
    "msisdn",
    "imsi",
];

/// Name endings that mark a client address (`fastly-client-ip`, `x-originating-ip`,
/// `cf-connecting-ipv6`, `x-envoy-external-address`, `x-remote-addr`), a proxy hop
/// (`x-bluecoat-via`) or a browser's user agent (`x-operamini-phone-ua`).
const NEVER_FORWARDED_SUFFIXES: [&str; 15] = [
    "-ip",
    "-ips",
    "-ipv4",
    "-ipv6",
    "-address",
    "-addr",
    "-via",
    "-ua",
    "-ip4",
    "-ip6",
    "-geo",
    "-zip",
    "-postcode",
    "-tz",
    "-city",
];

/// Whether a request header (lowercase name) may never reach a partner: a route may not
/// list it, and the legal-basis header may not be one. `_` and `.` count as `-`: CGI, WSGI,
/// Rack and PHP servers read `user_agent` as `User-Agent`, and PHP `x.real.ip` as `X-Real-IP`.
pub fn is_never_forwarded(name: &str) -> bool {
    if name.contains(['_', '.']) {
        return is_never_forwarded(&name.replace(['_', '.'], "-"));
    }
    HOP_BY_HOP.contains(&name)
        || SET_BY_GATEWAY.contains(&name)
        || ABOUT_THE_CALLER.contains(&name)
        || NEVER_FORWARDED_PREFIXES.iter().any(|p| name.starts_with(p))
        || NEVER_FORWARDED_PARTS.iter().any(|p| name.contains(p))
        || NEVER_FORWARDED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether a header (lowercase name) may carry a partner's credential (`upstream_auth`): not
/// one the gateway sets, strips or frames the body with. (`authorization` and `cookie` may:
/// they are the usual places for a credential, and the caller's are never forwarded.)
pub fn may_carry_partner_credential(name: &str) -> bool {
    !(HOP_BY_HOP.contains(&name)
        || SET_BY_GATEWAY.contains(&name)
        || name == "content-type"
        || name == "forwarded"
        || name == "via"
        || name.starts_with("proxy-")
        || name.starts_with("ohsoft-data-use"))
}

/// Request headers that hold one value: a second copy is refused (which one would be read?).
/// (`content-type` and `content-encoding` have their own 415 rule.)
/// (`authorization` is the caller authentication's to judge.)
pub const SINGLE_VALUED: [&str; 4] = [
    "content-length",
    "x-request-id",
    "x-correlation-id",
    "idempotency-key",
];

/// Request-id headers: when a route forwards one, it must be an opaque token.
pub const REQUEST_ID_HEADERS: [&str; 3] = ["x-request-id", "x-correlation-id", "idempotency-key"];

/// Longest request id forwarded.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A request id is 1 to 128 RFC 9110 token characters: no spaces, `@`, `:`, quotes or
/// anything else that free text (an email address, a name) needs.
pub fn is_valid_request_id(value: &str) -> bool {
    value.len() <= MAX_REQUEST_ID_BYTES && is_token(value)
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An `accept` value passes to partners only as a list of media ranges: `type/subtype` (or a
/// bare `*`, which some HTTP clients send) with `;name=value` parameters, every part a token;
/// a value may also be in double quotes, and then may hold `/` and `:` too (JSON:API's
/// `ext="https://jsonapi.org/ext/atomic"`). So it holds no spaces inside a part, no `@`, no
/// non-ASCII: not a sentence or an email address as written (a token can still spell
/// `Ana_Lima`; no syntax rule can tell that from a media type).
pub fn is_media_range_list(value: &str) -> bool {
    // Only the spaces and tabs HTTP allows around the parts, never other whitespace.
    let trim = |s: &str| s.trim_matches([' ', '\t']).to_string();
    value.split(',').map(trim).all(|element| {
        let mut parts = element.split(';').map(trim);
        let range = parts.next().unwrap_or_default();
        let range_ok = range == "*"
            || range
                .split_once('/')
                .is_some_and(|(t, s)| is_token(t) && is_token(s));
        let params_ok = parts.all(|param| {
            param.is_empty()
                || param
                    .split_once('=')
                    .is_some_and(|(n, v)| is_token(&trim(n)) && is_param_value(&trim(v)))
        });
        element.is_empty() || (range_ok && params_ok)
    })
}

/// A media-type parameter value [`is_media_range_list`] lets through.
fn is_param_value(value: &str) -> bool {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => {
            !quoted.is_empty()
                && quoted
                    .split(['/', ':'])
                    .all(|piece| piece.is_empty() || is_token(piece))
        }
        None => is_token(value),
    }
}

/// Answer headers relayed from every partner; a route may add more with `response_headers`.
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
const RELAYED_FRAMING: &str = "content-encoding";

/// What a partner's answer says that is not for OhSoft's callers: its cookies, challenges and
/// credentials, and connection policy of its own. (`content-length` is set by the gateway.)
const NEVER_RELAYED: [&str; 8] = [
    "set-cookie",
    "set-cookie2",
    "www-authenticate",
    "authorization",
    "cookie",
    "content-length",
    "alt-svc",
    "strict-transport-security",
];

/// The answer header the gateway adds when it dropped opted-out records: its own word to the
/// caller, so a partner's header of that name is never relayed.
pub const RECORDS_DROPPED: &str = "ohsoft-records-dropped";

/// Whether an answer header (lowercase name) may never reach a caller, whatever a route lists:
/// a route may not list it.
pub fn is_never_relayed(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
        || NEVER_RELAYED.contains(&name)
        || name == RECORDS_DROPPED
        || name == "host"
        || name.starts_with("proxy-")
}

/// Whether a header of a partner's answer (lowercase name) is relayed to the caller: the
/// defaults, `content-encoding`, and the route's `response_headers`, never a never-relayed one.
pub fn is_relayed_from_partner(name: &str, route_headers: &[String]) -> bool {
    (DEFAULT_RESPONSE_HEADERS.contains(&name)
        || name == RELAYED_FRAMING
        || route_headers.iter().any(|h| h == name))
        && !is_never_relayed(name)
}

#[cfg(test)]
mod tests;
