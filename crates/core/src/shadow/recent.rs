//! The latest shadow differences, bounded: what `GET {admin}/shadow` lists. Entries hold labels
//! from the policy, the standard method name, the change, a field path in drift syntax and the
//! forms compared: never a value. The time is handed in (the core has no clock).
use std::collections::VecDeque;

use super::{Difference, ShadowChange};

/// One listed difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unix seconds.
    pub time: i64,
    pub partner: String,
    pub route: String,
    pub method: &'static str,
    pub change: ShadowChange,
    pub path: Option<String>,
    pub active: String,
    pub shadow: String,
}

/// A ring of the latest `capacity` differences, with counts of everything seen.
#[derive(Debug, Clone)]
pub struct Recent {
    capacity: usize,
    entries: VecDeque<Entry>,
    /// Every difference ever pushed (also those the ring no longer holds).
    pub total: u64,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            capacity,
            entries: VecDeque::with_capacity(capacity.min(1024)),
            total: 0,
        }
    }

    /// Notes the differences of one request; the oldest entries make room.
    pub fn push(
        &mut self,
        (partner, route, method): (&str, &str, &'static str),
        differences: &[Difference],
        time: i64,
    ) {
        for d in differences {
            self.total += 1;
            if self.capacity == 0 {
                continue;
            }
            if self.entries.len() == self.capacity {
                self.entries.pop_front();
            }
            self.entries.push_back(Entry {
                time,
                partner: partner.to_string(),
                route: route.to_string(),
                method,
                change: d.change,
                path: d.path.clone(),
                active: d.active.clone(),
                shadow: d.shadow.clone(),
            });
        }
    }

    /// Newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
