//! Key-order prediction against adversarial records: random nested shapes repeated so that
//! prediction takes over at every level, and every duplicate, bad value, cut and added member
//! after a primed key order. Each gives what reading every key anew gives.
use super::predict::both;
use super::*;

/// A value shape that records repeat: its objects keep their key order, so that key-order
/// prediction takes over at every level (walked objects, removed members, subtrees passed
/// whole, array elements by position).
#[derive(Clone, Debug)]
enum Shape {
    Scalar,
    /// A subject id (now and then not a valid one).
    Subject,
    Object(Vec<(&'static str, Shape)>),
    Array(Vec<Shape>),
}

/// Names in shapes: policy names at several depths, unknown ones, an unnameable one, filler
/// that takes objects past what prediction covers.
const SHAPE_KEYS: &[&str] = &[
    "id",
    "customer_id",
    "name",
    "a",
    "b",
    "c",
    "d",
    "e",
    "x",
    "s",
    "l",
    "m",
    "card",
    "p.q",
    "",
    "k0",
    "k1",
    "k2",
    "k3",
    "k4",
    "k5",
    "k6",
    "k7",
    "k8",
    "k9",
    "k10",
    "k11",
    "k12",
    "k13",
    "k14",
    "k15",
    "k16",
    "k17",
];

fn gen_shape(rng: &mut Rng, depth: usize) -> Shape {
    match if depth > 5 { 0 } else { rng.below(7) } {
        0..=2 => Shape::Scalar,
        3..=5 => gen_object(rng, depth),
        _ => {
            let kinds: Vec<Shape> = (0..1 + rng.below(3))
                .map(|_| gen_shape(rng, depth + 1))
                .collect();
            let n = rng.below(6);
            Shape::Array((0..n).map(|i| kinds[i % kinds.len()].clone()).collect())
        }
    }
}

/// An object whose members mostly have the kind of value the policies below expect of them.
fn gen_object(rng: &mut Rng, depth: usize) -> Shape {
    let n = if rng.below(6) == 0 {
        15 + rng.below(5)
    } else {
        rng.below(7)
    };
    let mut members: Vec<(&'static str, Shape)> = Vec::new();
    for _ in 0..n {
        let key = rng.pick(SHAPE_KEYS);
        if members.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let value = match key {
            _ if rng.below(60) == 0 || depth > 5 => gen_shape(rng, depth + 1),
            "a" | "c" => gen_object(rng, depth + 1),
            "l" => {
                let kinds: Vec<Shape> = (0..1 + rng.below(3))
                    .map(|_| gen_object(rng, depth + 1))
                    .collect();
                let n = rng.below(6);
                Shape::Array((0..n).map(|i| kinds[i % kinds.len()].clone()).collect())
            }
            "b" if rng.below(4) != 0 => Shape::Scalar,
            "b" | "x" | "s" | "m" | "p.q" | "" => gen_shape(rng, depth + 1),
            _ => Shape::Scalar,
        };
        members.push((key, value));
    }
    Shape::Object(members)
}

/// `key` with one of its bytes written as a `\u` escape (the same key once unescaped).
fn escaped(rng: &mut Rng, key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let at = rng.below(key.len());
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == at {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes a value of `shape`; one object in `edit` gets an edit: a duplicate (as written or
/// escaped) at any later position, a new or removed key, an escaped spelling, a name that
/// folds to a subject, whitespace.
fn render(rng: &mut Rng, shape: &Shape, edit: usize, out: &mut String) {
    match shape {
        Shape::Scalar => out.push_str(rng.pick(&[
            "1",
            "2",
            "\"c-1\"",
            "\"x\"",
            "null",
            "true",
            "-0.5",
            "\"\\u00e9\"",
        ])),
        Shape::Subject => out.push_str(if rng.below(50) == 0 {
            rng.pick(&["null", "{}", "1.5", "\"\""])
        } else {
            rng.pick(&["1", "2", "3", "\"c-1\"", "\"C-2\"", "\"c\\u002d1\""])
        }),
        Shape::Array(elements) => {
            out.push('[');
            for (i, element) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render(rng, element, edit, out);
            }
            out.push(']');
        }
        Shape::Object(members) => {
            let mut keys: Vec<(String, Shape)> = members
                .iter()
                .map(|(k, s)| (k.to_string(), s.clone()))
                .collect();
            if rng.below(edit.max(1)) == 0 {
                let n = keys.len();
                match rng.below(9) {
                    0 | 1 if n > 0 => {
                        let i = rng.below(n);
                        let dup = if rng.below(2) == 0 {
                            keys[i].0.clone()
                        } else {
                            escaped(rng, &keys[i].0)
                        };
                        let at = i + 1 + rng.below(n - i);
                        keys.insert(at, (dup, Shape::Scalar));
                    }
                    2 if n > 0 => {
                        keys.remove(rng.below(n));
                    }
                    3 if n > 0 => {
                        let i = rng.below(n);
                        keys[i].0 = escaped(rng, &keys[i].0);
                    }
                    4 => {
                        let key = rng.pick(SHAPE_KEYS).to_string();
                        keys.insert(rng.below(n + 1), (key, Shape::Scalar));
                    }
                    5 => {
                        let key = rng
                            .pick(&[
                                "Customer_Id",
                                "CUSTOMER_ID",
                                "Id",
                                "ID",
                                "customer\\u005fid",
                            ])
                            .to_string();
                        keys.insert(rng.below(n + 1), (key, Shape::Scalar));
                    }
                    6 => {
                        for i in 0..17 {
                            keys.push((format!("f{i}"), Shape::Scalar));
                        }
                        if rng.below(2) == 0 && n > 0 {
                            let dup = keys[rng.below(n)].0.clone();
                            keys.push((dup, Shape::Scalar));
                        }
                    }
                    _ => {}
                }
            }
            out.push('{');
            for (i, (key, value)) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(if rng.below(30) == 0 { " , " } else { "," });
                }
                out.push_str(&format!("\"{key}\":"));
                render(rng, value, edit, out);
            }
            out.push('}');
        }
    }
}

fn gen_shaped_body(rng: &mut Rng) -> String {
    // A record shape or two, each record a copy with now and then an edit.
    let shapes: Vec<Shape> = (0..1 + rng.below(2))
        .map(|_| {
            let mut shape = gen_object(rng, 1);
            if let Shape::Object(members) = &mut shape {
                for subject in ["id", "customer_id"] {
                    members.retain(|(k, _)| *k != subject);
                    let at = rng.below(members.len() + 1);
                    members.insert(at, (subject, Shape::Subject));
                }
            }
            shape
        })
        .collect();
    let edit = rng.pick(&[3, 10, 30, 100, 1000]);
    let mut body = String::from("{\"r\":[");
    for i in 0..3 + rng.below(7) {
        if i > 0 {
            body.push(',');
        }
        let shape = &shapes[i % shapes.len()];
        render(rng, shape, edit, &mut body);
    }
    body.push_str("],\"top\":");
    let top = if rng.below(5) == 0 {
        gen_shape(rng, 2)
    } else {
        gen_object(rng, 2)
    };
    render(rng, &top, edit, &mut body);
    body.push('}');
    body
}

fn shaped_programs() -> Vec<(FilterProgram, FilterProgram)> {
    let specs = [
        FilterSpec {
            removes: vec![path("r[*].a.x"), path("r[*].l[*].x")],
            ..records(
                spec(
                    &[
                        "r[*].id",
                        "r[*].name",
                        "r[*].a.b",
                        "r[*].a.c.d",
                        "r[*].a.c.e.**",
                        "r[*].s.**",
                        "r[*].l[*].b",
                        "r[*].l[*].m.**",
                        "top.a.*",
                    ],
                    &[("r[*].card", Transform::Last4)],
                ),
                "r[*]",
                "id",
            )
        },
        records(spec(&["r[*].**"], &[]), "r[*]", "customer_id"),
        records(
            spec(
                &["r[*].customer_id", "r[*].m.*.b", "r[*].a.*", "top.**"],
                &[],
            ),
            "r[*]",
            "customer_id",
        ),
        spec(
            &["r[*].a.b.c.d", "r[*].x.**", "top.*.*", "r[*].l[*].a"],
            &[("r[*].name", Transform::Mask)],
        ),
        records(spec(&["r[*].id"], &[]), "r[*]", "id"),
        records(
            spec(&["r[*].id", "r[*].name", "r[*].x.**", "r[*].l[*].a.b"], &[]),
            "r[*]",
            "id",
        ),
    ];
    specs
        .iter()
        .map(|s| (compile(s), compile(s).without_key_prediction()))
        .collect()
}

fn shaped_rounds(seed: u64, rounds: usize) -> (usize, usize) {
    let programs = shaped_programs();
    let lookup = optouts(&["2", "c-1"]);
    let mut rng = Rng(seed);
    let (mut passed, mut refused) = (0, 0);
    for round in 0..rounds {
        let (predicting, reading) = &programs[round % programs.len()];
        let body = gen_shaped_body(&mut rng);
        let body = if round % 5 == 0 {
            mutate(&mut rng, &body)
        } else {
            body.into_bytes()
        };
        let optouts: Option<&dyn OptOutLookup> =
            (predicting.has_subjects() && round % 2 == 0).then_some(&lookup);
        let options = FilterOptions {
            subjects: round % 3 == 0,
            ..options(optouts, round % 4 != 0)
        };
        if both(predicting, reading, &body, &options) {
            passed += 1;
        } else {
            refused += 1;
        }
        // Now and then every prefix of the body: errors at every byte, with their paths.
        if round % 199 == 0 {
            for cut in 1..body.len() {
                both(predicting, reading, &body[..cut], &options);
            }
        }
    }
    (passed, refused)
}

/// Records of random nested shapes, repeated so that prediction takes over at every level,
/// with edits (duplicates as written or escaped, new, removed or escaped keys, subject
/// look-alikes, objects past 16 keys) and malformed bytes: the same answer as reading every key.
#[test]
fn shaped_records_give_what_reading_every_key_gives() {
    let rounds = std::env::var("SHAPED_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1000);
    let seed = std::env::var("SHAPED_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0x5EED_0F0D_E5E5_0002);
    let (passed, refused) = shaped_rounds(seed, rounds);
    assert!(
        passed > rounds / 10 && refused > rounds / 10,
        "{passed} passed, {refused} refused"
    );
}

/// One object of a record written out: its keys with where each value starts, and where each
/// member ends (its `,` or the object's `}`).
#[derive(Default, Debug)]
struct ObjectAt {
    keys: Vec<(String, usize)>,
    ends: Vec<usize>,
}

/// The objects of `json` (names without escapes or quotes inside, no `,` `{` `[` in strings).
fn objects_of(json: &str) -> Vec<ObjectAt> {
    let b = json.as_bytes();
    let mut objects: Vec<ObjectAt> = Vec::new();
    let mut stack: Vec<Option<usize>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                objects.push(ObjectAt::default());
                stack.push(Some(objects.len() - 1));
            }
            b'[' => stack.push(None),
            b']' => {
                stack.pop();
            }
            b'}' => {
                if let Some(Some(o)) = stack.pop() {
                    if !objects[o].keys.is_empty() {
                        objects[o].ends.push(i);
                    }
                }
            }
            b',' => {
                if let Some(Some(o)) = stack.last() {
                    objects[*o].ends.push(i);
                }
            }
            b'"' => {
                let end = i + 1 + b[i + 1..].iter().position(|&c| c == b'"').expect("quote");
                if b.get(end + 1) == Some(&b':') {
                    if let Some(Some(o)) = stack.last() {
                        objects[*o]
                            .keys
                            .push((json[i + 1..end].to_string(), end + 2));
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    objects
}

/// `key` with its first character written as a `\u` escape.
fn escape_first(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) => format!("\\u{:04x}{}", c as u32, chars.as_str()),
        None => String::new(),
    }
}

fn primed_spec() -> FilterSpec {
    FilterSpec {
        removes: vec![path("r[*].a.x")],
        ..records(
            spec(
                &[
                    "r[*].id",
                    "r[*].name",
                    "r[*].a.b",
                    "r[*].a.c.d",
                    "r[*].a.c.e.**",
                    "r[*].s.**",
                    "r[*].t.**",
                ],
                &[("r[*].card", Transform::Last4)],
            ),
            "r[*]",
            "id",
        )
    }
}

/// A record whose every object is predicted once two like it went before: walked ones, a
/// removed one (`a.x`), unknown ones (`a.u`, `big`), subtrees passed whole (`s`, an array of
/// objects `t`), arrays of removed objects (`a.w`, `z`), objects of more than 16 keys (the
/// record itself, `big`).
fn primed_record() -> String {
    let big: Vec<String> = (0..18).map(|i| format!("\"k{i}\":{i}")).collect();
    let fill: Vec<String> = (0..10).map(|i| format!("\"f{i}\":{i}")).collect();
    format!(
        concat!(
            r#"{{"id":1,"name":"n","a":{{"b":1,"c":{{"d":1,"e":[1,2]}},"x":{{"p":1,"q":{{"r":1}}}},"#,
            r#""u":{{"p":1,"q":2}},"w":[{{"p":1}},{{"p":1,"q":2}},{{"q":2}},{{"q":2}}]}},"#,
            r#""s":{{"p":1,"q":[{{"v":1,"w":2}}],"o":{{"v":1}}}},"t":[{{"v":1,"w":2}},{{"w":1,"v":2}},{{"v":1}},{{"v":1}}],"#,
            r#""card":"4111111111111111","z":[{{"p":1,"q":2}},{{"q":1}},{{"p":1,"q":2}},{{"p":1,"q":2}}],"#,
            r#""big":{{{}}},"a_member_name_longer_than_sixteen":{{"another_long_member_name":1,"b":2}},{}}}"#
        ),
        big.join(","),
        fill.join(",")
    )
}

/// Every way the third record can differ from two primed ones (the third object of a slot is
/// the first one predicted): outcomes, messages and detailed reports equal with and without
/// prediction, without opt-outs, with opt-outs that drop every record, and with opt-outs that
/// drop none and subject ids collected (`all`), or only the last (`!all`).
fn check_primed(spec: &FilterSpec, record: &str, variants: &[(String, Option<&str>)], all: bool) {
    let (predicting, reading) = (compile(spec), compile(spec).without_key_prediction());
    let (drop_all, drop_none) = (optouts(&["1"]), optouts(&["9"]));
    let option_sets = [
        options(None, true),
        options(Some(&drop_all), true),
        FilterOptions {
            subjects: true,
            ..options(Some(&drop_none), true)
        },
    ];
    let option_sets = if all {
        &option_sets[..]
    } else {
        &option_sets[2..]
    };
    let primed = format!(r#"{{"r":[{record},{record},{record}]}}"#);
    for options in option_sets {
        assert!(both(&predicting, &reading, primed.as_bytes(), options));
    }
    for (variant, refused) in variants {
        let body = format!(r#"{{"r":[{record},{record},{variant}]}}"#);
        for options in option_sets {
            let ok = both(&predicting, &reading, body.as_bytes(), options);
            if let Some(message) = refused {
                assert!(!ok, "{body}");
                let refusal = filter(&predicting, body.as_bytes(), options).unwrap_err();
                assert!(
                    refusal.message.contains(message),
                    "{variant}: {message} / {refusal:?}"
                );
            }
        }
    }
}

/// A record of 20 unknown members holding arrays of objects: their top objects and elements
/// share the 16 slots of removed members, so a slot's order is rewritten by the next member
/// or element that uses it (after it closed), and is predicted where the shapes agree.
fn crowded_record() -> String {
    let shapes = [
        r#"{"p":1,"q":2}"#,
        r#"{"q":1,"p":2}"#,
        r#"{"p":1}"#,
        r#"{"q":1,"r":2,"p":3}"#,
    ];
    let members: Vec<String> = (0..20)
        .map(|i| {
            let elements: Vec<&str> = (0..4).map(|j| shapes[(i + j) % shapes.len()]).collect();
            if i % 3 == 0 {
                format!(r#""m{i}":{}"#, shapes[i % shapes.len()])
            } else {
                format!(r#""m{i}":[{}]"#, elements.join(","))
            }
        })
        .collect();
    format!(r#"{{"id":1,{}}}"#, members.join(","))
}

/// The policies and records [`check_primed`] runs.
fn primed_cases() -> Vec<(FilterSpec, String)> {
    vec![
        (primed_spec(), primed_record()),
        (
            records(spec(&["r[*].id"], &[]), "r[*]", "id"),
            crowded_record(),
        ),
        (
            records(
                spec(&["r[*].id", "r[*].m1.**", "r[*].m2[*].p"], &[]),
                "r[*]",
                "id",
            ),
            crowded_record(),
        ),
    ]
}

/// A duplicate of any key of any object of a record, as written or escaped, put after any
/// member: refused as a duplicate, with the same message (key, byte, path) as without
/// prediction.
#[test]
fn a_duplicate_of_any_predicted_key_after_any_member_is_refused() {
    for (spec, record) in primed_cases() {
        let mut variants = Vec::new();
        for object in objects_of(&record) {
            for (after, &end) in object.ends.iter().enumerate() {
                for (key, _) in &object.keys[..=after] {
                    for spelled in [key.clone(), escape_first(key)] {
                        let variant =
                            format!(r#"{},"{spelled}":0{}"#, &record[..end], &record[end..]);
                        variants.push((variant, Some(format!("duplicate key {key:?}"))));
                    }
                }
            }
        }
        assert!(variants.len() > 200, "{}", variants.len());
        let variants: Vec<(String, Option<&str>)> = variants
            .iter()
            .map(|(v, m)| (v.clone(), m.as_deref()))
            .collect();
        check_primed(&spec, &record, &variants, false);
    }
}

/// A bad value of any member of any object of a record, the record cut short at any byte, an
/// unknown member or a subject look-alike after any member: the same refusal (message and
/// path, whose outer keys may all be predicted ones) or the same body and report (with its
/// paths of removed members and drift) as without prediction.
#[test]
fn errors_and_reports_name_predicted_keys_as_read_ones() {
    for (spec, record) in primed_cases() {
        let mut bad: Vec<(String, Option<&str>)> = Vec::new();
        let mut added: Vec<(String, Option<&str>)> = Vec::new();
        for object in objects_of(&record) {
            for (_, value) in &object.keys {
                let (before, after) = record.split_at(*value);
                bad.push((format!("{before}x{after}"), Some("malformed JSON")));
                // An object where a scalar (or the subject) belongs, nesting past the limit.
                bad.push((format!(r#"{before}{{"y":1}}{after}"#), None));
                bad.push((format!("{before}{}{after}", "[".repeat(70)), None));
            }
            for &end in &object.ends {
                let (before, after) = record.split_at(end);
                for member in [
                    r#""zz":{"y":1}"#,
                    r#""zz":[{"y":1}]"#,
                    r#""ID":1"#,
                    r#""I\u0064":1"#,
                    r#""zz":01"#,
                ] {
                    added.push((format!("{before},{member}{after}"), None));
                }
            }
        }
        bad.extend((1..record.len()).map(|cut| (record[..cut].to_string(), None)));
        check_primed(&spec, &record, &bad, false);
        check_primed(&spec, &record, &added, true);
    }
}
