/*!
The request headers a partner receives: the always-allowed ones and those the route lists
(never one of [`crate::headers::is_never_forwarded`]), minus any the caller named in
`Connection` (hop-by-hop); `content-type` only with a body, and then as `application/json`
(or the route's `+json` type the caller used): the gateway describes the body it made, so a
caller naming it in `Connection` cannot drop it; the legal-basis header last.
*/
use crate::headers::{is_never_forwarded, ALWAYS_ALLOWED};
use crate::policy::{Partner, Route};

/// The headers to forward, in arrival order, and the names removed (each once, for `explain`).
pub(super) fn forward_headers(
    partner: &Partner,
    route: &Route,
    incoming: &[(&str, &str)],
    legal_basis: Option<&str>,
    with_body: bool,
) -> (Vec<(String, String)>, Vec<String>) {
    let connection_named = connection_tokens(incoming);
    let mut headers = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for &(name, value) in incoming {
        if partner.legal_basis_header.as_deref() == Some(name) {
            continue; // forwarded below, whatever `Connection` says: it is part of the tag
        }
        // The loader already refused routes that list a never-forwarded header; checked
        // again here so that no policy, however it was built, can send one.
        let allowed = (ALWAYS_ALLOWED.contains(&name) || route.headers.iter().any(|h| h == name))
            && !is_never_forwarded(name);
        let hop_by_hop = name != "content-type" && connection_named.iter().any(|c| c == name);
        if allowed && !hop_by_hop {
            if name == "content-type" {
                if with_body {
                    let media = forwarded_media_type(route, value);
                    headers.push((name.to_string(), media.to_string()));
                }
            } else {
                headers.push((name.to_string(), value.to_string()));
            }
        } else if !removed.iter().any(|r| r == name) {
            removed.push(name.to_string());
        }
    }
    if let (Some(header), Some(value)) = (&partner.legal_basis_header, legal_basis) {
        headers.push((header.clone(), value.to_string()));
    }
    (headers, removed)
}

/// The media type of a forwarded body. Only JSON bodies (or NDJSON streams of them) are
/// forwarded, re-serialised as UTF-8 (so no `charset`): `application/json`, or the `+json`
/// type the caller used when the route lists it in `json_types` (a JSON merge patch stays a
/// merge patch for the partner).
fn forwarded_media_type<'a>(route: &'a Route, caller_value: &str) -> &'a str {
    if let Some(stream) = route.stream {
        return stream.media_type();
    }
    let media = caller_value.split(';').next().unwrap_or("").trim();
    route
        .json_types
        .iter()
        .find(|t| t.eq_ignore_ascii_case(media))
        .map_or("application/json", |t| t.as_str())
}

/// Header names the caller listed in `Connection`: hop-by-hop, never forwarded.
pub(super) fn connection_tokens(headers: &[(&str, &str)]) -> Vec<String> {
    crate::headers::connection_tokens(
        headers
            .iter()
            .filter(|(n, _)| *n == "connection")
            .map(|(_, v)| *v),
    )
}
