/*!
Drift as the running gateway sees it: every forwarded-or-decided request's unknown fields (the
members callers send that no policy path names) counted in
`partner_gateway_unknown_fields_total{partner,route}` and kept, per route, in a bounded
[`DriftTable`] that `GET {admin}/drift` lists as JSON: paths only, with counts and first and
last seen, never a value (see `gateway_core::drift`).
*/
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use gateway_core::drift::DriftTable;
use gateway_core::filter::Report;
use serde_json::{json, Value};

use crate::metrics::{Metrics, Series};

/// The gateway's drift table (in memory: a restart starts it afresh).
#[derive(Default)]
pub struct Drift {
    table: Mutex<DriftTable>,
}

impl Drift {
    pub fn new() -> Drift {
        Drift::default()
    }

    /// Notes what the filter found unknown in one request to `series`' partner and route
    /// (names from the policy): the counter, then, when `listed`, the table (a request decided
    /// under a policy a reload has since replaced is counted but not listed: the list is the
    /// serving policy's).
    pub fn record(&self, metrics: &Metrics, series: Series, report: &Report, listed: bool) {
        if report.unknown_fields == 0 {
            return;
        }
        metrics.unknown_fields(series, report.unknown_fields);
        if !listed {
            return;
        }
        let listed: u64 = report.unknown.iter().map(|f| f.count).sum();
        let not_listed = report.unknown_fields.saturating_sub(listed);
        let now = Utc::now().timestamp();
        let mut table = match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        table.record(
            series.partner,
            series.route,
            &report.unknown,
            not_listed,
            now,
        );
    }

    /// Starts the table afresh: what is unknown is relative to the policy serving, so a reload
    /// that changes it makes the entries stale (a field it now allows would still be listed,
    /// and suggested).
    pub fn clear(&self) {
        let mut table = match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        *table = DriftTable::new();
    }

    /// `GET /drift`: `{"routes": [{"partner", "route", "paths": [{"path", "count",
    /// "first_seen", "last_seen", "shapes"}], "not_listed"}]}`, sorted by partner, route and path.
    pub fn to_json(&self) -> Value {
        let table = match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        let routes: Vec<Value> = table
            .routes()
            .map(|(partner, route, drift)| {
                let paths: Vec<Value> = drift
                    .paths
                    .iter()
                    .map(|(path, seen)| {
                        json!({
                            "path": path,
                            "count": seen.count,
                            "first_seen": rfc3339(seen.first_seen),
                            "last_seen": rfc3339(seen.last_seen),
                            "shapes": seen.shapes.names(),
                        })
                    })
                    .collect();
                json!({
                    "partner": partner,
                    "route": route,
                    "paths": paths,
                    "not_listed": drift.not_listed,
                })
            })
            .collect();
        json!({ "routes": routes })
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-08-15T10:04:05Z`).
pub fn rfc3339(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}
