use super::key_line;

#[test]
fn key_line_finds_top_level_keys_only() {
    let text = "listen: 1\nadmin_listen: 2\nlimits: { a: 1 }\ntls:\n  cert: x\n";
    assert_eq!(key_line(text, "listen"), 1);
    assert_eq!(key_line(text, "admin_listen"), 2);
    assert_eq!(key_line(text, "tls"), 4);
    assert_eq!(key_line(text, "cert"), 1);
    assert_eq!(key_line(text, "optouts"), 1);
}

/// A policy directory with one partner.
fn write_policy(dir: &std::path::Path) {
    let gateway_yaml = "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\ncallers:\n  allow_unauthenticated: true\nsigning: { disabled: true }\n";
    std::fs::create_dir_all(dir.join("partners")).unwrap();
    std::fs::write(dir.join("gateway.yaml"), gateway_yaml).unwrap();
    std::fs::write(dir.join("partners/a.yaml"), partner("order_id")).unwrap();
}

/// The policy in `dir`, loaded as the start loads it.
fn started_gateway(dir: &std::path::Path) -> super::Gateway {
    let loaded = crate::loader::load(dir, None).unwrap();
    let active = crate::loader::build_active(dir, loaded.policy).unwrap();
    super::Gateway::new(active, dir)
}

fn partner(allow: &str) -> String {
    format!("kind: contractor\npurpose: shipping\nupstream: http://127.0.0.1:3\nroutes:\n  - path: /v1/x\n    methods: [POST]\n    allow: [{allow}]\nallowed_callers: [orders-service]\n")
}

#[test]
fn an_edit_made_while_the_gateway_starts_is_a_change_for_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_policy(dir);
    let before = super::before_start(dir);
    let gateway = started_gateway(dir);
    // Between the start's load and the watcher's first look.
    std::fs::write(dir.join("partners/a.yaml"), partner("order_id, email")).unwrap();
    std::fs::write(dir.join("partners/b.yaml"), partner("order_id")).unwrap();
    super::started(&gateway, before);
    let on_disk = super::fingerprint(dir, &super::named_files(&gateway.active().policy));
    let read = gateway.reload_guard().fingerprint.clone();
    assert_ne!(read, on_disk);
    // Each file counts: the edited one, and the one that appeared.
    for name in ["partners/a.yaml", "partners/b.yaml"] {
        let path = dir.join(name);
        let digest = |f: &super::Fingerprint| f.iter().find(|(p, _)| *p == path).map(|(_, d)| *d);
        assert_ne!(digest(&read), digest(&on_disk), "{name}");
    }
    // Without an edit, what the start read is what is on disk.
    let dir2 = tempfile::tempdir().unwrap();
    write_policy(dir2.path());
    let before = super::before_start(dir2.path());
    let gateway = started_gateway(dir2.path());
    super::started(&gateway, before);
    let on_disk = super::fingerprint(dir2.path(), &super::named_files(&gateway.active().policy));
    assert_eq!(gateway.reload_guard().fingerprint, on_disk);
}
