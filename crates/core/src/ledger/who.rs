//! `who-received`: the disclosures that carried one customer's record, found by the keyed
//! hash of their id. Lines are fed in chain order; a line that cannot hold the hash is skipped
//! with a substring test before any parsing, so a year of ledgers streams quickly. A streamed
//! request's subjects are in its subjects lines and its outcome line: its record is held until
//! the outcome comes. A stream that never got one (the gateway was killed, its ledger broke, or
//! it is still under way) is found if one of its subjects lines names the customer, and is
//! otherwise counted among the disclosures that may have carried anyone.
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::line::{Disclosure, LedgerLine};

/// One disclosure that carried the customer's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Received {
    pub seq: u64,
    #[serde(flatten)]
    pub disclosure: Disclosure,
    /// The partner's status from the outcome line (`None` if none was written).
    pub status: Option<u16>,
}

/// Disclosures in the period that name no customer (a route without `subject`), per
/// recipient and route: they may have carried anyone's data, this customer's included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unattributed {
    pub partner: String,
    pub route: String,
    pub disclosures: u64,
}

/// Collects the disclosures of one customer, whose id may have been written in any of a few
/// forms (its keyed hashes: as asked, lowercase, uppercase).
pub struct WhoReceived {
    subjects: Vec<String>,
    needles: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    found: Vec<Received>,
    by_seq: HashMap<u64, usize>,
    /// Records of streamed requests in range, waiting for their outcome line.
    streams: HashMap<u64, Disclosure>,
    /// Of those, the ones a subjects line named customers for, with this customer's hashes
    /// among them (none when others only).
    named: HashMap<u64, Vec<String>>,
    unattributed: BTreeMap<(String, String), u64>,
}

impl WhoReceived {
    /// `subjects` are the keyed hashes ([`super::subject_hash`]) of the forms of one id;
    /// `since`/`until` are RFC 3339 UTC bounds in the ledger's own format (compared as text).
    pub fn new(subjects: &[String], since: Option<String>, until: Option<String>) -> WhoReceived {
        WhoReceived {
            subjects: subjects.to_vec(),
            needles: subjects.iter().map(|s| format!("\"{s}\"")).collect(),
            since,
            until,
            found: Vec::new(),
            by_seq: HashMap::new(),
            streams: HashMap::new(),
            named: HashMap::new(),
            unattributed: BTreeMap::new(),
        }
    }

    fn ours(&self, subjects: &[String]) -> bool {
        subjects.iter().any(|s| self.subjects.contains(s))
    }

    /// Looks at one line (without its newline). Lines that do not parse are skipped:
    /// `audit verify` is the judge of integrity.
    pub fn line(&mut self, bytes: &[u8]) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        if self.needles.iter().any(|n| text.contains(n.as_str())) {
            match LedgerLine::parse(bytes) {
                Ok(LedgerLine::Record(r)) if r.disclosure.stream => self.stream_record(*r),
                Ok(LedgerLine::Record(r)) => {
                    let d = r.disclosure;
                    if self.in_range(&d) && self.ours(&d.subjects) {
                        self.by_seq.insert(r.seq, self.found.len());
                        self.found.push(Received {
                            seq: r.seq,
                            disclosure: d,
                            status: None,
                        });
                    }
                }
                Ok(LedgerLine::Outcome(o)) => self.stream_outcome(&o),
                Ok(LedgerLine::Subjects(l)) => self.stream_subjects(&l),
                _ => {}
            }
        } else if text.contains("\"stream\":true") {
            if let Ok(LedgerLine::Record(r)) = LedgerLine::parse(bytes) {
                if r.disclosure.stream {
                    self.stream_record(*r);
                }
            }
        } else if text.contains("\"subjects\":[]") {
            match LedgerLine::parse(bytes) {
                Ok(LedgerLine::Record(r)) if self.in_range(&r.disclosure) => {
                    self.unattributed_one(&r.disclosure);
                }
                // A stream's subjects are in its outcome line.
                Ok(LedgerLine::Outcome(o)) => self.stream_outcome(&o),
                _ => {}
            }
        } else if !self.streams.is_empty() && text.contains("\"subjects_of\":") {
            if let Ok(LedgerLine::Subjects(l)) = LedgerLine::parse(bytes) {
                self.stream_subjects(&l);
            }
        } else if (!self.by_seq.is_empty() || !self.streams.is_empty())
            && text.contains("\"outcome_of\":")
        {
            if let Ok(LedgerLine::Outcome(o)) = LedgerLine::parse(bytes) {
                if let Some(&i) = self.by_seq.get(&o.outcome_of) {
                    self.found[i].status = Some(o.status);
                } else {
                    self.stream_outcome(&o);
                }
            }
        }
    }

    fn in_range(&self, d: &Disclosure) -> bool {
        d.within(self.since.as_ref(), self.until.as_ref())
    }

    /// Counts a disclosure without subjects. Even one whose records were all dropped may have
    /// carried a customer's data outside them: in a URL parameter the route does not type as a
    /// customer id (typed ones are among the subjects) or in fields beside the records.
    fn unattributed_one(&mut self, d: &Disclosure) {
        *self
            .unattributed
            .entry((d.partner.clone(), d.route.clone()))
            .or_default() += 1;
    }

    /// The record of a streamed request in range: held for its outcome. Its `subjects` are the
    /// customer ids its URL names (known before any line), noted as a subjects line's are.
    fn stream_record(&mut self, r: super::line::Record) {
        if !self.in_range(&r.disclosure) {
            return;
        }
        if !r.disclosure.subjects.is_empty() {
            let ours = r
                .disclosure
                .subjects
                .iter()
                .filter(|s| self.subjects.contains(s));
            let ours: Vec<String> = ours.cloned().collect();
            self.named.entry(r.seq).or_default().extend(ours);
        }
        self.streams.insert(r.seq, r.disclosure);
    }

    /// A subjects line of a stream under way: notes that the stream names customers, and
    /// which of them are this one.
    fn stream_subjects(&mut self, l: &super::SubjectsLine) {
        if !self.streams.contains_key(&l.subjects_of) {
            return;
        }
        let ours = l.subjects.iter().filter(|s| self.subjects.contains(s));
        let ours: Vec<String> = ours.cloned().collect();
        self.named.entry(l.subjects_of).or_default().extend(ours);
    }

    /// The outcome of a streamed request: it carried the subject (in the outcome or in one of
    /// the stream's subjects lines), or named nobody.
    fn stream_outcome(&mut self, o: &super::Outcome) {
        let Some(forwarded) = o.stream.as_ref() else {
            return;
        };
        let Some(mut d) = self.streams.remove(&o.outcome_of) else {
            return;
        };
        let named = self.named.remove(&o.outcome_of);
        let earlier = named.as_ref().is_some_and(|ours| !ours.is_empty());
        if named.is_none() && forwarded.subjects.is_empty() {
            self.unattributed_one(&d);
            return;
        }
        if !earlier && !self.ours(&forwarded.subjects) {
            return;
        }
        d.complete(o);
        d.subjects.extend(named.unwrap_or_default());
        self.found.push(Received {
            seq: o.outcome_of,
            disclosure: d,
            status: Some(o.status),
        });
    }

    /// The disclosures found, in ledger order, and those that name no customer. Each found
    /// one names only this customer's hashes among its subjects: the keyed ids of the others
    /// in the same request are no part of one customer's answer.
    pub fn finish(mut self) -> (Vec<Received>, Vec<Unattributed>) {
        // Streams without an outcome line (cut off, or still under way): found when a subjects
        // line names the customer; otherwise they may have carried anyone.
        let mut cut: Vec<(u64, Disclosure)> = self.streams.drain().collect();
        cut.sort_unstable_by_key(|(seq, _)| *seq);
        for (seq, mut disclosure) in cut {
            match self.named.remove(&seq).filter(|ours| !ours.is_empty()) {
                Some(ours) => {
                    disclosure.subjects = ours;
                    let status = None;
                    self.found.push(Received {
                        seq,
                        disclosure,
                        status,
                    });
                }
                None => self.unattributed_one(&disclosure),
            }
        }
        let subjects = self.subjects;
        let found = self
            .found
            .into_iter()
            .map(|mut r| {
                r.disclosure.subjects.retain(|s| subjects.contains(s));
                r.disclosure.subjects.sort_unstable();
                r.disclosure.subjects.dedup();
                r
            })
            .collect();
        let unattributed = self
            .unattributed
            .into_iter()
            .map(|((partner, route), disclosures)| Unattributed {
                partner,
                route,
                disclosures,
            })
            .collect();
        (found, unattributed)
    }
}
