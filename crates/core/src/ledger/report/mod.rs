/*!
`audit report`: records of processing per recipient, in the spirit of GDPR Art. 30, built
from the policy (what each partner is declared to receive) and the ledger (what it did
receive). Record lines are fed in chain order; memory grows with the number of partners,
routes and categories, never with the ledger. Rendered as Markdown, JSON or one
self-contained HTML page with an SVG data map ([`html`]).
*/
pub mod html;
mod markdown;

pub use markdown::markdown;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::line::LedgerLine;
use crate::policy::{categories, Policy};

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessingReport {
    pub since: Option<String>,
    pub until: Option<String>,
    /// Time of the first and last record counted.
    pub first_record: Option<String>,
    pub last_record: Option<String>,
    pub policy_version: String,
    pub requests: u64,
    pub records_forwarded: u64,
    pub records_dropped: u64,
    /// Streamed requests in the period without an outcome line (cut off, or still under way):
    /// counted as requests, but what they forwarded is not known here.
    pub streams_without_outcome: u64,
    pub recipients: Vec<Recipient>,
}

/// One partner: what the policy declares and what the ledger shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub partner: String,
    pub kind: String,
    pub purpose: String,
    #[serde(rename = "use")]
    pub use_: String,
    /// Government partners: the header that must carry the legal basis.
    pub legal_basis_header: Option<String>,
    /// The legal-basis references seen in the ledger.
    pub legal_bases: Vec<String>,
    /// Whether the current policy still has this partner.
    pub in_policy: bool,
    pub declared_categories: Vec<String>,
    pub disclosed_categories: Vec<CategoryUse>,
    /// Declared in the policy, never disclosed in the period.
    pub declared_unused: Vec<String>,
    /// Disclosed, but not declared by the current policy (flag these).
    pub disclosed_undeclared: Vec<String>,
    pub requests: u64,
    pub records_forwarded: u64,
    pub records_dropped: u64,
    pub routes: Vec<RouteUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryUse {
    pub category: String,
    /// The fideslang display name, when the taxonomy knows it.
    pub name: Option<String>,
    /// Requests that disclosed it.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteUse {
    pub route: String,
    pub requests: u64,
    pub records_forwarded: u64,
    pub records_dropped: u64,
}

#[derive(Default)]
struct Usage {
    kind: String,
    purpose: String,
    use_: String,
    legal_bases: BTreeSet<String>,
    requests: u64,
    records_forwarded: u64,
    records_dropped: u64,
    categories: BTreeMap<String, u64>,
    /// Per route template: requests, records forwarded, records dropped.
    routes: BTreeMap<String, [u64; 3]>,
}

/// Sums record lines into a [`ProcessingReport`].
pub struct ReportBuilder {
    since: Option<String>,
    until: Option<String>,
    first: Option<String>,
    last: Option<String>,
    partners: BTreeMap<String, Usage>,
    /// Records of streamed requests waiting for their outcome line.
    streams: std::collections::HashMap<u64, super::Disclosure>,
    /// Per partner and route template, the paths the policy gives no category: a record
    /// that discloses one of them discloses an `uncategorized` field, as the metrics say.
    uncategorized: BTreeMap<(String, String), BTreeSet<String>>,
}

impl ReportBuilder {
    /// `since`/`until`: RFC 3339 UTC bounds in the ledger's format, both included.
    /// `policy` is the one the report is made against (see [`Self::finish`]).
    pub fn new(policy: &Policy, since: Option<String>, until: Option<String>) -> ReportBuilder {
        let mut uncategorized: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (id, p) in &policy.partners {
            for r in &p.routes {
                let paths = r.fields.iter().filter(|f| f.category.is_none());
                uncategorized
                    .entry((id.clone(), r.template.clone()))
                    .or_default()
                    .extend(paths.map(|f| f.path.clone()));
            }
        }
        ReportBuilder {
            since,
            until,
            first: None,
            last: None,
            partners: BTreeMap::new(),
            streams: std::collections::HashMap::new(),
            uncategorized,
        }
    }

    /// Counts one line (without its newline); checkpoints and unparseable lines are skipped
    /// (`audit verify` judges integrity). A streamed request counts once its outcome line
    /// says what it forwarded (or, without one, as its record says, at [`Self::finish`]).
    pub fn line(&mut self, bytes: &[u8]) {
        match LedgerLine::parse(bytes) {
            Ok(LedgerLine::Record(r)) if r.disclosure.stream => {
                self.streams.insert(r.seq, r.disclosure);
            }
            Ok(LedgerLine::Record(r)) => self.count(r.disclosure),
            Ok(LedgerLine::Outcome(o)) => {
                if let Some(mut d) = self.streams.remove(&o.outcome_of) {
                    d.complete(&o);
                    self.count(d);
                }
            }
            _ => {}
        }
    }

    fn in_period(&self, d: &super::Disclosure) -> bool {
        d.within(self.since.as_ref(), self.until.as_ref())
    }

    fn count(&mut self, d: super::Disclosure) {
        if !self.in_period(&d) {
            return;
        }
        if self.first.as_ref().is_none_or(|f| d.time < *f) {
            self.first = Some(d.time.clone());
        }
        if self.last.as_ref().is_none_or(|l| d.time > *l) {
            self.last = Some(d.time.clone());
        }
        let key = (d.partner, d.route);
        // A record whose fields carry no category at all disclosed uncategorized fields, under
        // any policy (with some categories, which fields had one is known only for the paths
        // the route still names as uncategorized).
        let uncategorized = (!d.fields.is_empty() && d.categories.is_empty())
            || self
                .uncategorized
                .get(&key)
                .is_some_and(|paths| d.fields.iter().any(|f| paths.contains(f)));
        let (partner, route) = key;
        let u = self.partners.entry(partner).or_default();
        u.kind = d.kind;
        u.purpose = d.purpose;
        u.use_ = d.use_;
        u.legal_bases.extend(d.legal_basis);
        u.requests += 1;
        u.records_forwarded += d.records_forwarded;
        u.records_dropped += d.records_dropped;
        for c in d.categories {
            *u.categories.entry(c).or_default() += 1;
        }
        if uncategorized {
            *u.categories
                .entry(categories::UNCATEGORIZED.to_string())
                .or_default() += 1;
        }
        let route = u.routes.entry(route).or_default();
        route[0] += 1;
        route[1] += d.records_forwarded;
        route[2] += d.records_dropped;
    }

    /// The report: every partner of `policy` (with or without traffic), then partners seen
    /// only in the ledger.
    pub fn finish(mut self, policy: &Policy) -> ProcessingReport {
        let mut pending: Vec<_> = std::mem::take(&mut self.streams).into_iter().collect();
        pending.sort_by_key(|(seq, _)| *seq);
        let mut streams_without_outcome = 0;
        for (_, d) in pending {
            streams_without_outcome += u64::from(self.in_period(&d));
            self.count(d);
        }
        let mut partners = self.partners;
        let mut recipients = Vec::new();
        let mut ids: Vec<&String> = policy.partners.keys().collect();
        ids.sort();
        for id in ids {
            let p = &policy.partners[id];
            let declared: BTreeSet<String> = p
                .routes
                .iter()
                .flat_map(|r| r.fields.iter().filter_map(|f| f.category.clone()))
                .collect();
            let usage = partners.remove(id).unwrap_or_else(|| Usage {
                kind: p.kind.as_str().to_string(),
                purpose: p.purpose.clone(),
                use_: p.kind.data_use().to_string(),
                ..Usage::default()
            });
            let mut r = recipient(id.clone(), usage, declared, true);
            r.kind = p.kind.as_str().to_string();
            r.purpose = p.purpose.clone();
            r.use_ = p.kind.data_use().to_string();
            r.legal_basis_header = p.legal_basis_header.clone();
            recipients.push(r);
        }
        for (id, usage) in partners {
            recipients.push(recipient(id, usage, BTreeSet::new(), false));
        }
        ProcessingReport {
            since: self.since,
            until: self.until,
            first_record: self.first,
            last_record: self.last,
            policy_version: policy.version.clone(),
            requests: recipients.iter().map(|r| r.requests).sum(),
            records_forwarded: recipients.iter().map(|r| r.records_forwarded).sum(),
            records_dropped: recipients.iter().map(|r| r.records_dropped).sum(),
            streams_without_outcome,
            recipients,
        }
    }
}

/// The warning the readable reports give for streams without an outcome line.
fn incomplete_streams(n: u64) -> String {
    format!(
        "{n} streamed request(s) in the period have no outcome line (cut off, or still under way): they count as requests, but the records and fields they forwarded are not known here; `audit who-received` reads the customers their subjects lines name"
    )
}

fn recipient(partner: String, u: Usage, declared: BTreeSet<String>, in_policy: bool) -> Recipient {
    let disclosed: BTreeSet<&String> = u.categories.keys().collect();
    Recipient {
        declared_unused: declared
            .iter()
            .filter(|c| !disclosed.contains(c))
            .cloned()
            .collect(),
        disclosed_undeclared: disclosed
            .iter()
            .filter(|c| !declared.contains(**c))
            .map(|c| (*c).clone())
            .collect(),
        disclosed_categories: u
            .categories
            .iter()
            .map(|(c, n)| CategoryUse {
                category: c.clone(),
                name: categories::display_name(c).map(str::to_string),
                requests: *n,
            })
            .collect(),
        declared_categories: declared.into_iter().collect(),
        partner,
        kind: u.kind,
        purpose: u.purpose,
        use_: u.use_,
        legal_basis_header: None,
        legal_bases: u.legal_bases.into_iter().collect(),
        in_policy,
        requests: u.requests,
        records_forwarded: u.records_forwarded,
        records_dropped: u.records_dropped,
        routes: u
            .routes
            .into_iter()
            .map(
                |(route, [requests, records_forwarded, records_dropped])| RouteUse {
                    route,
                    requests,
                    records_forwarded,
                    records_dropped,
                },
            )
            .collect(),
    }
}

#[cfg(test)]
mod tests;
