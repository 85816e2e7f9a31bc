//! Per-request state, filled in as the request moves through the phases and read by `logging`.
use std::time::{Duration, Instant};

use gateway_core::filter::Report;
use gateway_core::RefusalKind;

use crate::metrics::UNKNOWN;

pub struct RequestCtx {
    pub started: Instant,
    /// Partner id from the policy, or `unknown`.
    pub partner: String,
    /// Route template from the policy, or `unknown`.
    pub route: String,
    /// Status sent to the caller.
    pub status: u16,
    /// Why the gateway refused the request, when it did.
    pub refused: Option<RefusalKind>,
    /// What the filter did to the forwarded body.
    pub report: Option<Report>,
    pub filter_time: Option<Duration>,
    /// `connect`, `timeout` or `protocol`, when talking to the partner failed.
    pub upstream_error: Option<&'static str>,
    /// The `WWW-Authenticate` challenge for a 401.
    pub www_authenticate: Option<String>,
    /// Set once the request is in the metrics.
    pub counted: bool,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            partner: UNKNOWN.to_string(),
            route: UNKNOWN.to_string(),
            status: 0,
            refused: None,
            report: None,
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
