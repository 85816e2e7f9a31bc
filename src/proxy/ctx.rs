//! Per-request state, filled in as the request moves through the phases and read by `logging`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::filter::Report;
use gateway_core::plan::{self, Target};
use gateway_core::policy::{Partner, Route};
use gateway_core::RefusalKind;

use crate::metrics::{PartnerSeries, Series, UpstreamErrorKind, UNKNOWN};

pub struct RequestCtx {
    pub started: Instant,
    /// Counts the request as under way until the context is dropped (see `shutdown`).
    pub in_flight: Option<crate::shutdown::InFlight>,
    /// A fresh id for this request (never the caller's `x-request-id`: header values are not logged).
    pub request_id: RequestId,
    /// The request method if it is a standard one, else `other` (a method is caller input).
    pub method: &'static str,
    /// Request body bytes read from the caller.
    pub bytes_in: u64,
    /// Body bytes sent to the partner.
    pub bytes_out: u64,
    /// Time spent with the partner, when one was contacted.
    pub upstream_time: Option<Duration>,
    /// The partner (and its route) from the policy, once known: the labels of the request's
    /// logs and metrics are borrowed from it, not copied per request.
    partner: Option<Arc<Partner>>,
    route_index: Option<usize>,
    /// The partner's metric series, resolved when its policy was loaded.
    series: Option<Arc<PartnerSeries>>,
    /// Status sent to the caller.
    pub status: u16,
    /// Why the gateway refused the request, when it did.
    pub refused: Option<RefusalKind>,
    /// What the filter did to the forwarded body.
    pub report: Option<Report>,
    /// Whether the fields `report` matched really went to the partner (counted per data
    /// category, from the route's `categories:`).
    pub disclosed: bool,
    pub filter_time: Option<Duration>,
    /// Set when talking to the partner failed.
    pub upstream_error: Option<UpstreamErrorKind>,
    /// The `WWW-Authenticate` challenge for a 401.
    pub www_authenticate: Option<String>,
    /// Set once the request is in the metrics.
    pub counted: bool,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            in_flight: None,
            request_id: RequestId::new(),
            method: "other",
            bytes_in: 0,
            bytes_out: 0,
            upstream_time: None,
            partner: None,
            route_index: None,
            series: None,
            status: 0,
            refused: None,
            report: None,
            disclosed: false,
            filter_time: None,
            upstream_error: None,
            www_authenticate: None,
            counted: false,
        }
    }
}

impl RequestCtx {
    /// The request names `partner` (its route is not known, or not yet); `series` are its
    /// metric handles from the same policy.
    pub fn set_partner(&mut self, partner: &Arc<Partner>, series: Option<Arc<PartnerSeries>>) {
        self.partner = Some(partner.clone());
        self.route_index = None;
        self.series = series;
    }

    /// After [`Self::set_partner`]: the request's path is owned by the partner's
    /// `route_index`th route, although that route does not take the method.
    pub fn set_path_owner(&mut self, route_index: usize) {
        if self.partner.is_some() {
            self.route_index = Some(route_index);
        }
    }

    /// The `Allow` header of a 405 for `raw_path`: the methods of the routes owning it, on the
    /// partner the request names (empty when it names none).
    pub fn allowed_methods(&self, raw_path: &str) -> String {
        let partner = self.partner.as_deref();
        partner.map_or_else(String::new, |p| plan::allowed_methods(p, raw_path))
    }

    /// The request names this partner and route; `series` as for [`Self::set_partner`].
    pub fn set_target(&mut self, target: &Target, series: Option<Arc<PartnerSeries>>) {
        self.partner = Some(target.partner.clone());
        self.route_index = Some(target.route_index);
        self.series = series;
    }

    /// The request's metric series: labels from the policy (or `unknown`), with handles.
    pub fn series(&self) -> Series<'_> {
        match &self.partner {
            Some(partner) => Series::of(partner, self.route_index, self.series.as_deref()),
            None => Series::UNKNOWN,
        }
    }

    /// The partner id for logs and metrics: from the policy, or `unknown`.
    pub fn partner(&self) -> &str {
        self.partner.as_ref().map_or(UNKNOWN, |p| p.id.as_str())
    }

    /// The route template for logs and metrics: from the policy, or `unknown`.
    pub fn route(&self) -> &str {
        self.route_policy().map_or(UNKNOWN, |r| r.template.as_str())
    }

    /// The route's policy, once the route is known.
    pub fn route_policy(&self) -> Option<&Route> {
        let partner = self.partner.as_ref()?;
        partner.routes.get(self.route_index?)
    }

    /// Whether the policy the request was decided under still serves: its partner is the one
    /// `policy` holds (a reload builds every partner anew).
    pub fn decided_under(&self, policy: &gateway_core::policy::Policy) -> bool {
        self.partner.as_ref().is_some_and(|partner| {
            policy
                .partners
                .get(&partner.id)
                .is_some_and(|now| Arc::ptr_eq(now, partner))
        })
    }
}

/// A request's id: a fresh random (v4) UUID, hyphenated, kept inline (no allocation).
pub struct RequestId([u8; uuid::fmt::Hyphenated::LENGTH]);

impl RequestId {
    fn new() -> RequestId {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        RequestId(text)
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII (hex digits and hyphens), so never the empty fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new()
    }
}

/// The method as logged: a standard method's name, or `other`.
pub fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests;
