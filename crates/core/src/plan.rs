/*!
The whole decision for one request, shared by the proxy and `explain`: which partner and
route it targets ([`resolve`]), and exactly what that partner would receive ([`plan`]) —
path, query, headers and filtered body — or the [`Refusal`] that stops it.

Caller authentication and the data-use tags are separate steps (they need keys and a clock);
everything here is a pure function of the policy, the request and the opt-out set.
*/
use std::sync::Arc;

use crate::filter::{self, FilterOptions, Report};
use crate::optout::OptOutSource;
use crate::policy::route::{normalize_path, RouteMatch};
use crate::policy::{Limits, Partner, Route, RouteSegment};
use crate::Refusal;

/// Headers that pass to every partner; a route may add more with `headers: [...]`.
pub const ALWAYS_ALLOWED_HEADERS: [&str; 2] = ["content-type", "accept"];

/// A request's target: the partner and route it names, and the path to send upstream.
#[derive(Debug, Clone)]
pub struct Target {
    pub partner: Arc<Partner>,
    pub route_index: usize,
    /// The normalised path after the partner id, e.g. `/v1/shipments`.
    pub upstream_path: String,
}

impl Target {
    pub fn route(&self) -> &Route {
        &self.partner.routes[self.route_index]
    }
}

/// Finds the partner and route for `METHOD /{partner_id}{path}`; `raw_path` excludes the query.
pub fn resolve(
    partners: &std::collections::BTreeMap<String, Arc<Partner>>,
    method: &str,
    raw_path: &str,
) -> Result<Target, Refusal> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Refusal::BadRequest(
            "CONNECT is not allowed: no tunnel bypasses the filter".into(),
        ));
    }
    let path = normalize_path(raw_path)
        .map_err(|reason| Refusal::BadRequest(format!("bad path: {reason}")))?;
    let after_slash = &path[1..];
    let (partner_id, rest) = match after_slash.find('/') {
        Some(i) => (&after_slash[..i], &after_slash[i..]),
        None => (after_slash, "/"),
    };
    let partner = partners
        .get(partner_id)
        .ok_or_else(|| Refusal::UnknownPartner(format!("no partner {partner_id:?}")))?;
    match partner.match_route(rest, method) {
        RouteMatch::Found(route) => {
            let route_index = partner
                .routes
                .iter()
                .position(|r| std::ptr::eq(r, route))
                .ok_or_else(|| Refusal::RouteNotAllowed("route lookup failed".into()))?;
            Ok(Target {
                partner: partner.clone(),
                route_index,
                upstream_path: rest.to_string(),
            })
        }
        RouteMatch::MethodNotAllowed => Err(Refusal::MethodNotAllowed(format!(
            "{method} is not allowed on {rest:?} for partner {partner_id:?}"
        ))),
        RouteMatch::NotFound => Err(Refusal::RouteNotAllowed(format!(
            "{rest:?} is not a route of partner {partner_id:?}"
        ))),
    }
}

/// Whether caller `sub` may send to `partner` (its `allowed_callers`), for requests whose caller
/// is known by name only (`explain --caller`, policy tests).
pub fn authorize(partner: &Partner, sub: &str) -> Result<(), Refusal> {
    if partner.allowed_callers.iter().any(|c| c == sub) {
        Ok(())
    } else {
        Err(Refusal::CallerNotAllowed(format!(
            "caller {sub:?} may not send to partner {:?}",
            partner.id
        )))
    }
}

/// What arrived from the caller, besides method and path.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub query: Option<&'a str>,
    /// Header names lowercase, in arrival order; repeated headers appear repeatedly.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Exactly what goes to the partner (before the data-use tags and the partner's credential).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Path plus the filtered query, e.g. `/v1/shipments?page=2`.
    pub path_and_query: String,
    /// Allowed request headers, lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub report: Report,
    /// Query parameters removed (names as received) — reported by `explain`.
    pub query_removed: Vec<String>,
    /// Request headers removed (names) — reported by `explain`.
    pub headers_removed: Vec<String>,
    /// The legal-basis reference of a request to a government partner (goes into the token).
    pub legal_basis: Option<String>,
}

/// Where the opt-out set stands for this request.
#[derive(Clone, Copy)]
pub enum OptOuts<'a> {
    /// The store is loaded: ask it.
    Loaded(&'a dyn OptOutSource),
    /// The store is not loaded (starting, unreadable): routes that honour opt-outs refuse with 503.
    NotLoaded,
}

/// Decides what `target`'s partner receives for this request. `detail` collects per-field
/// changes for `explain`; the body is byte-identical either way.
pub fn plan(
    target: &Target,
    incoming: &Incoming<'_>,
    limits: &Limits,
    optouts: OptOuts<'_>,
    detail: bool,
) -> Result<Outgoing, Refusal> {
    let partner = &target.partner;
    let route = target.route();

    let connection_named = connection_tokens(incoming.headers);
    if incoming.headers.iter().any(|(name, _)| name == "upgrade") {
        return Err(Refusal::BadRequest(
            "Upgrade is not allowed: no tunnel bypasses the filter".into(),
        ));
    }
    let legal_basis = match &partner.legal_basis_header {
        None => None,
        Some(header) => {
            let mut values = incoming
                .headers
                .iter()
                .filter(|(n, _)| n == header)
                .map(|(_, v)| v.trim());
            match (values.next(), values.next()) {
                (Some(value), None) if !value.is_empty() => {
                    if !crate::tagging::header::is_sf_string(value) {
                        return Err(Refusal::BadRequest(format!(
                            "the {header:?} header must be printable ASCII (a case or order reference)"
                        )));
                    }
                    if let Some(format) = &partner.legal_basis_format {
                        if !format.is_match(value) {
                            return Err(Refusal::LegalBasisMissing(format!(
                                "the {header:?} header {value:?} is not a legal-basis reference of the form partner {:?} requires",
                                partner.id
                            )));
                        }
                    }
                    Some(value.to_string())
                }
                (Some(_), Some(_)) => {
                    return Err(Refusal::BadRequest(format!("more than one {header:?} header")));
                }
                _ => {
                    return Err(Refusal::LegalBasisMissing(format!(
                        "partner {:?} is a government body: every request needs a legal-basis reference in the {header:?} header",
                        partner.id
                    )))
                }
            }
        }
    };
    if incoming.body.len() > limits.max_body_bytes {
        return Err(Refusal::BodyTooLarge(format!(
            "body of {} bytes is over the limit of {} bytes",
            incoming.body.len(),
            limits.max_body_bytes
        )));
    }
    // Every content-encoding header counts: a second one must not slip an encoding past the first.
    for (_, encoding) in incoming
        .headers
        .iter()
        .filter(|(n, _)| n == "content-encoding")
    {
        if !encoding
            .split(',')
            .all(|e| e.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(Refusal::UnsupportedMediaType(format!(
                "content-encoding {encoding:?} cannot be read by the gateway; send the body unencoded"
            )));
        }
    }

    // The HTTP layer undoes `chunked` and nothing else: a body sent with another transfer
    // coding (`gzip, chunked`) would be read as if it were not encoded.
    for (_, coding) in incoming
        .headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
    {
        if !coding
            .split(',')
            .all(|c| c.trim().eq_ignore_ascii_case("chunked"))
        {
            return Err(Refusal::UnsupportedMediaType(format!(
                "transfer-encoding {coding:?} cannot be read by the gateway; send the body unencoded (chunked framing is fine)"
            )));
        }
    }

    let (body, report) = match (&route.filter, incoming.body.is_empty()) {
        (_, true) => (Vec::new(), Report::default()),
        (None, false) => {
            return Err(Refusal::BadRequest(format!(
                "route {:?} of partner {:?} takes no body",
                route.template, partner.id
            )))
        }
        (Some(program), false) => {
            let mut content_types = incoming.headers.iter().filter(|(n, _)| n == "content-type");
            check_json_content_type(
                content_types.next().map(|(_, v)| v.as_str()),
                &route.json_types,
            )?;
            if content_types.next().is_some() {
                return Err(Refusal::UnsupportedMediaType(
                    "more than one content-type header".into(),
                ));
            }
            let options = FilterOptions {
                max_depth: limits.max_depth,
                pseudonymize_key: partner.pseudonymize_key.as_deref(),
                optouts: None,
                detail,
            };
            let filtered = if partner.honor_optouts.is_empty() || !program.has_subjects() {
                filter::filter(program, incoming.body, &options)?
            } else {
                let OptOuts::Loaded(source) = optouts else {
                    return Err(Refusal::NotReady(
                        "opt-out data is not loaded; routes that honour opt-outs are refused until it is".into(),
                    ));
                };
                let mut outcome = None;
                source.with_lookup(&partner.honor_optouts, &mut |lookup| {
                    let options = FilterOptions {
                        optouts: Some(lookup),
                        ..options
                    };
                    outcome = Some(filter::filter(program, incoming.body, &options));
                });
                outcome.unwrap_or_else(|| {
                    Err(Refusal::NotReady("opt-out data could not be read".into()))
                })?
            };
            (filtered.body, filtered.report)
        }
    };

    let mut headers = Vec::new();
    let mut headers_removed = Vec::new();
    for (name, value) in incoming.headers {
        if partner.legal_basis_header.as_ref() == Some(name) {
            continue; // forwarded below, whatever `Connection` says: it is part of the tag
        }
        let allowed = ALWAYS_ALLOWED_HEADERS.contains(&name.as_str())
            || route.headers.iter().any(|h| h == name);
        if allowed && !connection_named.iter().any(|c| c == name) {
            if name == "content-type" {
                // Only JSON bodies are forwarded, and the gateway re-serialised them as UTF-8.
                if !body.is_empty() {
                    headers.push((name.clone(), "application/json".to_string()));
                }
            } else {
                headers.push((name.clone(), value.clone()));
            }
        } else if !headers_removed.contains(name) {
            headers_removed.push(name.clone());
        }
    }

    if let (Some(header), Some(value)) = (&partner.legal_basis_header, &legal_basis) {
        headers.push((header.clone(), value.clone()));
    }

    let (query, query_removed) = filter_query(incoming.query, &route.query);
    check_url_for_opted_out_ids(target, &query, optouts)?;
    let mut path_and_query = target.upstream_path.clone();
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }

    Ok(Outgoing {
        path_and_query,
        headers,
        body,
        report,
        query_removed,
        headers_removed,
        legal_basis,
    })
}

/// A partner that honours opt-outs never gets an opted-out customer's id in its URL either:
/// every path parameter and every forwarded query value that is such an id refuses the request
/// (451), whatever the parameter is called — the gateway cannot know which ones hold customer
/// ids, so it treats them all as if they might.
fn check_url_for_opted_out_ids(
    target: &Target,
    forwarded_query: &str,
    optouts: OptOuts<'_>,
) -> Result<(), Refusal> {
    let partner = &target.partner;
    if partner.honor_optouts.is_empty() {
        return Ok(());
    }
    let route = target.route();
    let decode = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned()
    };
    let path_values = route
        .segments
        .iter()
        .zip(target.upstream_path.split('/').skip(1))
        .filter(|(segment, _)| matches!(segment, RouteSegment::Param(_)))
        .map(|(_, value)| decode(value));
    let query_values = forwarded_query
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(_, v)| decode(v)));
    let values: Vec<String> = path_values
        .chain(query_values)
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let OptOuts::Loaded(source) = optouts else {
        return Err(Refusal::NotReady(
            "opt-out data is not loaded; routes that honour opt-outs are refused until it is"
                .into(),
        ));
    };
    let mut opted_out = false;
    source.with_lookup(&partner.honor_optouts, &mut |lookup| {
        opted_out = values.iter().any(|v| lookup.is_opted_out(v));
    });
    if opted_out {
        return Err(Refusal::SubjectOptedOut(
            "the URL names a customer who opted out of sharing with this partner".into(),
        ));
    }
    Ok(())
}

/// Header names listed in `Connection`: hop-by-hop, never forwarded.
fn connection_tokens(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Only `application/json` (or a `+json` type the route lists in `json_types`), optionally with
/// `charset=utf-8`, is filtered; anything else is 415.
fn check_json_content_type(value: Option<&str>, json_types: &[String]) -> Result<(), Refusal> {
    let refuse = |what: &str| {
        Err(Refusal::UnsupportedMediaType(format!(
            "{what}: a body on this route must be application/json (charset=utf-8 if given)"
        )))
    };
    let Some(value) = value else {
        return refuse("no content-type");
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" && !json_types.contains(&media) {
        return refuse(&format!("content-type {value:?}"));
    }
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (key, val) = param.split_once('=').unwrap_or((param, ""));
        let val = val.trim().trim_matches('"');
        if !(key.trim().eq_ignore_ascii_case("charset") && val.eq_ignore_ascii_case("utf-8")) {
            return refuse(&format!("content-type {value:?}"));
        }
    }
    Ok(())
}

/// Keeps the allowed parameters, in order, joined by `&` alone. Values keep their
/// percent-escapes; anything not safe to send bare (`;` among them) is percent-encoded, so the
/// partner cannot split a value into a parameter the policy did not allow.
fn filter_query(query: Option<&str>, allowed: &[String]) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        let name = percent_encoding::percent_decode_str(raw_name).decode_utf8();
        if name.is_ok_and(|n| allowed.iter().any(|a| *a == n)) {
            let mut out = encode_query_part(raw_name);
            if let Some(v) = raw_value {
                out.push('=');
                out.push_str(&encode_query_part(v));
            }
            kept.push(out);
        } else {
            removed.push(raw_name.to_string());
        }
    }
    (kept.join("&"), removed)
}

fn encode_query_part(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let valid_escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if valid_escape || b.is_ascii_alphanumeric() || b"-._~+!$'()*,:@/?".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_allowed_parameters_and_encodes_semicolons() {
        let allowed = vec!["page".to_string(), "q".to_string()];
        let cases = [
            ("page=2&secret=x", "page=2", vec!["secret"]),
            ("page=2;secret=x", "page=2%3Bsecret%3Dx", vec![]),
            ("p%61ge=3", "p%61ge=3", vec![]),
            ("q=a b&q=c%20d", "q=a%20b&q=c%20d", vec![]),
            ("&&page&", "page", vec![]),
            ("email=a@b", "", vec!["email"]),
        ];
        for (query, expected, removed) in cases {
            let (kept, gone) = filter_query(Some(query), &allowed);
            assert_eq!(kept, expected, "{query}");
            assert_eq!(gone, removed, "{query}");
        }
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(check_json_content_type(Some(ok), &[]).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some("text/plain"),
            Some("application/json; charset=utf-16"),
            Some("application/vnd.x+json"),
            Some("application/json; boundary=x"),
        ] {
            assert!(check_json_content_type(bad, &[]).is_err(), "{bad:?}");
        }
        let merge_patch = vec!["application/merge-patch+json".to_string()];
        assert!(
            check_json_content_type(Some("application/merge-patch+json"), &merge_patch).is_ok()
        );
        assert!(check_json_content_type(Some("application/vnd.x+json"), &merge_patch).is_err());
    }

    #[test]
    fn connection_tokens_are_lowercased() {
        let headers = vec![("connection".to_string(), "X-Request-Id, close".to_string())];
        assert_eq!(connection_tokens(&headers), vec!["x-request-id", "close"]);
    }
}
