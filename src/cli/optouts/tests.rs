use super::*;
use gateway_core::optout::Scope;

fn run_import(store: &Path, file: &Path) -> (Result<()>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = import_to(store, file, None, &mut out, &mut err);
    (
        result,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn import_export_count() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("optouts");
    let csv = tmp.path().join("optouts.csv");
    std::fs::write(
        &csv,
        "customer_id,scope\n1,partner_sharing\n1,partner:acme\n\"2,x\",partner_sharing\n",
    )
    .unwrap();
    let (result, out, err) = run_import(&store, &csv);
    result.unwrap();
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("imported 3 opt-outs (2 customers)\n", "")
    );

    let ndjson = tmp.path().join("more.data");
    std::fs::write(
        &ndjson,
        "{\"customer_id\": 3, \"scopes\": [\"research\"]}\n",
    )
    .unwrap();
    let (result, out, _) = run_import(&store, &ndjson);
    result.unwrap();
    assert_eq!(out, "imported 1 opt-outs (1 customers)\n");

    let mut exported = Vec::new();
    export(&store, Format::Csv, &mut exported).unwrap();
    assert_eq!(
        String::from_utf8(exported).unwrap(),
        "customer_id,scope\n1,partner:acme\n1,partner_sharing\n\"2,x\",partner_sharing\n3,research\n"
    );
    let mut counted = Vec::new();
    count_to(&store, &mut counted).unwrap();
    assert_eq!(
        String::from_utf8(counted).unwrap(),
        "partner:acme\t1\npartner_sharing\t2\nresearch\t1\ntotal\t4 opt-outs (3 customers)\n"
    );
}

#[test]
fn a_bad_line_imports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("optouts");
    OptOutStore::open(&store)
        .unwrap()
        .put("0", &[Scope::parse("partner_sharing").unwrap()])
        .unwrap();
    let file = tmp.path().join("bad.ndjson");
    std::fs::write(
        &file,
        "{\"customer_id\": \"1\", \"scopes\": [\"partner_sharing\"]}\n{\"customer_id\": 2.5, \"scopes\": [\"partner_sharing\"]}\n\n{\"customer_id\": \"3\", \"scopes\": []}\n",
    )
    .unwrap();
    let (result, out, err) = run_import(&store, &file);
    let shown = file.display();
    assert_eq!(
        err,
        format!(
            "{shown}:2: customer_id must be a string or an integer, found 2.5\n{shown}:4: scopes is empty: list at least one scope\n"
        )
    );
    assert_eq!(out, "");
    let message = format!("{:#}", result.unwrap_err());
    assert!(
        message.contains("nothing imported: 2 error(s)"),
        "{message}"
    );
    let reader = OptOutStore::open_read_only(&store).unwrap();
    assert_eq!(reader.customer_count().unwrap(), 1);
    assert_eq!(reader.get("1").unwrap(), None);
}

#[test]
fn import_is_refused_while_the_store_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("optouts");
    let _held = OptOutStore::open(&store_dir).unwrap();
    let file = tmp.path().join("ok.csv");
    std::fs::write(&file, "customer_id,scope\n1,partner_sharing\n").unwrap();
    let (result, _, _) = run_import(&store_dir, &file);
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("in use by another process"), "{message}");
}

#[test]
fn export_and_count_need_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none");
    assert!(
        format!("{:#}", count_to(&missing, &mut Vec::new()).unwrap_err())
            .contains("no opt-out store at")
    );
    assert!(export(&missing, Format::Ndjson, &mut Vec::new()).is_err());
}
