/*!
The filter benchmark's timing for the engine of an earlier commit, against which
`benches/filter_then_now.sh` measures today's engine in the same run. It is copied into that
commit's `crates/core/examples/` and built there, so it uses that commit's API (the one of the
engine before drift tracking and the speed work: `gateway_core::policy::FieldPath`, a
`FilterSpec` of allow, transforms, records and subject, `FilterOptions` without `subjects`).

    filter_then DIR SECONDS

`DIR` is what today's `filter_speed dump DIR` wrote: the body, the policy as lines, and today's
output, which this engine must reproduce byte for byte before it is timed.
*/
use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use gateway_core::filter::{
    self, FilterOptions, FilterProgram, FilterSpec, OptOutLookup, Transform,
};
use gateway_core::policy::FieldPath;

struct OptOuts(HashSet<String>);

impl OptOutLookup for OptOuts {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

/// The spec, pseudonymization key and opt-outs of `policy.txt`.
fn policy(text: &str) -> (FilterSpec, Vec<u8>, OptOuts) {
    let path = |p: &str| FieldPath::parse(p).expect("a valid path");
    let (mut spec, mut key, mut optouts) = (FilterSpec::default(), Vec::new(), HashSet::new());
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["allow", p] => spec.allow.push(path(p)),
            ["transform", p, name] => {
                let t: Transform = Transform::parse(name).ok().flatten().expect("a transform");
                spec.transforms.push((path(p), t));
            }
            ["records", p] => spec.records = Some(path(p)),
            ["subject", name] => spec.subject = Some((*name).to_string()),
            ["key", k] => key = k.as_bytes().to_vec(),
            ["optout", id] => {
                optouts.insert((*id).to_string());
            }
            _ => panic!("unknown policy line {line:?}"),
        }
    }
    (spec, key, OptOuts(optouts))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = Path::new(args.first().expect("filter_then DIR SECONDS"));
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let read = |name: &str| std::fs::read(dir.join(name)).expect("the dump is there");
    let (body, expected) = (read("body.json"), read("filtered.json"));
    let (spec, key, optouts) = policy(&String::from_utf8(read("policy.txt")).expect("text"));
    let program = FilterProgram::compile(&spec).expect("the policy compiles");
    let options = FilterOptions {
        max_depth: 64,
        pseudonymize_key: Some(&key),
        optouts: Some(&optouts),
        detail: false,
    };
    let out = filter::filter(&program, &body, &options).expect("the body passes");
    assert!(out.body == expected, "the engines' outputs differ");
    let mut best = f64::MAX;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        let n = filter::filter(&program, black_box(&body), &options).map(|f| f.body.len());
        black_box(n.expect("ok"));
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "then: 1MiB filter best {:.3} ms = {:.2} GB/s",
        best * 1e3,
        body.len() as f64 / best / 1e9
    );
}
