/*!
The series of one loaded policy's partners and routes, resolved when the policy is loaded, so
the request path counts through ready handles instead of a label lookup per metric per
request. A handle is the very series `with_label_values` returns for the same labels: counts
through a handle and through a lookup land in one series, and a request still finishing under
the policy it started with (after a reload) counts in the same series as before the reload.

A series the gateway creates at zero when the policy is loaded is resolved then; one that only
exists once counted (a status, a transform the route's policy does not name, a dropped-records
reason a route does not expect)
is resolved on first use and kept, so the exported series set is the same as with lookups.
*/
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use gateway_core::filter::Transform;
use gateway_core::policy::{Partner, Route};
use gateway_core::RefusalKind;
use prometheus::{Histogram, IntCounter};

use super::{UpstreamErrorKind, UNKNOWN};

/// The statuses whose `requests_total` series a route keeps a handle for: what partners
/// commonly answer and what the gateway itself answers. Any other status is looked up.
const STATUSES: [u16; 21] = [
    200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 431, 451, 500, 502,
    503, 504,
];

/// A series resolved once, on the first count or when the policy is loaded.
pub(super) type Cell<T> = OnceLock<T>;

/// Every partner's handles, by partner id; kept with the policy they were resolved for.
#[derive(Default)]
pub struct PolicySeries {
    partners: HashMap<String, Arc<PartnerSeries>>,
}

impl PolicySeries {
    pub(super) fn insert(&mut self, id: &str, partner: PartnerSeries) {
        self.partners.insert(id.to_string(), Arc::new(partner));
    }

    /// The handles of the partner called `id`, when this policy has it.
    pub fn partner(&self, id: &str) -> Option<Arc<PartnerSeries>> {
        self.partners.get(id).cloned()
    }
}

/// One partner's handles: by refusal reason, by upstream error kind, and per route (in the
/// policy's route order).
pub struct PartnerSeries {
    pub(super) refused: [Cell<IntCounter>; RefusalKind::ALL.len()],
    pub(super) upstream_errors: [Cell<IntCounter>; UpstreamErrorKind::ALL.len()],
    pub(super) routes: Vec<RouteSeries>,
}

impl PartnerSeries {
    pub(super) fn new(partner: &Partner) -> PartnerSeries {
        PartnerSeries {
            refused: Default::default(),
            upstream_errors: Default::default(),
            routes: partner.routes.iter().map(RouteSeries::new).collect(),
        }
    }

    pub(super) fn refused(&self, kind: RefusalKind) -> Option<&Cell<IntCounter>> {
        let slot = RefusalKind::ALL.iter().position(|k| *k == kind)?;
        self.refused.get(slot)
    }

    pub(super) fn upstream_error(&self, kind: UpstreamErrorKind) -> Option<&Cell<IntCounter>> {
        let slot = UpstreamErrorKind::ALL.iter().position(|k| *k == kind)?;
        self.upstream_errors.get(slot)
    }
}

/// One route's handles.
pub struct RouteSeries {
    /// `requests_total` by status, for [`STATUSES`].
    requests: [Cell<IntCounter>; STATUSES.len()],
    pub(super) request_duration: Cell<Histogram>,
    pub(super) filter_duration: Cell<Histogram>,
    pub(super) fields_removed: Cell<IntCounter>,
    pub(super) records_forwarded: Cell<IntCounter>,
    pub(super) records_dropped: Cell<IntCounter>,
    pub(super) unknown_fields: Cell<IntCounter>,
    /// `fields_transformed_total` by transform, in [`Transform::ALL`] order.
    pub(super) fields_transformed: [Cell<IntCounter>; Transform::ALL.len()],
    /// `fields_disclosed_total` per category: [`super::UNCATEGORIZED`] first, then the
    /// route's categories in field order without repeats (`names` holds their labels).
    pub(super) disclosed: Vec<Cell<IntCounter>>,
    pub(super) disclosed_names: Vec<String>,
    /// For each of the route's fields, its slot in `disclosed`; `None` for the second entry of
    /// a path both allowed and transformed (one field, counted once: see `Route::matched_fields`).
    pub(super) field_category: Vec<Option<usize>>,
}

impl RouteSeries {
    fn new(route: &Route) -> RouteSeries {
        let mut names = vec![super::UNCATEGORIZED.to_string()];
        let field_category = route
            .fields
            .iter()
            .map(|field| {
                if field.repeat {
                    return None;
                }
                let name = field.category_label();
                Some(match names.iter().position(|n| n == name) {
                    Some(slot) => slot,
                    None => {
                        names.push(name.to_string());
                        names.len() - 1
                    }
                })
            })
            .collect();
        RouteSeries {
            requests: Default::default(),
            request_duration: Cell::new(),
            filter_duration: Cell::new(),
            fields_removed: Cell::new(),
            records_forwarded: Cell::new(),
            records_dropped: Cell::new(),
            unknown_fields: Cell::new(),
            fields_transformed: Default::default(),
            disclosed: names.iter().map(|_| Cell::new()).collect(),
            disclosed_names: names,
            field_category,
        }
    }

    pub(super) fn requests(&self, status: u16) -> Option<&Cell<IntCounter>> {
        let slot = STATUSES.iter().position(|s| *s == status)?;
        self.requests.get(slot)
    }
}

/// The labels of one request's series and, when the policy knows its partner (and route),
/// their handles. Built by the request context; [`super::Metrics`] counts through it.
#[derive(Clone, Copy)]
pub struct Series<'a> {
    pub partner: &'a str,
    pub route: &'a str,
    pub(super) of_partner: Option<&'a PartnerSeries>,
    pub(super) of_route: Option<&'a RouteSeries>,
}

impl Series<'static> {
    /// A request whose partner the policy does not know.
    pub const UNKNOWN: Series<'static> = Series::named(UNKNOWN, UNKNOWN);
}

impl<'a> Series<'a> {
    /// Labels without handles: every count is looked up.
    pub const fn named(partner: &'a str, route: &'a str) -> Series<'a> {
        Series {
            partner,
            route,
            of_partner: None,
            of_route: None,
        }
    }

    /// `partner`'s series (its `route_index`th route's, when the route is known), with the
    /// handles resolved for that partner when the policy was loaded.
    pub fn of(
        partner: &'a Partner,
        route_index: Option<usize>,
        handles: Option<&'a PartnerSeries>,
    ) -> Series<'a> {
        let route = route_index.and_then(|i| partner.routes.get(i));
        Series {
            partner: &partner.id,
            route: route.map_or(UNKNOWN, |r| r.template.as_str()),
            of_partner: handles,
            of_route: handles.and_then(|h| h.routes.get(route_index?)),
        }
    }
}
