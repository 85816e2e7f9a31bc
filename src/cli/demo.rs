/*!
`demo`: the gateway's main job on the bundled policy, on loopback. It starts one mock partner
per partner and the gateway on free ports, opts one customer out of partner sharing, sends the
sample requests from `policy/examples/requests.yaml` as OhSoft's systems would (with a caller
token, and with cookies, user agent and forwarding headers that must not leak), and prints what
OhSoft sent next to what each partner received. Exits 0 when every sample behaved as the policy says.
*/
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gateway_core::filter::Change;
use gateway_core::optout::Scope;
use gateway_core::plan::{self, Incoming};
use gateway_core::policy::{self, Env, Upstream};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::demo_tls::{DemoCerts, DemoClient};
use crate::cli::mock_partner::{self, MockPartner};
use crate::cli::{serve, token};
use crate::gateway::{optouts_view, Active, Gateway};
use crate::loader;

/// One sample request of `policy/examples/requests.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleRequest {
    /// What the sample shows (the same format as policy tests, so `diff --samples` reads it too).
    #[allow(dead_code)]
    name: String,
    partner: String,
    method: String,
    path: String,
    body_file: Option<String>,
    caller: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
}

/// Secrets for the demo: the process environment first, then a clearly fake value, so the
/// demo runs on a fresh machine while `serve` still insists on real secrets.
struct DemoEnv;

impl Env for DemoEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| Some(format!("demo-only-{}", name.to_ascii_lowercase())))
    }
}

/// The demo caller key (DEMO ONLY, see certs/README.md) and its kid in certs/callers.jwks.json.
const DEMO_CALLER_KEY: &str = "certs/callers-demo.pem";
const DEMO_CALLER_KID: &str = "callers-demo-1";

/// The customer the demo opts out of partner sharing.
const OPTED_OUT_CUSTOMER: &str = "c-1002";

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?)
}

fn wait_for(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing is listening on {addr} after 15 s")
}

/// Runs the demo; with `tls`, both legs speak TLS with the DEMO certificates in `certs/`.
pub fn run(dir: &Path, tls: bool) -> anyhow::Result<ExitCode> {
    let source = loader::read_policy_dir(dir).map_err(|d| loader::diagnostics_error(&d))?;
    let loaded =
        policy::load(&source, Some(&DemoEnv)).map_err(|d| loader::diagnostics_error(&d))?;
    let mut policy = loaded.policy;

    // Everything on free loopback ports, the opt-out store in a scratch directory.
    let gateway_addr = free_port()?;
    let admin_addr = free_port()?;
    policy.gateway.listen = gateway_addr;
    policy.gateway.admin_listen = admin_addr;
    let scratch = std::env::temp_dir().join(format!("partner-gateway-demo-{}", std::process::id()));
    if let Some(optouts) = policy.gateway.optouts.as_mut() {
        *optouts = gateway_core::policy::OptOutStoreConfig::Embedded {
            path: scratch.join("optouts"),
        };
    }
    // The demo always keeps a disclosure ledger, in the scratch directory.
    let ledger_key = b"demo-only-ledger-key".to_vec();
    policy.gateway.ledger = Some(gateway_core::policy::LedgerConfig {
        path: scratch.join("ledger"),
        subject_key_env: gateway_core::ledger::DEFAULT_SUBJECT_KEY_ENV.to_string(),
        subject_key: Some(ledger_key.clone()),
        rotate_bytes: gateway_core::ledger::DEFAULT_ROTATE_BYTES,
    });
    let mut mocks = Vec::new();
    for (id, partner) in policy.partners.iter_mut() {
        let addr = free_port()?;
        let partner = Arc::get_mut(partner).context("policy is shared before the demo starts")?;
        partner.upstream = Upstream {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        mocks.push((id.clone(), addr, MockPartner::new(id, Duration::ZERO)));
    }
    let certs = if tls {
        let certs = DemoCerts::new(dir)?;
        certs.apply(&mut policy)?;
        Some(certs)
    } else {
        None
    };

    let active = Active::build(policy)?;
    let gateway = Arc::new(Gateway::new(active, dir));
    let store = Arc::new(
        crate::optout::OptOutStore::open(&scratch.join("optouts"))
            .context("cannot open the demo opt-out store")?,
    );
    store.put(
        OPTED_OUT_CUSTOMER,
        &[Scope::parse(Scope::PARTNER_SHARING).map_err(anyhow::Error::msg)?],
    )?;
    gateway.set_optouts(store);
    gateway.refresh_optout_gauge();
    gateway.open_ledger();

    let mut server = serve::new_server()?;
    for (_, addr, mock) in &mocks {
        let addr = addr.to_string();
        let _ = match &certs {
            Some(certs) => server.add_service(mock_partner::tls_service(
                mock.clone(),
                &addr,
                &certs.mock(),
            )?),
            None => server.add_service(mock_partner::service(mock.clone(), &addr)),
        };
    }
    let client = DemoClient {
        addr: gateway_addr,
        tls: certs.as_ref().map(DemoCerts::client).transpose()?,
    };
    serve::add_gateway_services(&mut server, &gateway)?;
    std::thread::spawn(move || server.run(pingora::server::RunArgs::default()));
    // TLS ports are probed with a whole handshake: a bare connection would be logged as a
    // failed one.
    let ready = |addr: SocketAddr| match &client.tls {
        Some(config) => DemoClient::wait_for_handshake(addr, config),
        None => wait_for(addr),
    };
    ready(gateway_addr)?;
    wait_for(admin_addr)?;
    for (_, addr, _) in &mocks {
        ready(*addr)?;
    }

    println!(
        "partner-gateway demo: gateway on {gateway_addr}, admin on {admin_addr}, policy {}",
        dir.display()
    );
    if tls {
        println!("TLS on both legs (DEMO certificates in certs/): the demo presents a caller certificate to the gateway, the gateway verifies every partner against the demo CA and presents its own client certificate");
    }
    println!("customer {OPTED_OUT_CUSTOMER:?} has opted out of partner_sharing\n");

    let manifest_path = dir.join("examples/requests.yaml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let samples: Vec<SampleRequest> = serde_saphyr::from_str(&manifest)
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest_path.display()))?;

    let mut failures = 0;
    for sample in &samples {
        if !show_sample(dir, &gateway, &client, admin_addr, sample)? {
            failures += 1;
        }
    }
    show_refusals(dir, &gateway, &client)?;
    for (id, _, mock) in &mocks {
        println!("{id} received {} request(s) in all", mock.received().len());
    }
    let ledger_ok = show_ledger(&gateway, &scratch.join("ledger"), admin_addr, &ledger_key)?;
    let _ = std::fs::remove_dir_all(&scratch);
    if !ledger_ok {
        println!("\nthe disclosure ledger did not verify");
        return Ok(ExitCode::from(1));
    }
    if failures > 0 {
        println!("\n{failures} sample(s) did not reach their partner");
        return Ok(ExitCode::from(1));
    }
    println!("\nevery partner received only what its policy allows");
    Ok(ExitCode::SUCCESS)
}

/// Closes the ledger (its shutdown checkpoint) and shows what an auditor and a customer get
/// from it: `audit verify` against the live JWKS, and `audit who-received` for the customer
/// who opted out of partner sharing.
fn show_ledger(
    gateway: &Gateway,
    ledger: &Path,
    admin_addr: SocketAddr,
    key: &[u8],
) -> anyhow::Result<bool> {
    let jwks = format!("http://{admin_addr}/.well-known/jwks.json");
    let jwks_file = ledger.with_file_name("jwks.json");
    std::fs::write(&jwks_file, crate::cli::token::load_jwks(&jwks)?)?;
    gateway.close_ledger();
    let files = crate::cli::audit::ledger_files(&[ledger.to_path_buf()])?;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    println!(
        "\n== the disclosure ledger: partner-gateway audit verify {} --jwks {jwks}",
        ledger.display()
    );
    let jwks_arg = jwks_file.display().to_string();
    let verified = crate::cli::audit::verify::run(&files, Some(&jwks_arg), &mut out, &mut err)?;
    println!("\n== partner-gateway audit who-received --customer {OPTED_OUT_CUSTOMER}");
    let query = crate::cli::audit::who::Query {
        customer: OPTED_OUT_CUSTOMER,
        since: None,
        until: None,
        format: "text",
    };
    crate::cli::audit::who::run(&files, key, &query, &mut out)?;
    println!("({OPTED_OUT_CUSTOMER} opted out of partner sharing: only contractors and authorities received their record)");
    Ok(verified == ExitCode::SUCCESS)
}

fn show_sample(
    dir: &Path,
    gateway: &Gateway,
    client: &DemoClient,
    admin_addr: SocketAddr,
    sample: &SampleRequest,
) -> anyhow::Result<bool> {
    let body = match &sample.body_file {
        Some(file) => {
            let path: PathBuf = dir.join("examples").join(file);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => Vec::new(),
    };
    let token = match &sample.caller {
        Some(caller) => demo_caller_token(dir, gateway, caller)?,
        None => None,
    };
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        // What a browser-facing system might carry along: none of it may reach a partner.
        ("cookie", "ohsoft_session=8f14e45f"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) OhSoftWeb/3.1",
        ),
        ("x-forwarded-for", "203.0.113.7"),
        ("referer", "https://shop.ohsoft.example/checkout"),
    ];
    let bearer = token.as_ref().map(|t| format!("Bearer {t}"));
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    for (name, value) in &sample.headers {
        headers.push((name, value));
    }
    let target = format!("/{}{}", sample.partner, sample.path);
    let response = client
        .send(
            &sample.method,
            &target,
            &headers,
            Some(&body).filter(|b| !b.is_empty()).map(|b| b.as_slice()),
        )
        .with_context(|| format!("sending {} {target}", sample.method))?;

    println!(
        "━━━ {} {} → partner {:?}: HTTP {}",
        sample.method, target, sample.partner, response.status
    );
    let received = response.json();
    let Some(record) = received.get("received") else {
        println!("refused: {}\n", String::from_utf8_lossy(&response.body));
        return Ok(false);
    };
    println!(
        "  the partner got: {} {}{}",
        record["method"].as_str().unwrap_or(""),
        record["path"].as_str().unwrap_or(""),
        record["query"]
            .as_str()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    if let Some(name) = record["client_cert"].as_str() {
        println!("  over TLS; the partner verified the gateway's client certificate ({name})");
    }
    let sent_pretty = pretty(&body);
    let received_body = record.get("body").and_then(Value::as_str).unwrap_or("");
    let received_pretty = pretty(received_body.as_bytes());
    side_by_side(
        "OhSoft sent",
        &sent_pretty,
        &format!("{} received", sample.partner),
        &received_pretty,
    );

    print_changes(gateway, sample, &headers, &body);
    let partner_headers: Vec<(String, String)> = record
        .get("headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    Some((
                        h.get(0)?.as_str()?.to_string(),
                        h.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    println!("  headers the partner received:");
    for (name, value) in &partner_headers {
        let shown = if name == "ohsoft-data-use-token"
            || name == "authorization"
            || name.contains("api-key")
        {
            format!("{}…", value.chars().take(24).collect::<String>())
        } else {
            value.clone()
        };
        println!("    {name}: {shown}");
    }
    for leaked in ["cookie", "user-agent", "x-forwarded-for", "referer"] {
        if partner_headers.iter().any(|(n, _)| n == leaked) {
            println!("  LEAK: {leaked} reached the partner");
            return Ok(false);
        }
    }
    if let Some((_, token)) = partner_headers
        .iter()
        .find(|(n, _)| n == "ohsoft-data-use-token")
    {
        let jwks_url = format!("http://{admin_addr}/.well-known/jwks.json");
        let claims = token::verify(&jwks_url, None, token)?;
        let digest_ok =
            claims["body_sha256"] == gateway_core::tagging::body_sha256(received_body.as_bytes());
        println!(
            "  data-use token verified against {jwks_url}: use={}, sub={}, body_sha256 {}",
            claims["use"],
            claims["sub"],
            if digest_ok {
                "matches the body received"
            } else {
                "DOES NOT MATCH"
            }
        );
        if !digest_ok {
            return Ok(false);
        }
    }
    println!();
    Ok(true)
}

/// What the filter did, as `explain` shows it: the same core call on the same input.
fn print_changes(gateway: &Gateway, sample: &SampleRequest, headers: &[(&str, &str)], body: &[u8]) {
    let active = gateway.active();
    let (path, query) = match sample.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (sample.path.as_str(), None),
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let Ok(target) = plan::resolve(
        &active.policy.partners,
        &sample.method,
        &format!("/{}{path}", sample.partner),
    ) else {
        return;
    };
    let source = gateway.optout_source();
    let incoming = Incoming {
        query,
        headers: &headers,
        body,
    };
    let Ok(outgoing) = plan::plan(
        &target,
        &incoming,
        &active.policy.gateway.limits,
        optouts_view(&source),
        true,
    ) else {
        return;
    };
    let mut removed = Vec::new();
    for change in &outgoing.report.changes {
        match change {
            Change::Removed { path } => removed.push(path.as_str()),
            Change::Transformed { path, transform } => {
                println!("  transformed: {path} → {}", transform.name())
            }
            Change::RecordDropped { path, subject } => {
                println!("  dropped:     {path} (customer {subject} opted out)")
            }
        }
    }
    if !removed.is_empty() {
        println!("  removed:     {}", removed.join(", "));
    }
    if !outgoing.query_removed.is_empty() {
        println!(
            "  removed query parameters: {}",
            outgoing.query_removed.join(", ")
        );
    }
    println!("  removed headers: {}", outgoing.headers_removed.join(", "));
}

/// A few requests the gateway must refuse, to show the partner receives nothing for them.
fn show_refusals(dir: &Path, gateway: &Gateway, client: &DemoClient) -> anyhow::Result<()> {
    println!("━━━ requests the gateway refuses (nothing reaches a partner):");
    let token = demo_caller_token(dir, gateway, "orders-service")?;
    let bearer = token.map(|t| format!("Bearer {t}")).unwrap_or_default();
    let marketing = demo_caller_token(dir, gateway, "marketing-service")?;
    let marketing = marketing.map(|t| format!("Bearer {t}")).unwrap_or_default();
    let cases: [(&str, &[u8], &str); 6] = [
        ("/no-such-partner/v1/x", b"{}", &bearer),
        ("/acme-ship/v1/shipments/../admin", b"{}", &bearer),
        ("/acme-ship/v1/shipments", b"{\"order_id\": \"o-1\"}", ""),
        (
            "/acme-ship/v1/shipments",
            b"{\"order_id\": \"o-1\", \"order_id\": \"o-2\"}",
            &bearer,
        ),
        (
            "/acme-ship/v1/shipments",
            b"{\"order_id\": {\"email\": \"ana.lima@example.com\"}}",
            &bearer,
        ),
        (
            "/brightmail-offers/v1/audiences",
            b"{\"contacts\": [{\"name\": \"Ana Lima\"}]}",
            &marketing,
        ),
    ];
    for (target, body, authorization) in cases {
        let mut headers = vec![("content-type", "application/json")];
        if !authorization.is_empty() {
            headers.push(("authorization", authorization));
        }
        let response = client.send("POST", target, &headers, Some(body))?;
        println!(
            "  POST {target} → {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    println!();
    Ok(())
}

/// A caller token for `caller`, signed with the demo caller key next to the policy's callers keys.
fn demo_caller_token(
    dir: &Path,
    gateway: &Gateway,
    caller: &str,
) -> anyhow::Result<Option<String>> {
    let active = gateway.active();
    let Some(callers) = active
        .policy
        .gateway
        .callers
        .as_ref()
        .filter(|c| !c.allow_unauthenticated)
    else {
        return Ok(None);
    };
    let base = dir
        .canonicalize()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let key = base.join(DEMO_CALLER_KEY);
    token::mint(
        &key,
        caller,
        Duration::from_secs(300),
        &callers.issuer,
        &callers.audience,
        Some(DEMO_CALLER_KID),
    )
    .map(Some)
}

/// Indents JSON text for reading, keeping member order and number literals as sent.
fn pretty(body: &[u8]) -> Vec<String> {
    gateway_core::policytest::pretty_json(body)
        .lines()
        .map(str::to_string)
        .collect()
}

fn side_by_side(left_title: &str, left: &[String], right_title: &str, right: &[String]) {
    const WIDTH: usize = 58;
    let clip = |s: &str| -> String {
        if s.chars().count() > WIDTH {
            format!("{}…", s.chars().take(WIDTH - 1).collect::<String>())
        } else {
            s.to_string()
        }
    };
    println!("  {:<WIDTH$} │ {}", left_title, right_title);
    println!("  {:─<WIDTH$}─┼─{:─<WIDTH$}", "", "");
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).map(|s| clip(s)).unwrap_or_default();
        let r = right.get(i).map(|s| clip(s)).unwrap_or_default();
        println!("  {l:<WIDTH$} │ {r}");
    }
}
