//! Opt-out lookups allocate nothing on the request path: the set's own lookups, a route's
//! resolved view of it, the locked set the stores share, the lookup in every case of an ASCII
//! id, the lookups the filter makes for every record of a real body, and the whole filter with
//! opt-outs against without (no allocation more per record). Counted by `allocation-counter`,
//! which replaces the global allocator in this test binary only (a count, not a timing).
use std::sync::RwLock;

use gateway_core::filter::{filter, FieldPath, FilterOptions, FilterProgram, FilterSpec};
use gateway_core::filter::{OptOutLookup, Transform};
use gateway_core::optout::{id, OptOutSet, OptOutSource, Scope};

/// Customer ids of every shape the store accepts, some opted out and some not.
const OPTED_OUT: &[&str] = &["1001", "c-1000", "ana@example.com", "Zoë-42", "7"];
const NOT_OPTED_OUT: &[&str] = &["1002", "c-1001", "bob@example.com", "Zoe-42", "70", ""];

fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn set() -> OptOutSet {
    let mut set = OptOutSet::new();
    let sharing = scope(Scope::PARTNER_SHARING);
    for id in OPTED_OUT {
        set.insert(id, std::slice::from_ref(&sharing)).unwrap();
    }
    set.insert("1002", &[Scope::partner("someone-else")])
        .unwrap();
    set
}

/// Runs `work` and returns how many allocations it made on this thread.
fn allocations(work: impl FnOnce()) -> u64 {
    allocation_counter::measure(work).count_total
}

#[test]
fn the_counter_sees_allocations() {
    // Without it, a zero below could mean the counting allocator is not installed.
    assert!(allocations(|| drop(std::hint::black_box(vec![0u8; 64]))) >= 1);
}

#[test]
fn the_sets_lookups_allocate_nothing() {
    let set = set();
    let honoured = [scope(Scope::PARTNER_SHARING), Scope::partner("acme-ship")];
    let view = set.honouring(&honoured);
    let count = allocations(|| {
        for id in OPTED_OUT {
            assert!(set.is_opted_out(id, &honoured), "{id}");
            assert!(view.is_opted_out(id), "{id}");
        }
        for id in NOT_OPTED_OUT {
            assert!(!set.is_opted_out(id, &honoured), "{id}");
            assert!(!view.is_opted_out(id), "{id}");
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn the_locked_set_the_stores_share_allocates_nothing_per_record() {
    let shared = RwLock::new(set());
    let honoured = [scope(Scope::PARTNER_SHARING)];
    let count = allocations(|| {
        shared.with_lookup(&honoured, &mut |lookup: &dyn OptOutLookup| {
            for id in OPTED_OUT {
                assert!(lookup.is_opted_out(id), "{id}");
            }
            for id in NOT_OPTED_OUT {
                assert!(!lookup.is_opted_out(id), "{id}");
            }
        });
        for id in OPTED_OUT {
            assert!(OptOutSource::is_opted_out(&shared, id, &honoured), "{id}");
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn the_lookup_in_every_case_allocates_nothing_for_ascii_ids() {
    let set = set();
    let honoured = [scope(Scope::PARTNER_SHARING)];
    let view = set.honouring(&honoured);
    let count = allocations(|| {
        for id in ["C-1000", "ANA@EXAMPLE.COM", "Ana@Example.com"] {
            assert!(id::is_opted_out(&view, id), "{id}");
        }
        for id in ["C-1001", "Bob@Example.com", "zoe-42", "70"] {
            assert!(!id::is_opted_out(&view, id), "{id}");
        }
    });
    assert_eq!(count, 0);
}

/// Wraps the filter's lookup and counts the allocations of every lookup it makes.
struct Counted<'a> {
    inner: &'a dyn OptOutLookup,
    lookups: std::cell::Cell<u64>,
    allocations: std::cell::Cell<u64>,
}

impl OptOutLookup for Counted<'_> {
    fn is_opted_out(&self, subject: &str) -> bool {
        let mut answer = false;
        let n = allocations(|| answer = self.inner.is_opted_out(subject));
        self.lookups.set(self.lookups.get() + 1);
        self.allocations.set(self.allocations.get() + n);
        answer
    }
}

/// A route's program: shipment records, their subject `customer_id`.
fn shipments_program() -> FilterProgram {
    let path = |p: &str| FieldPath::parse(p).unwrap_or_else(|e| panic!("{e}"));
    let spec = FilterSpec {
        removes: Vec::new(),
        allow: vec![path("shipments[*].customer_id"), path("shipments[*].name")],
        transforms: vec![(path("shipments[*].card_number"), Transform::Last4)],
        records: Some(path("shipments[*]")),
        subject: Some("customer_id".into()),
    };
    FilterProgram::compile(&spec).unwrap()
}

/// A body of shipment records about `ids`: an id of digits is a JSON number, others strings.
fn shipments<S: AsRef<str>>(ids: impl Iterator<Item = S>) -> String {
    let records: Vec<String> = ids
        .map(|id| {
            let id = id.as_ref();
            let id = if id.bytes().all(|b| b.is_ascii_digit()) {
                id.to_string()
            } else {
                format!("{id:?}")
            };
            format!(r#"{{"customer_id":{id},"name":"N","card_number":"4111111111111111"}}"#)
        })
        .collect();
    format!(r#"{{"shipments":[{}]}}"#, records.join(","))
}

#[test]
fn the_filters_lookup_per_record_allocates_nothing() {
    let program = shipments_program();
    let ids: Vec<&str> = OPTED_OUT
        .iter()
        .chain(NOT_OPTED_OUT.iter().filter(|id| !id.is_empty()))
        .copied()
        .collect();
    let body = shipments(ids.iter());
    let shared = RwLock::new(set());
    let honoured = [scope(Scope::PARTNER_SHARING)];
    shared.with_lookup(&honoured, &mut |lookup: &dyn OptOutLookup| {
        let counted = Counted {
            inner: lookup,
            lookups: Default::default(),
            allocations: Default::default(),
        };
        let options = FilterOptions {
            max_depth: 64,
            pseudonymize_key: None,
            optouts: Some(&counted),
            detail: false,
            subjects: false,
        };
        let out = filter(&program, body.as_bytes(), &options).unwrap();
        assert_eq!(out.report.records_dropped, OPTED_OUT.len() as u64);
        // At least one lookup per record (an id with letters is also asked in its other case).
        assert!(counted.lookups.get() >= ids.len() as u64);
        assert_eq!(counted.allocations.get(), 0);
    });
}

#[test]
fn honouring_opt_outs_adds_no_allocation_per_record_to_the_filter() {
    // The whole filter, not only the lookups it asks: reading each record's subject and
    // looking it up in every case it has costs the same allocations for 1 record as for 120.
    let program = shipments_program();
    let shared = RwLock::new(set());
    let honoured = [scope(Scope::PARTNER_SHARING)];
    // No customer here opted out: every id is looked up as written and in its other cases.
    let ids = |n: usize| {
        (0..n).map(|i| match i % 4 {
            0 => format!("{}", 5000 + i),
            1 => format!("c-{i}"),
            2 => format!("Bob{i}@Example.com"),
            _ => format!("ZOE-{i}"),
        })
    };
    let mut extra = Vec::new();
    for n in [1, 120] {
        let body = shipments(ids(n));
        let run = |optouts: Option<&dyn OptOutLookup>| {
            let options = FilterOptions {
                max_depth: 64,
                pseudonymize_key: None,
                optouts,
                detail: false,
                subjects: false,
            };
            allocations(|| {
                let out = filter(&program, body.as_bytes(), &options).unwrap();
                assert_eq!(out.report.records_forwarded, n as u64);
            })
        };
        let without = run(None);
        let mut with = 0;
        shared.with_lookup(&honoured, &mut |lookup: &dyn OptOutLookup| {
            with = run(Some(lookup));
        });
        extra.push(
            with.checked_sub(without)
                .expect("fewer allocations with opt-outs"),
        );
    }
    assert_eq!(
        extra[0], extra[1],
        "allocations per request with opt-outs, 1 vs 120 records"
    );
}
