/*!
Every metric the gateway exports, registered once, behind typed methods: the rest of the
gateway calls `metrics.refused(partner, reason)` and never builds label arrays itself.

Label values come from the policy only (partner ids, route templates, transform names,
refusal codes, category names) or from the closed enums in this module; anything a request
names that the policy does not know is counted as `unknown`, so callers cannot grow the
series set.

Some series are fed by parts of the gateway that arrive separately; they are registered here
already (so dashboards and alert rules always find them) and each has its one method:
[`Metrics::set_certificate_expiry`] (TLS), [`Metrics::ledger_record`] and
[`Metrics::ledger_error`] (disclosure ledger), [`Metrics::set_optouts_staleness`] (opt-out
backends; 0 for the embedded store), [`Metrics::shadow_difference`] and
[`Metrics::unknown_fields`] (shadow policy and drift), [`Metrics::connection_closed`]
(connection limits), [`Metrics::fields_disclosed`] (data categories).
*/
use std::time::Duration;

use gateway_core::filter::{Report, Transform};
use gateway_core::policy::{Partner, Route};
use gateway_core::RefusalKind;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

mod series;

use series::{Cell, RouteSeries};
pub use series::{PartnerSeries, PolicySeries, Series};

/// Label value for a partner or route the policy does not know.
pub const UNKNOWN: &str = gateway_core::policy::RESERVED_PARTNER_ID;

/// `category` label value for a forwarded field whose path has no category (the policy's own
/// name for it, so the label and the policy's category counts agree).
pub use gateway_core::policy::categories::UNCATEGORIZED;

/// Histogram buckets (seconds) for both durations: 100 µs to 30 s.
/// 2 s is a bucket boundary: the latency alert's threshold, so that answers under it never read
/// as over it (a quantile interpolates within a bucket).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
    2.5, 5.0, 10.0, 30.0,
];

/// The `kind` label of `partner_gateway_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The partner could not be reached (refused, no route, DNS).
    Connect,
    /// The partner did not answer within `upstream_timeout_ms`.
    Timeout,
    /// The partner answered with something that is not valid HTTP, or too much of it.
    Protocol,
    /// The partner's certificate did not verify, or the TLS handshake failed.
    Tls,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Tls => "tls",
        }
    }
}

/// The `reason` label of `partner_gateway_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClosed {
    HeaderTimeout,
    BodyTimeout,
    TooManyConnections,
    HeaderTooLarge,
}

impl ConnectionClosed {
    pub const ALL: [ConnectionClosed; 4] = [
        ConnectionClosed::HeaderTimeout,
        ConnectionClosed::BodyTimeout,
        ConnectionClosed::TooManyConnections,
        ConnectionClosed::HeaderTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionClosed::HeaderTimeout => "header_timeout",
            ConnectionClosed::BodyTimeout => "body_timeout",
            ConnectionClosed::TooManyConnections => "too_many_connections",
            ConnectionClosed::HeaderTooLarge => "header_too_large",
        }
    }
}

pub use gateway_core::shadow::ShadowChange;

/// Every metric family; fields are private so label values only enter through the methods.
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
    fields_disclosed: IntCounterVec,
    certificate_expiry: IntGaugeVec,
    ledger_records: IntCounter,
    ledger_errors: IntCounter,
    build_info: IntGaugeVec,
    optouts_staleness: Gauge,
    shadow_differences: IntCounterVec,
    unknown_fields: IntCounterVec,
    connections_closed: IntCounterVec,
    signing_disabled: IntGauge,
}

/// Every metric family name the gateway exports (histograms without `_bucket`/`_sum`/`_count`),
/// besides the `process_*` families.
pub const NAMES: [&str; 22] = [
    "partner_gateway_requests_total",
    "partner_gateway_request_duration_seconds",
    "partner_gateway_filter_duration_seconds",
    "partner_gateway_requests_refused_total",
    "partner_gateway_fields_removed_total",
    "partner_gateway_fields_transformed_total",
    "partner_gateway_records_forwarded_total",
    "partner_gateway_records_dropped_total",
    "partner_gateway_upstream_errors_total",
    "partner_gateway_optouts",
    "partner_gateway_policy_reloads_total",
    "partner_gateway_policy_info",
    "partner_gateway_fields_disclosed_total",
    "partner_gateway_certificate_expiry_timestamp_seconds",
    "partner_gateway_ledger_records_total",
    "partner_gateway_ledger_errors_total",
    "partner_gateway_build_info",
    "partner_gateway_optouts_staleness_seconds",
    "partner_gateway_shadow_differences_total",
    "partner_gateway_unknown_fields_total",
    "partner_gateway_connections_closed_total",
    "partner_gateway_signing_disabled",
];

fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    register(registry, metric)
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    register(registry, metric)
}

fn histograms(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    register(
        registry,
        HistogramVec::new(opts, labels).expect("metric definition is valid"),
    )
}

/// The process metrics of prometheus' own collector, with `process_cpu_seconds_total` to the
/// nanosecond: that collector counts whole seconds (an integer counter), so a lightly loaded
/// gateway's CPU rate read 0 and jumped in one-second steps.
#[cfg(target_os = "linux")]
struct ProcessMetrics(prometheus::process_collector::ProcessCollector);

#[cfg(target_os = "linux")]
impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.0.collect();
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let seconds = cpu.tv_sec as f64 + cpu.tv_nsec as f64 / 1e9;
        for family in families
            .iter_mut()
            .filter(|f| f.name() == "process_cpu_seconds_total")
        {
            for metric in family.mut_metric() {
                let mut counter = prometheus::proto::Counter::default();
                counter.set_value(seconds);
                metric.set_counter(counter);
            }
        }
        families
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(ProcessMetrics(
            prometheus::process_collector::ProcessCollector::for_self(),
        )))
        .expect("process metrics registered once");
        let metrics = Metrics {
            requests: counters(&r, NAMES[0], "Requests answered, by partner, route and HTTP status", &["partner", "route", "status"]),
            request_duration: histograms(&r, NAMES[1], "End-to-end request duration, including the partner's answer", &["partner", "route"]),
            filter_duration: histograms(&r, NAMES[2], "Time spent validating and filtering request bodies", &["partner", "route"]),
            refused: counters(&r, NAMES[3], "Requests refused before anything reached a partner (and partner failures), by reason code", &["partner", "reason"]),
            fields_removed: counters(&r, NAMES[4], "Body fields removed because the partner's policy does not allow them", &["partner", "route"]),
            fields_transformed: counters(&r, NAMES[5], "Body fields forwarded only in transformed form", &["partner", "route", "transform"]),
            records_forwarded: counters(&r, NAMES[6], "Customer records forwarded to partners", &["partner", "route"]),
            records_dropped: counters(&r, NAMES[7], "Customer records dropped before forwarding, by reason", &["partner", "route", "reason"]),
            upstream_errors: counters(&r, NAMES[8], "Failures talking to partners, by kind (connect, timeout, protocol, tls)", &["partner", "kind"]),
            optouts: gauges(&r, NAMES[9], "Customers opted out, by scope", &["scope"]),
            policy_reloads: counters(&r, NAMES[10], "Policy reloads, by result", &["result"]),
            policy_info: gauges(&r, NAMES[11], "The policy version being served (value is always 1)", &["version"]),
            fields_disclosed: counters(&r, NAMES[12], "Fields forwarded to partners, by data category (uncategorized when the path has none)", &["partner", "route", "category"]),
            certificate_expiry: gauges(&r, NAMES[13], "notAfter of each loaded certificate, Unix seconds", &["name"]),
            ledger_records: register(&r, IntCounter::new(NAMES[14], "Records appended to the disclosure ledger").expect("valid")),
            ledger_errors: register(&r, IntCounter::new(NAMES[15], "Disclosure ledger writes that failed: a record (its request refused with 503), an outcome, subjects or checkpoint line, and each failed attempt (one a second) to reopen a ledger that cannot be written").expect("valid")),
            build_info: gauges(&r, NAMES[16], "The gateway's version (value is always 1)", &["version"]),
            optouts_staleness: register(&r, Gauge::new(NAMES[17], "Age of this replica's opt-out data in seconds (0 for the embedded store; grows while opt-outs a partner honours are not loaded)").expect("valid")),
            shadow_differences: counters(&r, NAMES[18], "Decisions of the shadow policy that differ from the active one", &["partner", "route", "change"]),
            unknown_fields: counters(&r, NAMES[19], "Fields callers sent that no policy path names (removed by default)", &["partner", "route"]),
            connections_closed: counters(&r, NAMES[20], "Client connections the gateway closed, by reason", &["reason"]),
            signing_disabled: register(&r, IntGauge::new(NAMES[21], "1 when the policy says signing: {disabled: true} (partners get no signed data-use token), else 0").expect("valid")),
            registry: r,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for reason in ConnectionClosed::ALL {
            metrics
                .connections_closed
                .with_label_values(&[reason.as_str()]);
        }
        for result in ["ok", "error"] {
            metrics.policy_reloads.with_label_values(&[result]);
        }
        for reason in RefusalKind::ALL.map(RefusalKind::code) {
            metrics.refused.with_label_values(&[UNKNOWN, reason]);
        }
        metrics
    }

    /// The Prometheus text exposition of every metric. A family without series yet (no request
    /// answered, no certificate loaded, no shadow policy) still gets its `# HELP` and `# TYPE`
    /// lines, so whoever checks dashboards and alert rules against `/metrics`, or lists label
    /// values from it, finds every family the gateway exports from its first second.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&families, &mut out);
        let maybe_empty: [(&dyn Collector, &str); 18] = [
            (&self.requests, "counter"),
            (&self.request_duration, "histogram"),
            (&self.filter_duration, "histogram"),
            (&self.refused, "counter"),
            (&self.fields_removed, "counter"),
            (&self.fields_transformed, "counter"),
            (&self.records_forwarded, "counter"),
            (&self.records_dropped, "counter"),
            (&self.upstream_errors, "counter"),
            (&self.optouts, "gauge"),
            (&self.policy_reloads, "counter"),
            (&self.policy_info, "gauge"),
            (&self.fields_disclosed, "counter"),
            (&self.certificate_expiry, "gauge"),
            (&self.build_info, "gauge"),
            (&self.shadow_differences, "counter"),
            (&self.unknown_fields, "counter"),
            (&self.connections_closed, "counter"),
        ];
        for (collector, kind) in maybe_empty {
            for desc in collector.desc() {
                if families.iter().all(|f| f.name() != desc.fq_name) {
                    let help = desc.help.replace('\\', "\\\\").replace('\n', "\\n");
                    let name = &desc.fq_name;
                    out.extend_from_slice(format!("# HELP {name} {help}\n").as_bytes());
                    out.extend_from_slice(format!("# TYPE {name} {kind}\n").as_bytes());
                }
            }
        }
        out
    }

    /// Creates every series the policy can produce at zero, so dashboards and alerts see each
    /// partner and route (and every refusal reason) before the first request, and returns
    /// their handles, to be kept with the policy.
    pub fn register_policy(&self, policy: &gateway_core::policy::Policy) -> PolicySeries {
        self.signing_disabled
            .set(i64::from(policy.gateway.signing.is_none()));
        let mut series = PolicySeries::default();
        for (id, partner) in &policy.partners {
            series.insert(id, self.register_partner(partner));
        }
        series
    }

    fn register_partner(&self, partner: &Partner) -> PartnerSeries {
        let handles = PartnerSeries::new(partner);
        let id = partner.id.as_str();
        for (kind, cell) in RefusalKind::ALL.iter().zip(&handles.refused) {
            cell.get_or_init(|| self.refused.with_label_values(&[id, kind.code()]));
        }
        for (kind, cell) in UpstreamErrorKind::ALL.iter().zip(&handles.upstream_errors) {
            cell.get_or_init(|| self.upstream_errors.with_label_values(&[id, kind.as_str()]));
        }
        for (route, cells) in partner.routes.iter().zip(&handles.routes) {
            self.register_route(partner, route, cells);
        }
        handles
    }

    fn register_route(&self, partner: &Partner, route: &Route, cells: &RouteSeries) {
        let labels = [partner.id.as_str(), route.template.as_str()];
        cells
            .request_duration
            .get_or_init(|| self.request_duration.with_label_values(&labels));
        cells
            .fields_removed
            .get_or_init(|| self.fields_removed.with_label_values(&labels));
        cells
            .records_forwarded
            .get_or_init(|| self.records_forwarded.with_label_values(&labels));
        cells
            .unknown_fields
            .get_or_init(|| self.unknown_fields.with_label_values(&labels));
        for (category, cell) in cells.disclosed_names.iter().zip(&cells.disclosed) {
            let labels = [labels[0], labels[1], category.as_str()];
            cell.get_or_init(|| self.fields_disclosed.with_label_values(&labels));
        }
        if let Some(program) = &route.filter {
            cells
                .filter_duration
                .get_or_init(|| self.filter_duration.with_label_values(&labels));
            // The transforms the route's policy names (`null` included: it transforms too).
            for (_, transform) in &program.spec().transforms {
                let slot = Transform::ALL.iter().position(|t| t == transform);
                if let Some(cell) = slot.and_then(|i| cells.fields_transformed.get(i)) {
                    let labels = [labels[0], labels[1], transform.name()];
                    cell.get_or_init(|| self.fields_transformed.with_label_values(&labels));
                }
            }
        }
        if !partner.honor_optouts.is_empty() {
            let labels = [labels[0], labels[1], "opted_out"];
            cells
                .records_dropped
                .get_or_init(|| self.records_dropped.with_label_values(&labels));
        }
    }

    /// With a shadow policy: every route of both policies at zero for each change, so the
    /// differences are visible before the first one. Without one the family stays empty.
    pub fn register_shadow(
        &self,
        active: &gateway_core::policy::Policy,
        candidate: &gateway_core::policy::Policy,
    ) {
        for policy in [active, candidate] {
            for (id, partner) in &policy.partners {
                for route in &partner.routes {
                    for change in ShadowChange::ALL {
                        self.shadow_differences.with_label_values(&[
                            id,
                            &route.template,
                            change.as_str(),
                        ]);
                    }
                }
            }
        }
    }

    /// One answered request: its status and end-to-end duration.
    pub fn request(&self, s: Series, status: u16, took: Duration) {
        let lookup = || {
            let status = status.to_string();
            self.requests
                .with_label_values(&[s.partner, s.route, &status])
        };
        inc_by(s.of_route.and_then(|r| r.requests(status)), lookup, 1);
        let lookup = || {
            self.request_duration
                .with_label_values(&[s.partner, s.route])
        };
        observe(s.of_route.map(|r| &r.request_duration), lookup, took);
    }

    /// Time spent validating and filtering one body.
    pub fn filter_time(&self, s: Series, took: Duration) {
        let lookup = || {
            self.filter_duration
                .with_label_values(&[s.partner, s.route])
        };
        observe(s.of_route.map(|r| &r.filter_duration), lookup, took);
    }

    /// One refusal.
    pub fn refused(&self, s: Series, kind: RefusalKind) {
        let lookup = || self.refused.with_label_values(&[s.partner, kind.code()]);
        inc_by(s.of_partner.and_then(|p| p.refused(kind)), lookup, 1);
    }

    pub fn upstream_error(&self, s: Series, kind: UpstreamErrorKind) {
        let lookup = || {
            self.upstream_errors
                .with_label_values(&[s.partner, kind.as_str()])
        };
        inc_by(s.of_partner.and_then(|p| p.upstream_error(kind)), lookup, 1);
    }

    /// What the filter did to a body that was really forwarded.
    pub fn forwarded(&self, s: Series, report: &Report) {
        let labels = [s.partner, s.route];
        let route = s.of_route;
        let lookup = || self.fields_removed.with_label_values(&labels);
        inc_by(
            route.map(|r| &r.fields_removed),
            lookup,
            report.fields_removed,
        );
        for (i, transform) in Transform::ALL.iter().enumerate() {
            if report.transformed[i] > 0 {
                let labels = [s.partner, s.route, transform.name()];
                let lookup = || self.fields_transformed.with_label_values(&labels);
                let cell = route.and_then(|r| r.fields_transformed.get(i));
                inc_by(cell, lookup, report.transformed[i]);
            }
        }
        let lookup = || self.records_forwarded.with_label_values(&labels);
        inc_by(
            route.map(|r| &r.records_forwarded),
            lookup,
            report.records_forwarded,
        );
        if report.records_dropped > 0 {
            let labels = [s.partner, s.route, "opted_out"];
            let lookup = || self.records_dropped.with_label_values(&labels);
            inc_by(
                route.map(|r| &r.records_dropped),
                lookup,
                report.records_dropped,
            );
        }
    }

    /// The fields forwarded on `route` (the request's route policy), by data category (a
    /// policy name, or [`UNCATEGORIZED`]): `matched` counts them per field of the route.
    pub fn fields_disclosed(&self, s: Series, route: &Route, matched: &[u64]) {
        let Some(cells) = s.of_route else {
            for (category, count) in route.disclosed_by_category(matched) {
                self.fields_disclosed
                    .with_label_values(&[s.partner, s.route, category])
                    .inc_by(count);
            }
            return;
        };
        let counted = cells.field_category.iter().zip(matched);
        let counted = counted.filter_map(|(slot, n)| Some((slot.as_ref()?, n)));
        for (&slot, &count) in counted.filter(|(_, n)| **n > 0) {
            let labels = [s.partner, s.route, cells.disclosed_names[slot].as_str()];
            let lookup = || self.fields_disclosed.with_label_values(&labels);
            inc_by(cells.disclosed.get(slot), lookup, count);
        }
    }

    /// Replaces the per-scope opt-out counts (scopes the policy honours only).
    pub fn set_optouts<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        self.optouts.reset();
        for (scope, count) in counts {
            self.optouts
                .with_label_values(&[scope])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Age of the opt-out data this replica decides with (0 when current).
    pub fn set_optouts_staleness(&self, age: Duration) {
        self.optouts_staleness.set(age.as_secs_f64());
    }

    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads.with_label_values(&[result]).inc();
    }

    /// Marks `version` as the policy being served (and only it).
    pub fn set_policy_version(&self, version: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
    }

    /// The notAfter (Unix seconds) of the certificate called `name` (`listener`, `client_ca`,
    /// `partner:<id>`, `partner:<id>:client`).
    pub fn set_certificate_expiry(&self, name: &str, not_after_unix: i64) {
        self.certificate_expiry
            .with_label_values(&[name])
            .set(not_after_unix);
    }

    /// A policy without a `shadow` candidate: its difference series go (a later candidate
    /// starts them again from zero).
    pub fn clear_shadow(&self) {
        self.shadow_differences.reset();
    }

    /// Forgets every certificate (before a reload sets the new ones).
    pub fn clear_certificate_expiry(&self) {
        self.certificate_expiry.reset();
    }

    pub fn ledger_record(&self) {
        self.ledger_records.inc();
    }

    pub fn ledger_error(&self) {
        self.ledger_errors.inc();
    }

    /// The ledger error counter itself, for the ledger's own retries (see `Ledger::start`).
    pub fn ledger_error_counter(&self) -> IntCounter {
        self.ledger_errors.clone()
    }

    pub fn shadow_difference(&self, partner: &str, route: &str, change: ShadowChange) {
        self.shadow_differences
            .with_label_values(&[partner, route, change.as_str()])
            .inc();
    }

    pub fn unknown_fields(&self, s: Series, count: u64) {
        let lookup = || self.unknown_fields.with_label_values(&[s.partner, s.route]);
        inc_by(s.of_route.map(|r| &r.unknown_fields), lookup, count);
    }

    pub fn connection_closed(&self, reason: ConnectionClosed) {
        self.connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// Counts `n` in the series `cell` holds (found with `lookup` on its first use), or, for a
/// request without handles, in the series `lookup` finds.
fn inc_by(cell: Option<&Cell<IntCounter>>, lookup: impl FnOnce() -> IntCounter, n: u64) {
    match cell {
        Some(cell) => cell.get_or_init(lookup).inc_by(n),
        None => lookup().inc_by(n),
    }
}

/// [`inc_by`] for a duration histogram.
fn observe(cell: Option<&Cell<Histogram>>, lookup: impl FnOnce() -> Histogram, took: Duration) {
    match cell {
        Some(cell) => cell.get_or_init(lookup).observe(took.as_secs_f64()),
        None => lookup().observe(took.as_secs_f64()),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests;
