//! `who-received`: the disclosures that carried one customer's record, found by the keyed
//! hash of their id. Lines are fed in chain order; a line that cannot hold the hash is skipped
//! with a substring test before any parsing, so a year of ledgers streams quickly. A streamed
//! request's subjects are in its outcome line: its record is held until that line comes.
use std::collections::HashMap;

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

/// Collects the disclosures of one subject hash.
pub struct WhoReceived {
    subject: String,
    needle: String,
    since: Option<String>,
    until: Option<String>,
    found: Vec<Received>,
    by_seq: HashMap<u64, usize>,
    /// Records of streamed requests in range, waiting for their outcome line.
    streams: HashMap<u64, Disclosure>,
}

impl WhoReceived {
    /// `subject` is the keyed hash ([`super::subject_hash`]); `since`/`until` are RFC 3339
    /// UTC bounds in the ledger's own format (compared as text).
    pub fn new(subject: &str, since: Option<String>, until: Option<String>) -> WhoReceived {
        WhoReceived {
            subject: subject.to_string(),
            needle: format!("\"{subject}\""),
            since,
            until,
            found: Vec::new(),
            by_seq: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// Looks at one line (without its newline). Lines that do not parse are skipped:
    /// `audit verify` is the judge of integrity.
    pub fn line(&mut self, bytes: &[u8]) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        if text.contains(&self.needle) {
            match LedgerLine::parse(bytes) {
                Ok(LedgerLine::Record(r)) => {
                    let d = r.disclosure;
                    if self.in_range(&d) && d.subjects.contains(&self.subject) {
                        self.by_seq.insert(r.seq, self.found.len());
                        self.found.push(Received {
                            seq: r.seq,
                            disclosure: d,
                            status: None,
                        });
                    }
                }
                Ok(LedgerLine::Outcome(o)) => self.stream_outcome(&o),
                _ => {}
            }
        } else if text.contains("\"stream\":true") {
            if let Ok(LedgerLine::Record(r)) = LedgerLine::parse(bytes) {
                if r.disclosure.stream && self.in_range(&r.disclosure) {
                    self.streams.insert(r.seq, r.disclosure);
                }
            }
        } else if !self.by_seq.is_empty() && text.contains("\"outcome_of\":") {
            if let Ok(LedgerLine::Outcome(o)) = LedgerLine::parse(bytes) {
                if let Some(&i) = self.by_seq.get(&o.outcome_of) {
                    self.found[i].status = Some(o.status);
                }
            }
        }
    }

    fn in_range(&self, d: &Disclosure) -> bool {
        self.since.as_ref().is_none_or(|s| d.time >= *s)
            && self.until.as_ref().is_none_or(|u| d.time < *u)
    }

    /// The outcome of a streamed request that carried the subject.
    fn stream_outcome(&mut self, o: &super::Outcome) {
        let carried = o
            .stream
            .as_ref()
            .is_some_and(|s| s.subjects.contains(&self.subject));
        if let (true, Some(mut d)) = (carried, self.streams.remove(&o.outcome_of)) {
            d.complete(o);
            self.found.push(Received {
                seq: o.outcome_of,
                disclosure: d,
                status: Some(o.status),
            });
        }
    }

    /// The disclosures found, in ledger order. Each names only this customer among its
    /// subjects: the keyed ids of the others in the same request are no part of one
    /// customer's answer.
    pub fn finish(self) -> Vec<Received> {
        let subject = self.subject;
        self.found
            .into_iter()
            .map(|mut r| {
                r.disclosure.subjects = vec![subject.clone()];
                r
            })
            .collect()
    }
}
