/*!
The whole decision for one request, shared by the proxy and `explain`: which partner and
route it targets ([`resolve`]), and exactly what that partner would receive ([`plan`]) —
path, query, headers and filtered body — or the [`Refusal`] that stops it.

[`plan`] is a short sequence of steps, one module each: `framing` (no upgrade, the body
limit, content and transfer codings), `decode` (undo a content coding the route decodes, bounded),
`legal_basis`, `body` (content type, filter, opt-outs),
`headers` (what is forwarded), `query` (what is forwarded, re-encoded) and `url` (no opted-out
customer's id in the path or query).

Caller authentication and the data-use tags are separate steps (they need keys and a clock);
everything here is a pure function of the policy, the request and the opt-out set.
*/
use std::sync::{Arc, OnceLock};

use crate::filter::Report;
use crate::optout::OptOutSource;
use crate::policy::route::{normalize_path, RouteMatch};
use crate::policy::{Limits, Partner, Route};
use crate::{Refusal, RefusalKind};

mod body;
mod decode;
mod framing;
mod head;
mod headers;
mod legal_basis;
mod query;
pub mod stream;
mod url;

pub use head::check_head;

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

/// A request target (path and query) without its fragment: the HTTP library drops `#…` from
/// the target before the proxy sees it (a fragment is never part of what a server is asked
/// for), so `explain` judges the same URL.
pub fn without_fragment(target: &str) -> &str {
    target.split_once('#').map_or(target, |(before, _)| before)
}

/// Finds the partner and route for `METHOD /{partner_id}{path}`; `raw_path` excludes the query.
pub fn resolve(
    partners: &std::collections::BTreeMap<String, Arc<Partner>>,
    method: &str,
    raw_path: &str,
) -> Result<Target, Refusal> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Refusal::new(
            RefusalKind::BadRequest,
            "CONNECT is not allowed: no tunnel bypasses the filter",
        ));
    }
    let path = normalize_path(raw_path)
        .map_err(|reason| Refusal::new(RefusalKind::BadRequest, format!("bad path: {reason}")))?;
    let (partner_id, rest) = split_partner(&path);
    let partner = partners.get(partner_id).ok_or_else(|| {
        Refusal::new(
            RefusalKind::UnknownPartner,
            format!("no partner {partner_id:?}"),
        )
    })?;
    match partner.match_route(rest, method) {
        RouteMatch::Found(route) => {
            let route_index = partner
                .routes
                .iter()
                .position(|r| std::ptr::eq(r, route))
                .ok_or_else(|| Refusal::new(RefusalKind::Internal, "route lookup failed"))?;
            Ok(Target {
                partner: partner.clone(),
                route_index,
                upstream_path: rest.to_string(),
            })
        }
        RouteMatch::MethodNotAllowed => Err(Refusal::new(
            RefusalKind::MethodNotAllowed,
            format!("{method} is not allowed on {rest:?} for partner {partner_id:?}"),
        )),
        RouteMatch::NotFound => Err(Refusal::new(
            RefusalKind::RouteNotAllowed,
            format!("{rest:?} is not a route of partner {partner_id:?}"),
        )),
    }
}

/// A normalised path's partner id and the partner path after it (`/` when there is none).
fn split_partner(path: &str) -> (&str, &str) {
    let after_slash = path.get(1..).unwrap_or_default();
    match after_slash.find('/') {
        Some(i) => (&after_slash[..i], &after_slash[i..]),
        None => (after_slash, "/"),
    }
}

/// The index of `partner`'s route that owns `raw_path` (`/{partner_id}/...`, without the query)
/// whatever the method, when the path is valid: the route a refusal for the method (405) is
/// counted on.
pub fn path_owner(partner: &Partner, raw_path: &str) -> Option<usize> {
    partner.path_owner(&partner_path(partner, raw_path)?)
}

/// The methods `partner`'s routes take on `raw_path` (as [`path_owner`] reads it), for the
/// `Allow` header of a 405: see [`Partner::allowed_methods`].
pub fn allowed_methods(partner: &Partner, raw_path: &str) -> String {
    partner_path(partner, raw_path)
        .map(|rest| partner.allowed_methods(&rest))
        .unwrap_or_default()
}

/// The partner path of a valid `raw_path` that names `partner`.
fn partner_path(partner: &Partner, raw_path: &str) -> Option<String> {
    let path = normalize_path(raw_path).ok()?;
    let (partner_id, rest) = split_partner(&path);
    (partner_id == partner.id).then(|| rest.to_string())
}

/// What arrived from the caller, besides method and path.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub query: Option<&'a str>,
    /// Header names lowercase, in arrival order; repeated headers appear repeatedly.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Headers as [`Incoming::headers`] reads them, from a list its owner keeps (lowercase names
/// and their values, in arrival order), borrowed.
pub fn borrowed_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
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
    /// The customer ids the route types in the URL sent, for the disclosure ledger (see
    /// [`url::ledger_url_subjects`]).
    pub url_subjects: Vec<String>,
    /// [`Outgoing::body_sha256`], computed at its first use.
    body_sha256: OnceLock<String>,
}

impl Outgoing {
    /// The `body_sha256` of the body (see [`crate::tagging::body_sha256`]), hashed once: the
    /// data-use token and the disclosure ledger record carry the same text. The body is final
    /// once the request is planned.
    pub fn body_sha256(&self) -> &str {
        self.body_sha256
            .get_or_init(|| crate::tagging::body_sha256(&self.body))
    }
}

/// Where the opt-out set stands for this request.
#[derive(Clone, Copy)]
pub enum OptOuts<'a> {
    /// The store is loaded: ask it.
    Loaded(&'a dyn OptOutSource),
    /// The store is not loaded (starting, unreadable): routes that honour opt-outs refuse with 503.
    NotLoaded,
}

/// What a decision notes in its [`Report`](crate::filter::Report) besides the counts; the
/// outgoing request is byte-identical whatever is noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collect {
    /// Per-field changes ([`crate::filter::Report::changes`]), for `explain`.
    pub detail: bool,
    /// Every value the partner receives ([`crate::filter::Report::forwarded`]), for a shadow
    /// decision to compare.
    pub forwarded: bool,
    /// The subject id of every forwarded record ([`crate::filter::Report::subjects`]), for
    /// the disclosure ledger and for a shadow decision to tell records apart (a candidate that
    /// drops as many records, but other customers'): one string per record, so only asked for
    /// when there is a ledger or a shadow policy.
    pub subjects: bool,
}

/// Decides what `target`'s partner receives for this request. `detail` collects per-field
/// changes for `explain`; the body is byte-identical either way. Each step either refuses
/// or hands on what passes; the first refusal wins.
pub fn plan(
    target: &Target,
    incoming: &Incoming<'_>,
    limits: &Limits,
    optouts: OptOuts<'_>,
    detail: bool,
) -> Result<Outgoing, Refusal> {
    let collect = Collect {
        detail,
        forwarded: false,
        subjects: true,
    };
    plan_noting(target, incoming, limits, optouts, collect)
}

/// [`plan`] without per-field changes, also noting in the report's
/// [`Report::forwarded`] every value the partner receives (what a shadow decision compares;
/// see [`crate::shadow::Decision::of`]). The outcome is otherwise the same.
pub fn plan_forwarded(
    target: &Target,
    incoming: &Incoming<'_>,
    limits: &Limits,
    optouts: OptOuts<'_>,
) -> Result<Outgoing, Refusal> {
    let collect = Collect {
        detail: false,
        forwarded: true,
        subjects: true,
    };
    plan_noting(target, incoming, limits, optouts, collect)
}

/// [`plan`], noting in the report what `collect` asks for. The outcome is otherwise the same.
pub fn plan_noting(
    target: &Target,
    incoming: &Incoming<'_>,
    limits: &Limits,
    optouts: OptOuts<'_>,
    collect: Collect,
) -> Result<Outgoing, Refusal> {
    let partner = &target.partner;
    let route = target.route();
    // In the gateway's order: what the head decides, then the body's size (a stream's limit is
    // per line, checked line by line).
    head::check_head(target, incoming.headers, !incoming.body.is_empty())?;
    if !partner.honor_optouts.is_empty() && matches!(optouts, OptOuts::NotLoaded) {
        // Whatever the request names: even one that names no customer would reach a partner
        // that may only get data of customers who did not opt out, while the gateway cannot
        // tell who did.
        return Err(Refusal::new(RefusalKind::NotReady, OPTOUTS_NOT_LOADED));
    }
    let coding = framing::check_codings(incoming.headers, &route.decode)?;
    if route.stream.is_none() {
        framing::check_body_size(incoming.body, limits)?;
    }
    let decoded = decode::decode_body(coding, incoming.body, limits)?;
    let incoming = &Incoming {
        body: &decoded,
        ..*incoming
    };
    let legal_basis = legal_basis::legal_basis(partner, incoming.headers)?;
    let step = body::BodyStep {
        partner,
        route,
        limits,
        optouts,
        collect,
    };
    let (body, report) = match route.stream {
        Some(_) if !incoming.body.is_empty() => {
            stream::filter_whole(target, incoming, limits, optouts, collect)?
        }
        _ => step.filter(incoming)?,
    };
    let (headers, headers_removed) = headers::forward_headers(
        partner,
        route,
        incoming.headers,
        legal_basis.as_deref(),
        !body.is_empty(),
    );
    let (query, query_removed) = query::filter_query(incoming.query, &route.query);
    url::check_url_for_opted_out_ids(target, &query, optouts)?;
    let url_subjects = url::ledger_url_subjects(target, &query, body.is_empty());
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
        url_subjects,
        body_sha256: OnceLock::new(),
    })
}

/// The message of a refusal for a route that honours opt-outs while the set is not loaded.
const OPTOUTS_NOT_LOADED: &str =
    "opt-out data is not loaded or not current (the store could not be read, or a PostgreSQL copy is past max_staleness_s); routes that honour opt-outs are refused until it is";

#[cfg(test)]
mod tests;
