//! Per-request state, filled in as the request moves through the phases and read by `logging`.
use std::borrow::Cow;
use std::time::{Duration, Instant};

use gateway_core::filter::Report;
use gateway_core::RefusalKind;

use crate::metrics::{UpstreamErrorKind, UNKNOWN};

pub struct RequestCtx {
    pub started: Instant,
    /// A fresh id for this request (never the caller's `x-request-id`: header values are not logged).
    pub request_id: String,
    /// The request method if it is a standard one, else `other` (a method is caller input).
    pub method: &'static str,
    /// Request body bytes read from the caller.
    pub bytes_in: u64,
    /// Body bytes sent to the partner.
    pub bytes_out: u64,
    /// Time spent with the partner, when one was contacted.
    pub upstream_time: Option<Duration>,
    /// Partner id from the policy, or `unknown`.
    pub partner: Cow<'static, str>,
    /// Route template from the policy, or `unknown`.
    pub route: Cow<'static, str>,
    /// Status sent to the caller.
    pub status: u16,
    /// Why the gateway refused the request, when it did.
    pub refused: Option<RefusalKind>,
    /// What the filter did to the forwarded body.
    pub report: Option<Report>,
    /// Values forwarded per data category (from the route's `categories:`).
    pub disclosed: Vec<(String, u64)>,
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
            request_id: uuid::Uuid::new_v4().to_string(),
            method: "other",
            bytes_in: 0,
            bytes_out: 0,
            upstream_time: None,
            partner: Cow::Borrowed(UNKNOWN),
            route: Cow::Borrowed(UNKNOWN),
            status: 0,
            refused: None,
            report: None,
            disclosed: Vec::new(),
            filter_time: None,
            upstream_error: None,
            www_authenticate: None,
            counted: false,
        }
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
