//! The policy files' JSON Schema (for editors: yaml-language-server) is generated from the Rust
//! types that parse them, committed under `policy/schema/`, and kept honest: the committed
//! files equal the generated ones, and every bundled policy file validates against them.
//! After adding or changing a policy key, regenerate with `UPDATE_SCHEMA=1 cargo test --test schema`.
use std::path::Path;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn schemas() -> [(&'static str, Value); 2] {
    [
        (
            "gateway.schema.json",
            gateway_core::policy::file::gateway_schema(),
        ),
        (
            "partner.schema.json",
            gateway_core::policy::file::partner_schema(),
        ),
    ]
}

#[test]
fn committed_schema_equals_the_generated_one() {
    let dir = Path::new(ROOT).join("policy/schema");
    for (name, schema) in schemas() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(name);
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "policy/schema/{name} is out of date with the policy types: regenerate it with \
             `UPDATE_SCHEMA=1 cargo test --test schema` and commit it"
        );
    }
}

fn validate(schema: &Value, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let value: Value = serde_saphyr::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
}

#[test]
fn every_bundled_policy_file_validates_against_the_schema() {
    let [(_, gateway), (_, partner)] = schemas();
    validate(&gateway, &Path::new(ROOT).join("policy/gateway.yaml"));
    let mut partners = 0;
    for entry in std::fs::read_dir(Path::new(ROOT).join("policy/partners")).unwrap() {
        validate(&partner, &entry.unwrap().path());
        partners += 1;
    }
    assert!(partners > 0);
}

#[test]
fn the_schema_catches_what_editors_should_flag() {
    let [(_, gateway), (_, partner)] = schemas();
    let check = |schema: &Value, yaml: &str| {
        let value: Value = serde_saphyr::from_str(yaml).unwrap();
        jsonschema::validator_for(schema).unwrap().is_valid(&value)
    };
    assert!(check(&gateway, "listen: 127.0.0.1:8080\n"));
    assert!(!check(&gateway, "listen: 127.0.0.1:8080\nlisten_typo: x\n"));
    assert!(!check(&gateway, "limits: { max_body_bytes: lots }\n"));
    let ok = "kind: contractor\npurpose: p\nupstream: http://x:1\nroutes: []\n";
    assert!(check(&partner, ok));
    assert!(!check(&partner, &format!("{ok}unknown: 1\n")));
    assert!(!check(
        &partner,
        "kind: contractor\npurpose: p\nroutes: []\n"
    ));
    // Values `check` refuses, which editors can complete from the schema.
    assert!(!check(&partner, &ok.replace("contractor", "Contractor")));
    let route =
        |extra: &str| ok.replace("routes: []", &format!("routes:\n  - path: /v1/x\n{extra}"));
    assert!(check(
        &partner,
        &route("    methods: [POST]\n    stream: ndjson\n")
    ));
    assert!(!check(&partner, &route("    methods: [post]\n")));
    assert!(!check(&partner, &route("    stream: csv\n")));
    assert!(check(
        &gateway,
        "tls: { cert: c, key: k, client_ca: a, client_identity: san_dns }\n"
    ));
    assert!(!check(
        &gateway,
        "tls: { cert: c, key: k, client_ca: a, client_identity: SAN }\n"
    ));
}
