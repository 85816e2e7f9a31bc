//! Fuzzing and property tests, on stable Rust with proptest's generators.
//!
//! - `filter_agrees_with_the_reference`: a differential fuzz target. Bodies come from the seed
//!   corpus (`tests/corpus/filter/`) and from generated JSON, are mutated byte-wise, and go
//!   through the real filter and the reference filter (`tests/reference/`) under random
//!   policies: both refuse, or both give the same document.
//! - `policy_loader_never_panics`: the policy loader on mutated partner files from
//!   `tests/corpus/policy/`: it loads or reports `FILE:LINE` errors, never panics, and loads the
//!   same text the same way twice.
//! - `no_key_outside_the_allow_list`: a property test: for random JSON and random allow-lists,
//!   no key outside the allow-list appears in the output and every allowed value appears
//!   unchanged or transformed as configured.
//!
//! The fuzz targets run for `FUZZ_SECONDS` each (default 2) with a random seed, printed on
//! failure; `FUZZ_SEED=<n>` replays one. Longer run:
//! `FUZZ_SECONDS=300 cargo test -p partner-gateway-core --test fuzz -- --nocapture`.
mod reference;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gateway_core::filter::{
    filter, FieldPath, FilterOptions, FilterProgram, FilterSpec, Transform,
};
use gateway_core::policy::{load, PolicySource, SourceFile};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reference::{Action, Rule, Seg};
use serde_json::Value;

const MAX_DEPTH: usize = 16;
const KEYS: &[&str] = &["a", "b", "c", "x"];

fn fuzz_budget() -> Duration {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

/// A runner with a fresh seed (or `FUZZ_SEED`), and the seed to print.
fn runner() -> (TestRunner, u64) {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    (TestRunner::new_with_rng(Config::default(), rng), seed)
}

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => proptest::sample::select(&["A", "a.b", "*", "é", "", "x]"][..]).prop_map(str::to_string),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9 ]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn rule(transforms: bool) -> impl Strategy<Value = Rule> {
    let seg = prop_oneof![
        5 => proptest::sample::select(KEYS).prop_map(|k| Seg::Member(k.to_string())),
        2 => Just(Seg::Any),
        2 => Just(Seg::Elements),
    ];
    let action = if transforms {
        prop_oneof![
            5 => Just(Action::Allow),
            2 => Just(Action::Subtree),
            1 => Just(Action::Mask),
            1 => Just(Action::Null),
            1 => Just(Action::Remove),
        ]
        .boxed()
    } else {
        prop_oneof![3 => Just(Action::Allow), 1 => Just(Action::Subtree)].boxed()
    };
    (proptest::collection::vec(seg, 1..4), action).prop_map(|(segs, action)| Rule { segs, action })
}

/// The rules as a filter spec, or `None` when a path does not parse.
fn spec_of(rules: &[Rule]) -> Option<FilterSpec> {
    let mut spec = FilterSpec::default();
    for r in rules {
        let path = FieldPath::parse(&r.text()).ok()?;
        match r.action {
            Action::Allow | Action::Subtree => spec.allow.push(path),
            Action::Mask => spec.transforms.push((path, Transform::Mask)),
            Action::Null => spec.transforms.push((path, Transform::Null)),
            Action::Remove => spec.removes.push(path),
        }
    }
    Some(spec)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, &'static [u8]),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"0",
        b"-",
        b"e9",
        b"null",
        b"\"a\":1,",
        b"\\u0000",
        b"\\ud800",
        b"\xff",
        b"\xef\xbb\xbf",
        b" ",
        b"\"a\"",
        b"{\"x\":[]}",
        b"1e400",
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), proptest::sample::select(TOKENS))
            .prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        let pos = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Flip(i, b) if len > 0 => bytes[i % len] = *b,
            Mutation::Insert(i, t) => {
                let at = pos(*i);
                bytes.splice(at..at, t.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i % len;
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let at = i % len;
                let piece = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// Differential fuzzing of the filter
// ---------------------------------------------------------------------------------------

fn options() -> FilterOptions<'static> {
    FilterOptions {
        max_depth: MAX_DEPTH,
        pseudonymize_key: Some(b"k"),
        optouts: None,
        detail: false,
        subjects: false,
    }
}

/// Runs one case; `Err` describes a disagreement.
fn differential(rules: &[Rule], body: &[u8]) -> Result<bool, String> {
    let Some(spec) = spec_of(rules) else {
        return Ok(false);
    };
    let Ok(program) = FilterProgram::compile(&spec) else {
        return Ok(false);
    };
    if !program.takes_body() {
        return Ok(false);
    }
    let real = filter(&program, body, &options());
    let expected = match reference::parse(body, MAX_DEPTH) {
        // serde_json cannot hold numbers beyond f64; the filter passes them as written.
        Err(e) if e.contains("out of range") => return Ok(false),
        Err(e) => Err(e),
        Ok(doc) => reference::apply(rules, &doc),
    };
    match (real, expected) {
        (Err(_), Err(_)) => Ok(true),
        (Ok(out), Ok(want)) => {
            let got: Value = serde_json::from_slice(&out.body).map_err(|e| {
                format!(
                    "the filter emitted invalid JSON ({e}): {:?}",
                    String::from_utf8_lossy(&out.body)
                )
            })?;
            if got == want {
                Ok(true)
            } else {
                Err(format!("filter gave {got}, reference {want}"))
            }
        }
        (Ok(out), Err(why)) => Err(format!(
            "the filter passed {:?}, the reference refuses: {why}",
            String::from_utf8_lossy(&out.body)
        )),
        (Err(refusal), Ok(want)) => Err(format!(
            "the filter refused ({refusal}), the reference gives {want}"
        )),
    }
}

#[test]
fn filter_agrees_with_the_reference() {
    let seeds = corpus("filter");
    assert!(!seeds.is_empty());
    let (mut runner, seed) = runner();
    let body = prop_oneof![
        (0..seeds.len()).prop_map(move |i| seeds[i].clone()),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    let case = (
        proptest::collection::vec(rule(true), 1..5),
        body,
        proptest::collection::vec(mutation(), 0..3),
    );
    let deadline = Instant::now() + fuzz_budget();
    let (mut runs, mut compared) = (0u64, 0u64);
    while Instant::now() < deadline {
        let (rules, body, mutations) = case.new_tree(&mut runner).unwrap().current();
        let body = mutate(body, &mutations);
        runs += 1;
        match differential(&rules, &body) {
            Ok(true) => compared += 1,
            Ok(false) => {}
            Err(problem) => panic!(
                "FUZZ_SEED={seed}: {problem}\n  rules: {:?}\n  body: {:?}",
                rules
                    .iter()
                    .map(|r| (r.text(), r.action))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&body)
            ),
        }
    }
    eprintln!("filter fuzz: {runs} cases, {compared} compared with the reference (seed {seed})");
    assert!(compared > 0);
}

// ---------------------------------------------------------------------------------------
// The policy loader
// ---------------------------------------------------------------------------------------

const GATEWAY: &str = "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\noptouts: { path: data/optouts }\ncallers:\n  allow_unauthenticated: true\n";

fn source(partner: &[u8]) -> PolicySource {
    PolicySource {
        dir: "policy/".into(),
        gateway: SourceFile {
            path: "policy/gateway.yaml".into(),
            text: GATEWAY.into(),
        },
        partners: vec![SourceFile {
            path: "policy/partners/p.yaml".into(),
            text: String::from_utf8_lossy(partner).into_owned(),
        }],
    }
}

#[test]
fn policy_loader_never_panics() {
    let seeds = corpus("policy");
    let (mut runner, seed) = runner();
    let case = (0..seeds.len(), proptest::collection::vec(mutation(), 0..4));
    let deadline = Instant::now() + fuzz_budget();
    let (mut runs, mut loaded) = (0u64, 0u64);
    while Instant::now() < deadline {
        let (i, mutations) = case.new_tree(&mut runner).unwrap().current();
        let text = mutate(seeds[i].clone(), &mutations);
        let src = source(&text);
        let outcome = std::panic::catch_unwind(|| load(&src, None));
        let Ok(first) = outcome else {
            panic!(
                "FUZZ_SEED={seed}: the loader panicked on {:?}",
                String::from_utf8_lossy(&text)
            );
        };
        runs += 1;
        match (first, load(&src, None)) {
            (Ok(a), Ok(b)) => {
                loaded += 1;
                assert_eq!(a.policy.version, b.policy.version, "FUZZ_SEED={seed}");
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "FUZZ_SEED={seed}");
                for d in &a {
                    assert!(
                        d.line >= 1 && !d.message.is_empty(),
                        "FUZZ_SEED={seed}: {d:?}"
                    );
                }
            }
            _ => panic!("FUZZ_SEED={seed}: loading twice differs"),
        }
    }
    eprintln!("policy fuzz: {runs} cases, {loaded} loaded (seed {seed})");
}

// ---------------------------------------------------------------------------------------
// Property: nothing outside the allow-list, allowed values intact
// ---------------------------------------------------------------------------------------

/// Every member of `out` (by concrete path) is permitted by a rule that does not remove it;
/// every value at a path an allow rule ends on is the input's, a masked one is `"***"`.
fn check_against_rules(
    rules: &[Rule],
    input: &Value,
    out: &Value,
    path: &mut Vec<String>,
) -> Result<(), String> {
    match out {
        Value::Object(members) => {
            for (k, v) in members {
                path.push(k.clone());
                let concrete = path.clone();
                let (allowing, action) = governing(rules, &concrete);
                if !allowing {
                    return Err(format!("key {concrete:?} is outside the allow-list"));
                }
                let original = input
                    .get(k)
                    .ok_or_else(|| format!("{concrete:?} was invented"))?;
                match action {
                    Some(Action::Allow) if v != original => {
                        return Err(format!("{concrete:?} changed: {original} → {v}"));
                    }
                    // A subtree passes whole, less the keys no path can name.
                    Some(Action::Subtree) if *v != reference::strip_unnameable(original) => {
                        return Err(format!("{concrete:?} changed: {original} → {v}"));
                    }
                    Some(Action::Mask) if !(v == "***" || v.is_null()) => {
                        return Err(format!("{concrete:?} not masked: {v}"));
                    }
                    Some(Action::Null) if !v.is_null() => {
                        return Err(format!("{concrete:?} not nulled: {v}"));
                    }
                    Some(Action::Subtree) => {}
                    _ => check_against_rules(rules, original, v, path)?,
                }
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push("[*]".into());
                let original = input.get(i).ok_or("an element was invented")?;
                check_against_rules(rules, original, v, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Does some non-remove rule reach `concrete` (as a prefix or exactly), and what ends there?
fn governing(rules: &[Rule], concrete: &[String]) -> (bool, Option<Action>) {
    let seg_matches = |seg: &Seg, part: &str| match seg {
        Seg::Member(m) => m == part,
        Seg::Any => part != "[*]" && !part.contains(['.', '[', ']', '*']),
        Seg::Elements => part == "[*]",
    };
    let mut reached = false;
    let mut ends = None;
    for r in rules {
        let n = concrete.len().min(r.segs.len());
        let prefix = r.segs[..n]
            .iter()
            .zip(concrete)
            .all(|(s, p)| seg_matches(s, p));
        if !prefix {
            continue;
        }
        if r.action == Action::Remove {
            if r.segs.len() <= concrete.len() {
                return (false, None);
            }
            continue;
        }
        if r.segs.len() >= concrete.len() || r.action == Action::Subtree {
            reached = true;
        }
        if r.segs.len() == concrete.len() {
            ends = Some(match (ends, r.action) {
                (Some(Action::Mask | Action::Null), _) => ends.unwrap(),
                // `x` and `x.**` both: the subtree passes whole, less the keys no path can name
                // (as the reference decides), whichever rule comes first.
                (Some(Action::Subtree), Action::Allow) => Action::Subtree,
                (_, a) => a,
            });
        } else if r.segs.len() < concrete.len() && r.action == Action::Subtree {
            ends = ends.or(Some(Action::Subtree));
        }
    }
    (reached, ends)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_key_outside_the_allow_list(
        rules in proptest::collection::vec(rule(true), 1..6),
        input in json(),
    ) {
        let Some(spec) = spec_of(&rules) else { return Ok(()) };
        let Ok(program) = FilterProgram::compile(&spec) else { return Ok(()) };
        let body = serde_json::to_vec(&input).unwrap();
        // Compare with the body as parsed back (serde_json's float printing may not round-trip).
        let input: Value = serde_json::from_slice(&body).unwrap();
        if let Ok(out) = filter(&program, &body, &options()) {
            let out: Value = serde_json::from_slice(&out.body).unwrap();
            if let Err(problem) = check_against_rules(&rules, &input, &out, &mut Vec::new()) {
                let texts: BTreeMap<String, Action> = rules.iter().map(|r| (r.text(), r.action)).collect();
                prop_assert!(false, "{problem}\n rules {texts:?}\n input {input}\n output {out}");
            }
        }
    }
}
