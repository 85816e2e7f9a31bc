//! On routes that honour opt-outs, a record member that case-insensitive JSON readers take
//! for the subject member is refused.
use std::collections::HashSet;

use super::*;
use crate::RefusalKind;

struct Set(HashSet<&'static str>);

impl OptOutLookup for Set {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(subject)
    }
}

fn program(allow: &str) -> FilterProgram {
    let spec = FilterSpec {
        allow: vec![FieldPath::parse(allow).unwrap()],
        transforms: Vec::new(),
        removes: Vec::new(),
        records: Some(FieldPath::parse("records[*]").unwrap()),
        subject: Some("customer_id".into()),
    };
    FilterProgram::compile(&spec).unwrap()
}

fn run(
    program: &FilterProgram,
    body: &str,
    optouts: Option<&dyn OptOutLookup>,
) -> Result<String, Refusal> {
    let options = FilterOptions {
        max_depth: 64,
        pseudonymize_key: None,
        optouts,
        detail: false,
        subjects: false,
    };
    filter(program, body.as_bytes(), &options).map(|f| String::from_utf8(f.body).unwrap())
}

#[test]
fn case_folded_subject_keys_are_refused_on_opt_out_routes() {
    let set = Set(["c-200"].into());
    for allow in ["records[*].**", "records[*].*", "records[*].customer_id"] {
        let program = program(allow);
        for key in [
            "Customer_Id",
            "CUSTOMER_ID",
            "cu\\u017ftomer_id",
            "cuſtomer_id",
            "\\uff43ustomer_id",
            "customer_\\u0130d",
            "customer_ıd",
        ] {
            for body in [
                format!(r#"{{"records":[{{"customer_id":"c-1","{key}":"c-200","x":1}}]}}"#),
                format!(r#"{{"records":[{{"{key}":"c-200","customer_id":"c-1"}}]}}"#),
            ] {
                match run(&program, &body, Some(&set)) {
                    Err(Refusal {
                        kind: RefusalKind::BadRequest,
                        message,
                    }) => {
                        // The refusal names the record, not the member read before.
                        assert!(message.contains("case-insensitive"), "{message}");
                        assert!(message.starts_with("record `records[0]` has"), "{message}");
                    }
                    other => panic!("{allow} {body}: {other:?}"),
                }
            }
        }
        // Without the real subject member: still a missing subject (422).
        let body = r#"{"records":[{"Customer_Id":"c-200"}]}"#;
        assert_eq!(
            run(&program, body, Some(&set)).unwrap_err().kind,
            RefusalKind::SubjectMissing
        );
        // Other keys pass; without opt-outs nothing is judged.
        let body = r#"{"records":[{"customer_id":"c-1","customer_id2":"x"}]}"#;
        assert!(run(&program, body, Some(&set)).is_ok());
        let body = r#"{"records":[{"customer_id":"c-1","Customer_Id":"c-200"}]}"#;
        assert!(run(&program, body, None).is_ok());
    }
}

/// A member that `*` passes while case-insensitive readers take it for a sibling the policy
/// transforms or removes would carry that sibling's value untransformed: refused (400).
#[test]
fn a_wildcard_member_folding_onto_a_transformed_or_removed_sibling_is_refused() {
    let spec = FilterSpec {
        allow: ["meta.*", "items[*].*", "plain.*"]
            .iter()
            .map(|p| FieldPath::parse(p).unwrap())
            .collect(),
        transforms: vec![
            (FieldPath::parse("meta.card").unwrap(), Transform::Last4),
            (FieldPath::parse("items[*].email").unwrap(), Transform::Mask),
        ],
        removes: vec![FieldPath::parse("meta.ssn").unwrap()],
        records: None,
        subject: None,
    };
    let program = FilterProgram::compile(&spec).unwrap();
    assert!(program.warnings().is_empty(), "{:?}", program.warnings());
    for (body, at, key) in [
        (
            r#"{"meta":{"card":"4111111111111111","CARD":"4111111111111111"}}"#,
            "meta",
            "CARD",
        ),
        (r#"{"meta":{"Card":"4111111111111111"}}"#, "meta", "Card"),
        (
            r#"{"meta":{"\uff43ard":"4111111111111111"}}"#,
            "meta",
            "\u{ff43}ard",
        ),
        (r#"{"meta":{"SSN":"123-45-6789"}}"#, "meta", "SSN"),
        (
            r#"{"items":[{"EMA\u0130L":"a@b"}]}"#,
            "items[0]",
            "EMA\u{130}L",
        ),
        (r#"{"items":[{"emaıl":"a@b"}]}"#, "items[0]", "ema\u{131}l"),
        (
            r#"{"items":[{"email":"a@b"},{"Email":"a@b"}]}"#,
            "items[1]",
            "Email",
        ),
    ] {
        match run(&program, body, None) {
            Err(Refusal {
                kind: RefusalKind::BadRequest,
                message,
            }) => {
                assert!(
                    message.starts_with(&format!("`{at}` has a member {key:?}")),
                    "{message}"
                );
                assert!(message.contains("case-insensitive"), "{message}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    // Exact names are filtered as the policy says; other keys and other objects pass.
    let body = r#"{"meta":{"card":"4111111111111111","ssn":"1","city":"X","CITY":"Y"},"plain":{"Card":"1"}}"#;
    assert_eq!(
        run(&program, body, None).unwrap(),
        r#"{"meta":{"card":"***1111","city":"X","CITY":"Y"},"plain":{"Card":"1"}}"#
    );
}
