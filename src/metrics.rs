/*!
Every metric the gateway exports, registered once. Label values come from the policy only
(partner ids, route templates, transform names, refusal codes); anything a request names that
the policy does not know is counted as `unknown`, so callers cannot grow the series set.
*/
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Label value for a partner or route the policy does not know.
pub const UNKNOWN: &str = "unknown";

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub filter_duration: HistogramVec,
    pub refused: IntCounterVec,
    pub fields_removed: IntCounterVec,
    pub fields_transformed: IntCounterVec,
    pub records_forwarded: IntCounterVec,
    pub records_dropped: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub optouts: IntGaugeVec,
    pub policy_reloads: IntCounterVec,
    pub policy_info: IntGaugeVec,
    pub certificate_expiry: IntGaugeVec,
}

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
                "Failures talking to partners, by kind (connect, timeout, tls, protocol)",
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
            certificate_expiry: gauge(
                &registry,
                "partner_gateway_certificate_expiry_timestamp_seconds",
                "notAfter of every loaded certificate, in Unix seconds (listener, client_ca, partner:<id>, partner:<id>:client)",
                &["name"],
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
        for reason in gateway_core::Refusal::CODES {
            self.refused.with_label_values(&[UNKNOWN, reason]);
        }
        for (id, partner) in &policy.partners {
            for reason in gateway_core::Refusal::CODES {
                self.refused.with_label_values(&[id.as_str(), reason]);
            }
            for kind in ["connect", "timeout", "protocol", "tls"] {
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

    /// Exactly the certificates of the policy being served, by name (names come from the policy).
    pub fn set_certificate_expiries(&self, expiries: &[(String, i64)]) {
        self.certificate_expiry.reset();
        for (name, not_after) in expiries {
            self.certificate_expiry
                .with_label_values(&[name.as_str()])
                .set(*not_after);
        }
    }

    /// Marks `version` as the policy being served (and only it).
    pub fn set_policy_version(&self, version: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
