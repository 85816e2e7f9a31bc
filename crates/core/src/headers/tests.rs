use super::*;

/// The lists as they stood before the rules were written once: the rules must give the same
/// answer for every name in them.
const NEVER_FORWARDED_BEFORE: [&str; 24] = [
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
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "ohsoft-data-use",
];
const NOT_FOR_CREDENTIAL_BEFORE: [&str; 14] = [
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "forwarded",
    "via",
    "ohsoft-data-use",
];

#[test]
fn never_forwarded() {
    for name in NEVER_FORWARDED_BEFORE {
        assert!(is_never_forwarded(name), "{name}");
    }
    for name in [
        "x-forwarded-for",
        "x-forwarded-host",
        "proxy-authorization",
        "proxy-connection",
        "ohsoft-data-use-token",
    ] {
        assert!(is_never_forwarded(name), "{name}");
    }
    // The client's address, browser and cookies under the names CDNs, proxies and browsers use.
    for name in [
        "x-forwarded",
        "x-original-forwarded-for",
        "x-originating-ip",
        "fastly-client-ip",
        "cf-connecting-ipv6",
        "x-envoy-external-address",
        "x-remote-addr",
        "cookie2",
        "x-device-user-agent",
        "x-referrer",
        "sec-ch-ua",
        "sec-ch-ua-platform",
        "sec-fetch-site",
        "sec-gpc",
        "x-azure-clientip",
        "x-azure-socketip",
        "cf-ipcountry",
        "x-via",
        "x-bluecoat-via",
        "akamai-origin-hop",
        "x-original-url",
        "x-original-host",
        "x-envoy-original-path",
        "x-host",
        "origin",
        "dnt",
        "upgrade-insecure-requests",
        "x-requested-with",
        "x-wap-profile",
        "x-operamini-phone-ua",
        "x-att-deviceid",
        "x-client-ipv4",
    ] {
        assert!(is_never_forwarded(name), "{name}");
    }
    // What CDNs derive from the client's address, and client hints without `sec-`.
    for name in [
        "cf-ipcity",
        "cf-iplatitude",
        "cf-ipcountry",
        "x-vercel-ip-city",
        "x-vercel-ip-country",
        "cloudfront-viewer-city",
        "cloudfront-viewer-country",
        "cloudfront-viewer-latitude",
        "cloudfront-is-mobile-viewer",
        "cloudfront-viewer-tls",
        "x-appengine-citylatlong",
        "x-appengine-country",
        "x-geo-country",
        "x-geoip-city",
        "x-client-geo-location",
        "save-data",
        "device-memory",
        "viewport-width",
        "dpr",
        "ect",
        "rtt",
        "downlink",
        "ip",
        "x-client-ip6",
        "x_client_ip6",
        "cf-postal-code",
        "cf-timezone",
        "cf-region",
        "cf-region-code",
        "cf-metro-code",
        "x-akamai-edgescape",
        "x-nf-geo",
        "x-client-city-lat-long",
        "x-user-timezone",
        "x-country-code",
        "x-forwarded-geo",
        "x-client-city",
        "x-client-region",
        "x-client-region-subdivision",
        "x-lat",
        "x-lon",
        "x-ipaddr",
        "ipaddress",
        "x-client-latlng",
        "x-client-zip",
        "x-client-tz",
        "x-user-city",
        "x-location",
        "x-msisdn",
        "x-imsi",
        "x-zip",
        "x-postcode",
    ] {
        assert!(is_never_forwarded(name), "{name}");
    }
    // CGI-style servers read `_` (PHP also `.`) as `-`: the same headers under those spellings.
    for name in [
        "user_agent",
        "x_real_ip",
        "x_client_ip",
        "remote_addr",
        "x-user_agent",
        "x_forwarded_for",
        "proxy_authorization",
        "set_cookie",
        "content_length",
        "user.agent",
        "x.real.ip",
        "remote.addr",
        "x-forwarded.for",
    ] {
        assert!(is_never_forwarded(name), "{name}");
    }
    for name in [
        "accept",
        "x-ship",
        "x-tip",
        "x-api-key",
        "if-none-match",
        "content-type",
        "x-request-id",
        "accept-language",
        "if-match",
        "x_request_id",
        "x-ship-id",
        "x-tenant",
        "x-shipping-region",
    ] {
        assert!(!is_never_forwarded(name), "{name}");
    }
}

#[test]
fn partner_credential_headers() {
    for name in NOT_FOR_CREDENTIAL_BEFORE {
        assert!(!may_carry_partner_credential(name), "{name}");
    }
    for name in [
        "proxy-authorization",
        "proxy-connection",
        "ohsoft-data-use-token",
    ] {
        assert!(!may_carry_partner_credential(name), "{name}");
    }
    for name in ["authorization", "x-api-key", "cookie", "x-partner-token"] {
        assert!(may_carry_partner_credential(name), "{name}");
    }
}

#[test]
fn relayed_answer_headers() {
    let route = vec![
        "x-rate-limit".to_string(),
        "set-cookie".to_string(),
        RECORDS_DROPPED.to_string(),
    ];
    for name in [
        RECORDS_DROPPED,
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "content-length",
        "set-cookie",
        "www-authenticate",
        "authorization",
        "server",
        "x-request-id",
    ] {
        assert!(!is_relayed_from_partner(name, &route), "{name}");
    }
    for name in [
        "content-type",
        "etag",
        "cache-control",
        "content-encoding",
        "x-rate-limit",
    ] {
        assert!(is_relayed_from_partner(name, &route), "{name}");
    }
}

#[test]
fn always_allowed_headers_may_be_forwarded() {
    for name in ALWAYS_ALLOWED {
        assert!(!is_never_forwarded(name), "{name}");
    }
}

#[test]
fn accept_passes_as_media_ranges_and_never_as_free_text() {
    for value in [
        "application/json",
        "*/*",
        "",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        // What Java's HttpURLConnection sends by default.
        "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
        "application/vnd.api+json; version=2",
        "application/json;charset=utf-8, text/plain ; q = 0.5",
        "application/json; charset=\"UTF-8\"",
        "application/vnd.api+json; ext=\"https://jsonapi.org/ext/atomic\"",
        "application/json;",
    ] {
        assert!(is_media_range_list(value), "{value:?}");
    }
    for value in [
        "alice@example.com",
        "text/plain; email=alice@example.com",
        "application/json; note=\"Ana Lima\"",
        "application/json; note=\"ana@example.com\"",
        "application/json; note=\"\"",
        "Ana Lima",
        "application/json, Ana Lima",
        "text/plain; a b=c",
        "application/json; q",
        "/json",
        "application/",
        "applicatión/json",
        "application/json,\u{2003}\u{a0}\u{2003}\u{3000}",
        "application/json; note=\"mailto:ana@example.com\"",
    ] {
        assert!(!is_media_range_list(value), "{value:?}");
    }
}
