//! The deployment files agree with the bundled policy and the binary: every Kubernetes manifest
//! and the systemd unit are parsed and checked for ports, paths, probe endpoints, flags and the
//! environment variables the policy names. The policy ConfigMap and the PrometheusRule are
//! generated from `policy/` and `deploy/prometheus/alerts.yml`; regenerate them with
//! `UPDATE_DEPLOY=1 cargo test --test deploy`. `systemctl reload` (SIGHUP) reloads the policy.
mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative)).unwrap()
}

/// The bundled partner files, sorted by id.
fn partner_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> =
        std::fs::read_dir(Path::new(ROOT).join("policy/partners"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let id = p.file_stem().unwrap().to_string_lossy().into_owned();
                (id, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
    files.sort();
    files
}

fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The policy ConfigMap: the bundled policy, listening on every interface inside the pod.
fn generated_configmap() -> String {
    let mut out = String::from(
        "# Generated from policy/ by `UPDATE_DEPLOY=1 cargo test --test deploy`: edit policy/, not this file.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: partner-gateway-policy\n  labels: { app.kubernetes.io/name: partner-gateway }\ndata:\n",
    );
    let gateway = read("policy/gateway.yaml").replace("127.0.0.1:", "0.0.0.0:");
    out.push_str(&format!("  gateway.yaml: |\n{}\n", block(&gateway, 4)));
    for (id, text) in partner_files() {
        out.push_str(&format!("  partners.{id}.yaml: |\n{}\n", block(&text, 4)));
    }
    out
}

/// The PrometheusRule: the rule groups of alerts.yml.
fn generated_prometheusrule() -> String {
    let alerts = read("deploy/prometheus/alerts.yml");
    let groups = &alerts[alerts.find("groups:").unwrap()..];
    format!(
        "# Generated from deploy/prometheus/alerts.yml by `UPDATE_DEPLOY=1 cargo test --test deploy`.\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: partner-gateway\n  labels: {{ app.kubernetes.io/name: partner-gateway }}\nspec:\n{}\n",
        block(groups, 2)
    )
}

#[test]
fn generated_manifests_are_up_to_date() {
    for (file, text) in [
        ("deploy/kubernetes/configmap.yaml", generated_configmap()),
        (
            "deploy/kubernetes/prometheusrule.yaml",
            generated_prometheusrule(),
        ),
    ] {
        let path = Path::new(ROOT).join(file);
        if std::env::var_os("UPDATE_DEPLOY").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{file} is out of date with policy/ or alerts.yml: regenerate it with \
             `UPDATE_DEPLOY=1 cargo test --test deploy`"
        );
    }
}

/// Every document of every manifest in `deploy/kubernetes` (not in its variant directories).
fn manifests() -> Vec<Value> {
    manifests_in("deploy/kubernetes")
}

fn manifests_in(dir: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} manifest"))
}

/// Environment variable names the bundled policy names (`*_env` keys and `upstream_auth.env`).
fn policy_env_names() -> BTreeSet<String> {
    fn visit(value: &Value, names: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if let (true, Some(name)) = (key == "env" || key.ends_with("_env"), v.as_str())
                    {
                        names.insert(name.to_string());
                    }
                    visit(v, names);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| visit(v, names)),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    let mut texts = vec![read("policy/gateway.yaml")];
    texts.extend(partner_files().into_iter().map(|(_, t)| t));
    for text in texts {
        visit(&serde_saphyr::from_str::<Value>(&text).unwrap(), &mut names);
    }
    assert!(names.contains("PARTNER_GATEWAY_ADMIN_TOKEN"), "{names:?}");
    names
}

/// The bundled policy's proxy and admin ports.
fn policy_ports() -> (u16, u16) {
    let loaded = partner_gateway::loader::load(&Path::new(ROOT).join("policy"), None).unwrap();
    let gw = &loaded.policy.gateway;
    (gw.listen.port(), gw.admin_listen.port())
}

/// Asserts `args` (after the subcommand) only uses flags `serve --help` documents.
fn assert_serve_flags(args: &[&str]) {
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag), "serve has no flag {flag}:\n{help}");
    }
}

#[test]
fn kubernetes_manifests_agree_with_the_policy_and_the_binary() {
    let docs = manifests();
    let (proxy_port, admin_port) = policy_ports();
    let deployment = of_kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap() as u16
    };
    assert_eq!(port("proxy"), proxy_port);
    assert_eq!(port("admin"), admin_port);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
    }

    // `serve --policy DIR`, DIR the policy mount; relative paths resolve against its parent.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    assert_serve_flags(&args[1..]);
    let policy_dir = args[args.iter().position(|a| *a == "--policy").unwrap() + 1];
    let base = Path::new(policy_dir).parent().unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = |path: &Path| {
        mounts
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()))
    };
    assert_eq!(mount(Path::new(policy_dir))["name"], "policy");
    let loaded = partner_gateway::loader::load(&Path::new(ROOT).join("policy"), None).unwrap();
    let optouts = loaded
        .policy
        .gateway
        .optouts
        .unwrap()
        .embedded_path()
        .unwrap()
        .to_path_buf();
    let relative = optouts.strip_prefix(ROOT).unwrap();
    let data = mount(&base.join(relative));
    assert_eq!(data["name"], "data");
    assert_ne!(data["readOnly"], true);
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
    };
    let claim = volume("data")["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap();
    assert_eq!(
        of_kind(&docs, "PersistentVolumeClaim")["metadata"]["name"],
        claim
    );

    // Every key of the policy ConfigMap is projected into the policy directory.
    let configmap = of_kind(&docs, "ConfigMap");
    let items: BTreeSet<&str> = volume("policy")["configMap"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    let keys: BTreeSet<&str> = configmap["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(items, keys);
    for item in volume("policy")["configMap"]["items"].as_array().unwrap() {
        let key = item["key"].as_str().unwrap();
        let expected = key.replacen("partners.", "partners/", 1);
        assert_eq!(item["path"], expected.as_str());
    }

    // Every secret the policy names comes from the Secret.
    let secret = of_kind(&docs, "Secret");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let env: Vec<&Value> = container["env"].as_array().unwrap().iter().collect();
    for name in policy_env_names() {
        let var = env
            .iter()
            .find(|e| e["name"] == name.as_str())
            .unwrap_or_else(|| panic!("the Deployment does not set {name}"));
        let source = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(source["name"], secret_name, "{name}");
        let key = source["key"].as_str().unwrap();
        assert!(
            secret["stringData"].get(key).is_some(),
            "the Secret has no {key}"
        );
    }
    for item in volume("certs")["secret"]["items"].as_array().unwrap() {
        assert!(secret["stringData"]
            .get(item["key"].as_str().unwrap())
            .is_some());
    }
    assert_eq!(
        mount(&base.join("certs/callers.jwks.json"))["name"],
        "certs"
    );

    // Runs as non-root on a read-only root filesystem.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["limits"]["memory"].is_string());

    let service = of_kind(&docs, "Service");
    for p in service["spec"]["ports"].as_array().unwrap() {
        let expected = if p["name"] == "proxy" {
            proxy_port
        } else {
            admin_port
        };
        assert_eq!(p["port"].as_u64().unwrap() as u16, expected);
        assert_eq!(p["targetPort"], p["name"]);
    }
    let monitor = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
    let rule = of_kind(&docs, "PrometheusRule");
    let alerts: Value = serde_saphyr::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
}

/// `Key=value` lines of the unit file.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_unit_agrees_with_the_policy_and_the_binary() {
    let unit = read("deploy/systemd/partner-gateway.service");
    let one = |key: &str| {
        let values = unit_values(&unit, key);
        assert_eq!(values.len(), 1, "{key}: {values:?}");
        values[0].clone()
    };
    let exec: Vec<String> = one("ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        exec[0].ends_with("/partner-gateway") && exec[1] == "serve",
        "{exec:?}"
    );
    let args: Vec<&str> = exec[2..].iter().map(String::as_str).collect();
    assert_serve_flags(&args);
    let policy_dir = PathBuf::from(&exec[exec.iter().position(|a| a == "--policy").unwrap() + 1]);
    let base = policy_dir.parent().unwrap();
    assert_eq!(Path::new(&one("WorkingDirectory")), base);

    let loaded = partner_gateway::loader::load(&Path::new(ROOT).join("policy"), None).unwrap();
    let optouts = loaded
        .policy
        .gateway
        .optouts
        .unwrap()
        .embedded_path()
        .unwrap()
        .to_path_buf();
    let store = base.join(optouts.strip_prefix(ROOT).unwrap());
    let writable = unit_values(&unit, "ReadWritePaths");
    assert!(
        writable.iter().any(|w| store.starts_with(w)),
        "{} is not writable under ProtectSystem=strict: {writable:?}",
        store.display()
    );
    assert!(one("ExecReload").contains("-HUP"));
    // The shadow policy's thread lowers its priority (setpriority, in `@resources`): allowed
    // again after the deny list, and a denied call fails instead of killing the process.
    let filters = unit_values(&unit, "SystemCallFilter");
    let denied = filters
        .iter()
        .position(|f| f.contains("@resources"))
        .unwrap();
    assert!(
        filters[denied + 1..].iter().any(|f| f == "setpriority"),
        "{filters:?}"
    );
    assert_eq!(one("SystemCallErrorNumber"), "EPERM");
    assert_ne!(one("User"), "root");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(!one("EnvironmentFile").is_empty());
    let example = read("deploy/systemd/partner-gateway.env.example");
    for name in policy_env_names() {
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{name}="))),
            "partner-gateway.env.example does not list {name}"
        );
    }
}

#[test]
fn sighup_reloads_the_policy_and_keeps_serving() {
    let mock = Mock::start();
    let (addr, admin) = (free_addr(), free_addr());
    let policy = PolicyDir::new(
        &gateway_yaml(addr, admin, ""),
        &[("acme-ship", &ship_partner(&mock.url()))],
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--policy"])
        .arg(policy.policy())
        .current_dir(policy.root())
        .env("SHIP_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok_reloads = || {
        let text = String::from_utf8(
            http1::send(&admin.to_string(), "GET", "/metrics", &[], None)
                .unwrap()
                .body,
        )
        .unwrap();
        metric(
            &text,
            r#"partner_gateway_policy_reloads_total{result="ok"}"#,
        )
    };
    let before = ok_reloads();
    std::thread::sleep(Duration::from_millis(200)); // the SIGHUP listener is installed
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok_reloads() < before + 1.0 {
        assert!(Instant::now() < deadline, "no reload after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the gateway"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The multi-replica variant: 3 replicas, a PodDisruptionBudget and a CPU autoscaler selecting
/// the gateway's pods, the opt-out database URL from a Secret, no data volume, and a
/// `gateway.yaml` that `check` accepts with the bundled partners and keeps opt-outs in PostgreSQL.
#[test]
fn the_replicas_variant_runs_three_replicas_on_postgres() {
    let docs = manifests_in("deploy/kubernetes/replicas");
    let kustomization = of_kind(&docs, "Kustomization");
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(resources.contains(&"../"), "{resources:?}");
    for r in &resources[1..] {
        assert!(
            Path::new(ROOT)
                .join("deploy/kubernetes/replicas")
                .join(r)
                .exists(),
            "{r}"
        );
    }
    let deployment = of_kind(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let url = env
        .iter()
        .find(|e| e["name"] == "OPTOUTS_DATABASE_URL")
        .unwrap();
    assert_eq!(
        url["valueFrom"]["secretKeyRef"]["name"],
        "partner-gateway-database"
    );
    let secret = of_kind(&docs, "Secret");
    assert_eq!(secret["metadata"]["name"], "partner-gateway-database");
    assert!(secret["stringData"]["OPTOUTS_DATABASE_URL"].is_string());

    let base = manifests();
    let selector = &of_kind(&base, "Deployment")["spec"]["selector"]["matchLabels"];
    let pdb = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");

    // The variant's gateway.yaml, with the bundled partners and certificates, passes `check`.
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy");
    std::fs::create_dir_all(policy.join("partners")).unwrap();
    for (name, text) in partner_files() {
        std::fs::write(policy.join("partners").join(format!("{name}.yaml")), text).unwrap();
    }
    let gateway = read("deploy/kubernetes/replicas/gateway.yaml");
    assert!(gateway.contains("optouts: { postgres: { url_env: OPTOUTS_DATABASE_URL"));
    std::fs::write(policy.join("gateway.yaml"), gateway).unwrap();
    std::os::unix::fs::symlink(Path::new(ROOT).join("certs"), tmp.path().join("certs")).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
