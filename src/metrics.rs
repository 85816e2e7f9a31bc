/*!
Every metric the gateway exports, registered once. Label values come from the policy only
(partner ids, route templates, transform names, refusal codes); anything a request names that
the policy does not know is counted as `unknown`, so callers cannot grow the series set.

The series are private: the rest of the gateway counts through typed methods
([`Metrics::refused`], [`Metrics::answered`], …), so no label list can have the wrong length
or order on the request path.
*/
use std::time::Duration;

use gateway_core::filter::{Report, Transform};
use gateway_core::RefusalKind;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Label value for a partner or route the policy does not know.
pub const UNKNOWN: &str = "unknown";

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    filter_duration: HistogramVec,
    refused: IntCounterVec,
    fields_removed: IntCounterVec,
    fields_transformed: IntCounterVec,
    records_forwarded: IntCounterVec,
    records_dropped: IntCounterVec,
    upstream_errors: IntCounterVec,
    optouts: IntGaugeVec,
    policy_reloads: IntCounterVec,
    policy_info: IntGaugeVec,
}

/// The `kind` label values of `partner_gateway_upstream_errors_total`.
pub const UPSTREAM_ERROR_KINDS: [&str; 3] = ["connect", "timeout", "protocol"];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("metric definition is valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let request_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let filter_buckets = vec![
            0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5,
        ];
        Metrics {
            requests: counter(
                &registry,
                "partner_gateway_requests_total",
                "Requests answered, by partner, route and HTTP status",
                &["partner", "route", "status"],
            ),
            request_duration: histogram(
                &registry,
                "partner_gateway_request_duration_seconds",
                "End-to-end request duration, including the partner's answer",
                &["partner", "route"],
                request_buckets,
            ),
            filter_duration: histogram(
                &registry,
                "partner_gateway_filter_duration_seconds",
                "Time spent validating and filtering request bodies",
                &["partner", "route"],
                filter_buckets,
            ),
            refused: counter(
                &registry,
                "partner_gateway_requests_refused_total",
                "Requests refused before anything reached a partner, by reason code",
                &["partner", "reason"],
            ),
            fields_removed: counter(
                &registry,
                "partner_gateway_fields_removed_total",
                "Body fields removed because the partner's policy does not allow them",
                &["partner", "route"],
            ),
            fields_transformed: counter(
                &registry,
                "partner_gateway_fields_transformed_total",
                "Body fields forwarded only in transformed form",
                &["partner", "route", "transform"],
            ),
            records_forwarded: counter(
                &registry,
                "partner_gateway_records_forwarded_total",
                "Customer records forwarded to partners",
                &["partner", "route"],
            ),
            records_dropped: counter(
                &registry,
                "partner_gateway_records_dropped_total",
                "Customer records dropped before forwarding, by reason",
                &["partner", "route", "reason"],
            ),
            upstream_errors: counter(
                &registry,
                "partner_gateway_upstream_errors_total",
                "Failures talking to partners, by kind (connect, timeout, protocol)",
                &["partner", "kind"],
            ),
            optouts: gauge(
                &registry,
                "partner_gateway_optouts",
                "Customers opted out, by scope",
                &["scope"],
            ),
            policy_reloads: counter(
                &registry,
                "partner_gateway_policy_reloads_total",
                "Policy loads and reloads, by result",
                &["result"],
            ),
            policy_info: gauge(
                &registry,
                "partner_gateway_policy_info",
                "The policy version being served (value is always 1)",
                &["version"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&self.registry.gather(), &mut out);
        out
    }

    /// Creates every series the policy can produce at zero, so dashboards and alerts see each
    /// partner and route (and every refusal reason) before the first request.
    pub fn register_policy(&self, policy: &gateway_core::policy::Policy) {
        for kind in RefusalKind::ALL {
            self.refused.with_label_values(&[UNKNOWN, kind.code()]);
        }
        for (id, partner) in &policy.partners {
            for kind in RefusalKind::ALL {
                self.refused.with_label_values(&[id.as_str(), kind.code()]);
            }
            for kind in UPSTREAM_ERROR_KINDS {
                self.upstream_errors.with_label_values(&[id.as_str(), kind]);
            }
            for route in &partner.routes {
                let labels = [id.as_str(), route.template.as_str()];
                self.request_duration.with_label_values(&labels);
                self.fields_removed.with_label_values(&labels);
                self.records_forwarded.with_label_values(&labels);
                if route.filter.is_some() {
                    self.filter_duration.with_label_values(&labels);
                }
                if !partner.honor_optouts.is_empty() {
                    self.records_dropped.with_label_values(&[
                        id.as_str(),
                        &route.template,
                        "opted_out",
                    ]);
                }
            }
        }
    }

    /// Marks `version` as the policy being served (and only it).
    pub fn set_policy_version(&self, version: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
    }

    /// One request answered with `status` after `took`.
    pub fn answered(&self, partner: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[partner, route, &status.to_string()])
            .inc();
        self.request_duration
            .with_label_values(&[partner, route])
            .observe(took.as_secs_f64());
    }

    /// Time spent validating and filtering one body.
    pub fn filtered(&self, partner: &str, route: &str, took: Duration) {
        self.filter_duration
            .with_label_values(&[partner, route])
            .observe(took.as_secs_f64());
    }

    /// One request refused before anything reached the partner.
    pub fn refused(&self, partner: &str, kind: RefusalKind) {
        self.refused
            .with_label_values(&[partner, kind.code()])
            .inc();
    }

    /// One failure talking to a partner; `kind` is one of [`UPSTREAM_ERROR_KINDS`].
    pub fn upstream_error(&self, partner: &str, kind: &'static str) {
        self.upstream_errors
            .with_label_values(&[partner, kind])
            .inc();
    }

    /// What the filter did to a body that was really forwarded.
    pub fn forwarded(&self, partner: &str, route: &str, report: &Report) {
        self.fields_removed
            .with_label_values(&[partner, route])
            .inc_by(report.fields_removed);
        for (i, transform) in Transform::ALL.iter().enumerate() {
            if report.transformed[i] > 0 {
                self.fields_transformed
                    .with_label_values(&[partner, route, transform.name()])
                    .inc_by(report.transformed[i]);
            }
        }
        self.records_forwarded
            .with_label_values(&[partner, route])
            .inc_by(report.records_forwarded);
        if report.records_dropped > 0 {
            self.records_dropped
                .with_label_values(&[partner, route, "opted_out"])
                .inc_by(report.records_dropped);
        }
    }

    /// One policy load or reload, and whether it was accepted.
    pub fn policy_loaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads.with_label_values(&[result]).inc();
    }

    /// Creates both `policy_reloads_total` series at zero.
    pub fn register_policy_reloads(&self) {
        for result in ["ok", "error"] {
            self.policy_reloads.with_label_values(&[result]);
        }
    }

    /// The opt-out gauge: exactly these scopes, with these counts.
    pub fn set_optouts(&self, counts: &[(&str, u64)]) {
        self.optouts.reset();
        for (scope, count) in counts {
            self.optouts
                .with_label_values(&[scope])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
