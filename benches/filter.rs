/*!
The filter engine against the obvious alternative: parse into a `serde_json::Value`, remove and
transform per the same policy, serialize again. Both run the same shipping-partner policy
(allow list, `last4`, `pseudonymize`, opt-out dropping) on realistic bodies of ~1 KiB and ~1 MiB,
and then the load benchmark's route policy on its bodies (`load-1KiB`, `load-1MiB`: records that
repeat one shape, opt-outs checked against an empty store, subjects collected).

Run with `cargo bench --bench filter` (add `-- --quick` for a fast look).
*/
use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gateway_core::filter::FieldPath;
use gateway_core::filter::{self, FilterOptions, FilterProgram, OptOutLookup, Transform};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[path = "support/filter_workload.rs"]
mod workload;

#[path = "support/load_workload.rs"]
mod load_workload;

use workload::KEY;

// ---- The baseline: a DOM filter over serde_json::Value with the same policy. ----

enum Rule {
    Scalar,
    Subtree,
    Transform(Transform),
    Object(BTreeMap<String, Rule>),
    Array(Box<Rule>),
}

fn policy_rules(allow: &[&str], transforms: &[(&str, Transform)]) -> Rule {
    let mut root = Rule::Object(BTreeMap::new());
    let add = |root: &mut Rule, path: &str, leaf: Rule| {
        let p = FieldPath::parse(path).expect("valid path");
        let mut at = root;
        for seg in &p.segments {
            at = match seg {
                gateway_core::filter::Segment::Member(name) => match at {
                    Rule::Object(m) => m
                        .entry(name.clone())
                        .or_insert_with(|| Rule::Object(BTreeMap::new())),
                    _ => unreachable!("bench policy has no conflicts"),
                },
                gateway_core::filter::Segment::Elements => {
                    if !matches!(at, Rule::Array(_)) {
                        *at = Rule::Array(Box::new(Rule::Object(BTreeMap::new())));
                    }
                    match at {
                        Rule::Array(inner) => inner,
                        _ => unreachable!(),
                    }
                }
                gateway_core::filter::Segment::AnyMember => unreachable!("bench policy has no `*`"),
            };
        }
        *at = if p.subtree { Rule::Subtree } else { leaf };
    };
    for p in allow {
        add(&mut root, p, Rule::Scalar);
    }
    for (p, t) in transforms {
        add(&mut root, p, Rule::Transform(*t));
    }
    root
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn transform_value(t: Transform, v: &Value) -> Result<Value, String> {
    let text = match v {
        Value::Null => return Ok(Value::Null),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("transform needs a scalar".into()),
    };
    Ok(match t {
        Transform::Mask => Value::String("***".into()),
        Transform::Null => Value::Null,
        Transform::Last4 => {
            let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
            let last: String = if digits.len() >= 8 {
                digits[digits.len() - 4..].iter().collect()
            } else {
                String::new()
            };
            Value::String(format!("***{last}"))
        }
        Transform::Pseudonymize => Value::String(
            hmac_sha256(KEY, text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
    })
}

/// Where a value sits relative to the records (`shipments[*]`).
#[derive(Clone, Copy, PartialEq)]
enum At {
    Root,
    Records,
    Record,
    Other,
}

fn apply(
    rule: &Rule,
    v: Value,
    optouts: &dyn OptOutLookup,
    at: At,
) -> Result<Option<Value>, String> {
    Ok(Some(match (rule, v) {
        (Rule::Subtree, v) => v,
        (Rule::Scalar, v @ (Value::Object(_) | Value::Array(_))) => {
            return Err(format!("not a scalar: {v}"))
        }
        (Rule::Scalar, v) => v,
        (Rule::Transform(t), v) => transform_value(*t, &v)?,
        (_, Value::Null) => Value::Null,
        (Rule::Object(members), Value::Object(map)) => {
            if at == At::Record {
                let id = match map.get("customer_id") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
                    _ => return Err("subject missing".into()),
                };
                if optouts.is_opted_out(&id) {
                    return Ok(None);
                }
            }
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(rule) = members.get(&k) {
                    let inner = if at == At::Root && k == "shipments" {
                        At::Records
                    } else {
                        At::Other
                    };
                    if let Some(v) = apply(rule, v, optouts, inner)? {
                        out.insert(k, v);
                    }
                }
            }
            Value::Object(out)
        }
        (Rule::Array(inner), Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let element = if at == At::Records {
                    At::Record
                } else {
                    At::Other
                };
                if let Some(v) = apply(inner, item, optouts, element)? {
                    out.push(v);
                }
            }
            Value::Array(out)
        }
        _ => return Err("shape mismatch".into()),
    }))
}

fn baseline(rules: &Rule, body: &[u8], optouts: &dyn OptOutLookup) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).expect("valid JSON");
    let filtered = apply(rules, value, optouts, At::Root)
        .expect("fits the policy")
        .unwrap_or(Value::Null);
    serde_json::to_vec(&filtered).expect("serializable")
}

/// Runs the engine and the baseline on `body` under one group name, after checking that both
/// forward the same thing.
fn bench_one(
    c: &mut Criterion,
    label: &str,
    body: &[u8],
    (program, options): (&FilterProgram, &FilterOptions<'_>),
    (rules, optouts): (&Rule, &dyn OptOutLookup),
) {
    // Both sides must do the same job before their speed is compared.
    let ours = filter::filter(program, body, options).expect("bench body passes the filter");
    let ours: Value = serde_json::from_slice(&ours.body).expect("valid output");
    let theirs: Value =
        serde_json::from_slice(&baseline(rules, body, optouts)).expect("valid output");
    assert_eq!(
        ours, theirs,
        "gateway and baseline disagree on the {label} body"
    );
    let mut group = c.benchmark_group(format!("filter/{label}"));
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_with_input(BenchmarkId::new("gateway", body.len()), body, |b, body| {
        b.iter(|| filter::filter(program, black_box(body), options).map(|f| f.body.len()))
    });
    group.bench_with_input(
        BenchmarkId::new("serde_json_value", body.len()),
        body,
        |b, body| b.iter(|| baseline(rules, black_box(body), optouts).len()),
    );
    group.finish();
}

fn bench_filter(c: &mut Criterion) {
    let program = FilterProgram::compile(&workload::spec()).expect("bench policy compiles");
    let rules = policy_rules(workload::ALLOW, workload::TRANSFORMS);
    let optouts = workload::optouts();
    let options = workload::options(&optouts);
    for (label, target) in [("1KiB", 1024), ("1MiB", 1024 * 1024)] {
        let body = workload::body(target);
        bench_one(c, label, &body, (&program, &options), (&rules, &optouts));
    }

    let program = FilterProgram::compile(&load_workload::spec()).expect("load policy compiles");
    let rules = policy_rules(load_workload::ALLOW, load_workload::TRANSFORMS);
    let optouts = load_workload::NoOptOuts;
    let options = load_workload::options(&optouts);
    for (label, target) in [("load-1KiB", 1024), ("load-1MiB", 1024 * 1024)] {
        let body = load_workload::body(target);
        bench_one(c, label, &body, (&program, &options), (&rules, &optouts));
    }
}

criterion_group!(benches, bench_filter);
criterion_main!(benches);
