//! Streamed (NDJSON) bodies cut into chunks anywhere: property tests.
//!
//! - `splitter_agrees_with_the_copying_splitter`: the line splitter hands lines out in place
//!   and copies only a line spanning chunks; it must give the same lines, line numbers and
//!   refusals (messages included) as the straightforward splitter that appends every chunk to
//!   one buffer ([`Copying`], kept here as the model), for random bodies of records, `\r`,
//!   `\n`, NULs, BOMs, blanks and long runs, random limits and random cuts.
//! - `splitter_gives_the_same_lines_whole_or_cut`: the same body whole or cut gives the same
//!   lines and a refusal of the same kind for the same line.
//! - `stream_decides_the_same_whole_or_cut_with_or_without_subjects`: whole lines decided by
//!   the route: the same bytes forwarded, the same counts and drift, no opted-out customer's
//!   line forwarded, and the subject ids of forwarded records named exactly when asked for.
//! - `stream_refuses_the_same_whole_or_cut`: bodies with framing troubles (lone `\r`, NUL, BOM,
//!   two records on a line) are decided the same whole or cut; no opted-out line goes out.
//! - `drift_counts_match_a_count_by_hand`: a body's unknown members (none, one, two, or
//!   hundreds, repeated or not, some under a `*` path first) are counted and listed as counted
//!   by hand.
use std::collections::BTreeMap;
use std::path::PathBuf;

use gateway_core::drift::MAX_PATHS_PER_REQUEST;
use gateway_core::filter::{filter, FieldPath, FilterOptions, FilterProgram, FilterSpec, Report};
use gateway_core::optout::{OptOutSet, Scope};
use gateway_core::plan::stream::{EachLine, LineSplitter, NdjsonStream};
use gateway_core::plan::{resolve, OptOuts};
use gateway_core::policy::{load, Policy, PolicySource, SourceFile};
use gateway_core::{Refusal, RefusalKind};
use proptest::prelude::*;

/// The line splitter as it was before lines were handed out in place: every chunk is
/// appended to one buffer and lines are cut from there. Kept as the model of the rules.
struct Copying {
    buf: Vec<u8>,
    start: usize,
    max_line: usize,
    lines: u64,
}

impl Copying {
    fn new(max_line: usize) -> Copying {
        Copying {
            buf: Vec::new(),
            start: 0,
            max_line,
            lines: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8], each: &mut EachLine<'_>) -> Result<(), Refusal> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let scan_from = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut from = scan_from;
        while let Some(i) = self.buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + i;
            self.lines += 1;
            let line = &self.buf[self.start..end];
            let len = line.strip_suffix(b"\r").unwrap_or(line).len();
            if len > self.max_line {
                return Err(Refusal::new(
                    RefusalKind::BodyTooLarge,
                    format!(
                        "line {}: {len} bytes is over the limit of {} bytes per line",
                        self.lines, self.max_line
                    ),
                ));
            }
            each(self.lines, line)?;
            self.start = end + 1;
            from = end + 1;
        }
        let pending = self.buf.len() - self.start;
        let cr = self.buf.last() == Some(&b'\r');
        if pending > self.max_line + usize::from(cr) {
            return Err(Refusal::new(
                RefusalKind::BodyTooLarge,
                format!(
                    "line {}: over the limit of {} bytes per line",
                    self.lines + 1,
                    self.max_line
                ),
            ));
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    fn finish(&mut self, each: &mut EachLine<'_>) -> Result<(), Refusal> {
        if self.start >= self.buf.len() {
            return Ok(());
        }
        self.lines += 1;
        let line = std::mem::take(&mut self.buf);
        self.start = 0;
        each(self.lines, &line[..])
    }
}

/// Either splitter, fed the same way the proxy feeds one: chunk after chunk until a refusal,
/// then the end of the body.
trait Splitter {
    fn feed(&mut self, chunk: &[u8], each: &mut EachLine<'_>) -> Result<(), Refusal>;
    fn finish(&mut self, each: &mut EachLine<'_>) -> Result<(), Refusal>;
}

impl Splitter for Copying {
    fn feed(&mut self, chunk: &[u8], each: &mut EachLine<'_>) -> Result<(), Refusal> {
        Copying::feed(self, chunk, each)
    }
    fn finish(&mut self, each: &mut EachLine<'_>) -> Result<(), Refusal> {
        Copying::finish(self, each)
    }
}

impl Splitter for LineSplitter {
    fn feed(&mut self, chunk: &[u8], each: &mut EachLine<'_>) -> Result<(), Refusal> {
        LineSplitter::feed(self, chunk, each)
    }
    fn finish(&mut self, each: &mut EachLine<'_>) -> Result<(), Refusal> {
        LineSplitter::finish(self, each)
    }
}

/// Feeds `chunks` then the end; `each` as given. The refusal that stopped it, if any.
fn drive(
    splitter: &mut dyn Splitter,
    chunks: &[&[u8]],
    each: &mut EachLine<'_>,
) -> Option<Refusal> {
    for chunk in chunks {
        if let Err(r) = splitter.feed(chunk, each) {
            return Some(r);
        }
    }
    splitter.finish(each).err()
}

/// The lines handed out (number and bytes) and the refusal. A line holding a NUL is refused
/// by the callback (as the JSON scanner would), so that refusals from `each` are covered.
fn lines_of(
    splitter: &mut dyn Splitter,
    chunks: &[&[u8]],
) -> (Vec<(u64, Vec<u8>)>, Option<Refusal>) {
    let mut lines = Vec::new();
    let refusal = drive(splitter, chunks, &mut |n, line| {
        lines.push((n, line.to_vec()));
        if line.contains(&0) {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                format!("line {n}: a NUL"),
            ));
        }
        Ok(())
    });
    (lines, refusal)
}

/// `body` cut at `cuts` (positions, any order, duplicates give empty chunks).
fn cut<'b>(body: &'b [u8], cuts: &[usize]) -> Vec<&'b [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for a in at {
        chunks.push(&body[from..a]);
        from = a;
    }
    chunks.push(&body[from..]);
    chunks
}

/// Bytes a streamed body is made of, framing troubles included.
const PIECES: &[&[u8]] = &[
    b"{\"order_id\":1}",
    b"{\"customer_id\":\"c-1\",\"city\":\"x\"}",
    b"{\"customer_id\":\"c-out\",\"city\":\"y\"}",
    b"{\"customer_id\":\"c-2\",\"zz\":[1]}",
    b"\n",
    b"\n",
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\t",
    b"\0",
    b"\xef\xbb\xbf",
    b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    b"abcd",
    b"a",
];

fn raw_body() -> impl Strategy<Value = Vec<u8>> {
    let piece = proptest::sample::select(PIECES);
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(any::<usize>(), 0..12)
}

/// A line limit near the length of one of the body's lines (`pick`, `delta` - 1), where the
/// off-by-one mistakes are; or any small one.
fn limit_for(body: &[u8], pick: usize, delta: usize) -> usize {
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let line = lines[pick % lines.len()];
    let len = if pick.is_multiple_of(5) {
        pick % 60
    } else {
        line.len()
    };
    (len + delta).saturating_sub(1)
}

fn kind_and_line(r: &Refusal) -> (RefusalKind, String) {
    let line = r.message.split(':').next().unwrap_or_default().to_string();
    (r.kind, line)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn splitter_agrees_with_the_copying_splitter(
        body in raw_body(),
        cuts in cuts(),
        pick in any::<usize>(),
        delta in 0usize..3,
    ) {
        let max_line = limit_for(&body, pick, delta);
        let chunks = cut(&body, &cuts);
        let (want, want_refusal) = lines_of(&mut Copying::new(max_line), &chunks);
        let (got, got_refusal) = lines_of(&mut LineSplitter::new(max_line), &chunks);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&got_refusal, &want_refusal);
        // Every line handed out is within the limit (one trailing `\r` not counted).
        for (_, line) in &got {
            let counted = line.strip_suffix(b"\r").unwrap_or(line);
            prop_assert!(counted.len() <= max_line, "{} bytes handed out", line.len());
        }
    }

    #[test]
    fn splitter_gives_the_same_lines_whole_or_cut(
        body in raw_body(),
        cuts in cuts(),
        pick in any::<usize>(),
        delta in 0usize..3,
    ) {
        let max_line = limit_for(&body, pick, delta);
        let (whole, whole_refusal) = lines_of(&mut LineSplitter::new(max_line), &[&body]);
        let (got, refusal) = lines_of(&mut LineSplitter::new(max_line), &cut(&body, &cuts));
        prop_assert_eq!(&got, &whole);
        prop_assert_eq!(refusal.as_ref().map(kind_and_line), whole_refusal.as_ref().map(kind_and_line));
        // Without a refusal, the lines are the body's pieces between `\n`s, numbered from 1
        // (nothing after a last `\n`).
        if refusal.is_none() {
            let mut pieces: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
            if pieces.last().is_some_and(|p| p.is_empty()) {
                pieces.pop();
            }
            let want: Vec<(u64, Vec<u8>)> =
                pieces.iter().enumerate().map(|(i, p)| (i as u64 + 1, p.to_vec())).collect();
            prop_assert_eq!(got, want);
        }
    }
}

/// A line at exactly the limit passes, one byte more is refused, however the body is cut, and
/// the refusal names the right line.
#[test]
fn a_line_at_the_limit_passes_and_one_over_is_refused_at_every_cut() {
    let max = 16;
    let exact = "a".repeat(max);
    let over = "a".repeat(max + 1);
    for (body, refused_line) in [
        (format!("x\n{exact}\n"), None),
        (format!("x\n{exact}\r\n"), None),
        (format!("x\n{exact}"), None),
        (format!("x\n{exact}\r"), None),
        (format!("x\n\n{over}\n"), Some("line 3")),
        (format!("x\n\n{over}"), Some("line 3")),
        (format!("x\n{exact}\r\r\n"), Some("line 2")),
        (format!("x\n{exact}\rb"), Some("line 2")),
        (format!("{exact}\n{over}\r\n{exact}\n"), Some("line 2")),
    ] {
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let chunks = cut(body.as_bytes(), &[a, b]);
                let (lines, refusal) = lines_of(&mut LineSplitter::new(max), &chunks);
                let (want, want_refusal) = lines_of(&mut Copying::new(max), &chunks);
                assert_eq!(lines, want, "{body:?} cut at {a}, {b}");
                assert_eq!(refusal, want_refusal, "{body:?} cut at {a}, {b}");
                match refused_line {
                    None => assert_eq!(refusal, None, "{body:?} cut at {a}, {b}"),
                    Some(line) => {
                        let r =
                            refusal.unwrap_or_else(|| panic!("{body:?} cut at {a}, {b} passed"));
                        assert_eq!(r.code(), "body_too_large", "{body:?}");
                        assert!(
                            r.message.starts_with(&format!("{line}:")),
                            "{body:?} cut at {a}, {b}: {r}"
                        );
                    }
                }
            }
        }
    }
}

const GATEWAY: &str = "\
optouts: { path: data/optouts }
callers: { allow_unauthenticated: true }
signing: { disabled: true }
limits: { max_body_bytes: 4096, max_depth: 6 }
";

const ADS: &str = "\
kind: business_partner
purpose: advertising
upstream: http://127.0.0.1:9002
allowed_callers: [marketing]
routes:
  - path: /v1/customers
    methods: [POST]
    stream: ndjson
    subject: customer_id
    allow: [customer_id, city, 'items[*].sku']
";

fn policy() -> Policy {
    let file = |name: &str, text: &str| SourceFile {
        path: format!("policy/{name}"),
        text: text.to_string(),
    };
    let source = PolicySource {
        dir: PathBuf::from("policy"),
        gateway: file("gateway.yaml", GATEWAY),
        partners: vec![file("partners/ads.yaml", ADS)],
    };
    let env: BTreeMap<String, String> = BTreeMap::new();
    match load(&source, Some(&env)) {
        Ok(loaded) => loaded.policy,
        Err(errors) => panic!("test policy does not load: {errors:?}"),
    }
}

/// One generated record: its customer, whether it holds a city, its unknown members and items.
#[derive(Debug, Clone)]
struct Record {
    customer: usize,
    city: bool,
    unknown: Vec<usize>,
    items: Vec<Vec<usize>>,
}

const CUSTOMERS: &[&str] = &["c-1", "c-2", "c-out", "C-3", "c-out-not"];

impl Record {
    fn json(&self) -> String {
        let mut members = vec![format!("\"customer_id\":\"{}\"", CUSTOMERS[self.customer])];
        if self.city {
            members.push("\"city\":\"Ulm\"".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for u in &self.unknown {
            if seen.insert(*u) {
                members.push(format!("\"u{u}\":{u}"));
            }
        }
        if !self.items.is_empty() {
            let items: Vec<String> = self
                .items
                .iter()
                .map(|names| {
                    let mut m = vec!["\"sku\":\"s\"".to_string()];
                    let mut seen = std::collections::BTreeSet::new();
                    for n in names {
                        if seen.insert(*n) {
                            m.push(format!("\"x{n}\":[{n}]"));
                        }
                    }
                    format!("{{{}}}", m.join(","))
                })
                .collect();
            members.push(format!("\"items\":[{}]", items.join(",")));
        }
        format!("{{{}}}", members.join(","))
    }
}

fn record() -> impl Strategy<Value = Record> {
    (
        0..CUSTOMERS.len(),
        any::<bool>(),
        proptest::collection::vec(0usize..6, 0..4),
        proptest::collection::vec(proptest::collection::vec(0usize..5, 0..4), 0..4),
    )
        .prop_map(|(customer, city, unknown, items)| Record {
            customer,
            city,
            unknown,
            items,
        })
}

/// Records with blank lines and CRLF between them, and a last line with or without `\n`.
fn ndjson() -> impl Strategy<Value = (Vec<Record>, Vec<u8>)> {
    let sep = proptest::sample::select(&["\n", "\r\n", "\n\n", "\n \t\n", "\r\n\r\n"][..]);
    (
        proptest::collection::vec((record(), sep), 0..12),
        any::<bool>(),
    )
        .prop_map(|(records, last_newline)| {
            let mut body = String::new();
            let n = records.len();
            for (i, (r, sep)) in records.iter().enumerate() {
                body.push_str(&r.json());
                if i + 1 < n || last_newline {
                    body.push_str(sep);
                }
            }
            (
                records.into_iter().map(|(r, _)| r).collect(),
                body.into_bytes(),
            )
        })
}

/// The bytes forwarded, the summed report, the subject ids each forwarded line's report named,
/// and the refusal.
fn decide_all(
    policy: &Policy,
    chunks: &[&[u8]],
    optouts: OptOuts<'_>,
    subjects: bool,
) -> (Vec<u8>, Report, Vec<String>, Option<Refusal>) {
    let target = resolve(&policy.partners, "POST", "/ads/v1/customers").unwrap();
    let limits = &policy.gateway.limits;
    let mut splitter = LineSplitter::new(limits.max_body_bytes);
    let mut stream = NdjsonStream::new(&target, limits, subjects);
    let mut out = Vec::new();
    let mut ids = Vec::new();
    let refusal = drive(&mut splitter, chunks, &mut |n, line| {
        stream
            .decide(optouts, n, line, &mut out, &mut |r| {
                ids.extend(r.subjects.iter().cloned())
            })
            .map(|_| ())
    });
    (out, stream.report, ids, refusal)
}

fn opted_out() -> OptOutSet {
    let mut set = OptOutSet::new();
    let scope = Scope::parse(Scope::PARTNER_SHARING).unwrap();
    set.insert("c-out", &[scope]).unwrap();
    set
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn stream_decides_the_same_whole_or_cut_with_or_without_subjects(
        (records, body) in ndjson(),
        cuts in cuts(),
    ) {
        let policy = policy();
        let set = opted_out();
        let optouts = OptOuts::Loaded(&set);
        let (out, report, ids, refusal) = decide_all(&policy, &[&body], optouts, true);
        prop_assert_eq!(&refusal, &None, "{}", String::from_utf8_lossy(&body));
        let chunks = cut(&body, &cuts);
        for subjects in [true, false] {
            let (o, r, i, f) = decide_all(&policy, &chunks, optouts, subjects);
            prop_assert_eq!(&o, &out);
            prop_assert_eq!(&f, &None);
            prop_assert_eq!(r.records_forwarded, report.records_forwarded);
            prop_assert_eq!(r.records_dropped, report.records_dropped);
            prop_assert_eq!(r.fields_removed, report.fields_removed);
            prop_assert_eq!(&r.matched, &report.matched);
            prop_assert_eq!(r.unknown_fields, report.unknown_fields);
            prop_assert_eq!(&r.unknown, &report.unknown);
            if subjects {
                prop_assert_eq!(&i, &ids);
            } else {
                prop_assert!(i.is_empty(), "ids named without a ledger: {i:?}");
            }
        }
        // What the records say: one line per record, the opted-out customer's dropped.
        let forwarded: Vec<&str> = records
            .iter()
            .map(|r| CUSTOMERS[r.customer])
            .filter(|c| *c != "c-out")
            .collect();
        prop_assert_eq!(&ids, &forwarded);
        prop_assert_eq!(report.records_forwarded, forwarded.len() as u64);
        prop_assert_eq!(report.records_dropped, (records.len() - forwarded.len()) as u64);
        let text = String::from_utf8(out).unwrap();
        prop_assert_eq!(text.lines().count(), forwarded.len());
        prop_assert!(!text.contains("\"c-out\""), "an opted-out customer's line went out: {text}");
        for (line, id) in text.lines().zip(&forwarded) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            prop_assert_eq!(value["customer_id"].as_str(), Some(*id));
        }
        // Drift by hand: every unknown member of every record, in order of first sight (a line
        // dropped for its opt-out counts too, as a dropped record of a whole body does).
        let mut by_hand: Vec<(String, u64)> = Vec::new();
        let mut note = |path: String| match by_hand.iter_mut().find(|(p, _)| *p == path) {
            Some((_, n)) => *n += 1,
            None => by_hand.push((path, 1)),
        };
        for r in &records {
            let mut seen = std::collections::BTreeSet::new();
            for u in r.unknown.iter().filter(|u| seen.insert(**u)) {
                note(format!("u{u}"));
            }
            for names in &r.items {
                let mut seen = std::collections::BTreeSet::new();
                for n in names.iter().filter(|n| seen.insert(**n)) {
                    note(format!("items[*].x{n}"));
                }
            }
        }
        let total: u64 = by_hand.iter().map(|(_, n)| n).sum();
        prop_assert_eq!(report.unknown_fields, total);
        let listed: Vec<(String, u64)> = report.unknown.iter().map(|f| (f.path.clone(), f.count)).collect();
        prop_assert_eq!(listed, by_hand);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Bodies with framing troubles (lone `\r`, NUL, BOM, two records on a line, blanks):
    /// decided the same whole or cut, and an opted-out customer's line never goes out.
    #[test]
    fn stream_refuses_the_same_whole_or_cut(body in raw_body(), cuts in cuts()) {
        let policy = policy();
        let set = opted_out();
        let optouts = OptOuts::Loaded(&set);
        let (out, report, ids, refusal) = decide_all(&policy, &[&body], optouts, true);
        let chunks = cut(&body, &cuts);
        for subjects in [true, false] {
            let (o, r, i, f) = decide_all(&policy, &chunks, optouts, subjects);
            prop_assert_eq!(&o, &out);
            prop_assert_eq!(&f, &refusal);
            prop_assert_eq!(r.records_forwarded, report.records_forwarded);
            prop_assert_eq!(r.records_dropped, report.records_dropped);
            prop_assert_eq!(r.unknown_fields, report.unknown_fields);
            prop_assert_eq!(&r.unknown, &report.unknown);
            prop_assert_eq!(i.len(), if subjects { ids.len() } else { 0 });
        }
        let text = String::from_utf8_lossy(&out);
        prop_assert!(!text.contains("c-out"), "an opted-out customer's line went out: {text}");
        prop_assert_eq!(ids.len() as u64, report.records_forwarded);
    }
}

/// The unknown members of one JSON body with records under `items`: first per member of
/// `attrs` (an object under a `*` path, whose drift paths depend on its keys) the names given,
/// then `top` distinct names at the top, then per item the names given (names are distinct).
fn drift_body(attrs: &[Vec<usize>], top: usize, items: &[Vec<usize>]) -> String {
    let mut members = vec!["\"order_id\":1".to_string()];
    let attrs: Vec<String> = attrs
        .iter()
        .enumerate()
        .map(|(j, names)| {
            let mut m = vec!["\"k\":1".to_string()];
            m.extend(names.iter().map(|n| format!("\"z{n}\":true")));
            format!("\"a{j}\":{{{}}}", m.join(","))
        })
        .collect();
    members.push(format!("\"attrs\":{{{}}}", attrs.join(",")));
    members.extend((0..top).map(|i| format!("\"t{i}\":{{\"deep\":{i}}}")));
    let items: Vec<String> = items
        .iter()
        .map(|names| {
            let mut m = vec!["\"sku\":1".to_string()];
            m.extend(names.iter().map(|n| format!("\"n{n}\":\"v\"")));
            format!("{{{}}}", m.join(","))
        })
        .collect();
    members.push(format!("\"items\":[{}]", items.join(",")));
    format!("{{{}}}", members.join(","))
}

fn distinct_names(max: usize, pool: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::btree_set(0..pool, 0..max).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn drift_counts_match_a_count_by_hand(
        attrs in proptest::collection::vec(distinct_names(3, 4), 0..3),
        top in prop_oneof![0usize..3, 0usize..300],
        items in prop_oneof![
            proptest::collection::vec(distinct_names(3, 3), 0..3),
            proptest::collection::vec(distinct_names(40, 400), 0..12),
        ],
    ) {
        let mut spec = FilterSpec::default();
        for p in ["order_id", "items[*].sku", "attrs.*.k"] {
            spec.allow.push(FieldPath::parse(p).unwrap());
        }
        let program = FilterProgram::compile(&spec).unwrap();
        let options = FilterOptions {
            max_depth: 8,
            pseudonymize_key: None,
            optouts: None,
            detail: false,
            subjects: false,
        };
        let body = drift_body(&attrs, top, &items);
        let got = filter(&program, body.as_bytes(), &options).unwrap();
        let mut by_hand: Vec<(String, u64)> = Vec::new();
        for (j, names) in attrs.iter().enumerate() {
            by_hand.extend(names.iter().map(|n| (format!("attrs.a{j}.z{n}"), 1)));
        }
        by_hand.extend((0..top).map(|i| (format!("t{i}"), 1)));
        for names in &items {
            for n in names {
                let path = format!("items[*].n{n}");
                match by_hand.iter_mut().find(|(p, _)| *p == path) {
                    Some((_, c)) => *c += 1,
                    None => by_hand.push((path, 1)),
                }
            }
        }
        let total: u64 = by_hand.iter().map(|(_, n)| n).sum();
        prop_assert_eq!(got.report.unknown_fields, total);
        by_hand.truncate(MAX_PATHS_PER_REQUEST);
        let listed: Vec<(String, u64)> =
            got.report.unknown.iter().map(|f| (f.path.clone(), f.count)).collect();
        prop_assert_eq!(listed, by_hand);
    }
}
