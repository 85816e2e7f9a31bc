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
use gateway_core::optout::Scope;
use gateway_core::policy::{self, Env, Policy, Upstream};
use serde::Deserialize;
use serde_json::Value;

mod leaks;
mod render;
mod tls;

use crate::cli::mock_partner::{self, MockPartner};
use crate::cli::{serve, token};
use crate::gateway::{Active, Gateway};
use crate::loader;
use tls::{DemoCerts, DemoClient};

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

/// Where the demo looks for free ports first: below Linux's ephemeral range (32768–60999), so
/// that no other program's outgoing connection or port-0 bind can take a port between this
/// check and the server binding it.
const DEMO_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Ports [`free_port`] handed out already. Each is free when picked but bound only later: the
/// same port picked twice would put two of the demo's servers on it (the gateway and a mock
/// partner, seen once), and the demo's requests would reach the wrong one.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A loopback port free right now and not handed out before: a random one of [`DEMO_PORTS`],
/// else one the system picks.
fn free_port() -> anyhow::Result<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut take = |addr: SocketAddr| {
        let new = !handed_out.contains(&addr.port());
        if new {
            handed_out.push(addr.port());
        }
        new.then_some(addr)
    };
    for _ in 0..64 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let span = u64::from(DEMO_PORTS.end - DEMO_PORTS.start);
        let port = DEMO_PORTS.start + u16::try_from(random % span).unwrap_or(0);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            if let Some(addr) = take(listener.local_addr()?) {
                return Ok(addr);
            }
        }
    }
    for _ in 0..64 {
        let listener =
            TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
        if let Some(addr) = take(listener.local_addr()?) {
            return Ok(addr);
        }
    }
    bail!("cannot find a free loopback port the demo has not handed out already")
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

/// Everything the demo started: the gateway, its client and the mock partners.
struct Demo {
    gateway: Arc<Gateway>,
    client: DemoClient,
    gateway_addr: SocketAddr,
    admin_addr: SocketAddr,
    mocks: Mocks,
    /// The opt-out store and the ledger, removed at the end.
    scratch: PathBuf,
    ledger_key: Vec<u8>,
}

/// `demo [--policy DIR] [--tls]`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub policy: crate::cli::args::PolicyArg,
    /// Both legs over TLS (mTLS too) with the DEMO certificates in certs/.
    #[arg(long)]
    pub tls: bool,
}

/// Runs the demo; with `tls`, both legs speak TLS with the DEMO certificates in `certs/`.
pub fn run(dir: &Path, tls: bool) -> anyhow::Result<ExitCode> {
    let demo = start(dir, tls)?;
    println!(
        "partner-gateway demo: gateway on {}, admin on {}, policy {}",
        demo.gateway_addr,
        demo.admin_addr,
        dir.display()
    );
    if tls {
        println!("TLS on both legs (DEMO certificates in certs/): the demo presents a caller certificate to the gateway, the gateway verifies every partner against the demo CA and presents its own client certificate");
    }
    println!("customer {OPTED_OUT_CUSTOMER:?} has opted out of partner sharing\n");

    let mut failures = 0;
    for sample in &read_samples(dir)? {
        if !show_sample(dir, &demo, sample)? {
            failures += 1;
        }
    }
    show_refusals(dir, &demo.gateway, &demo.client)?;
    for (id, _, mock) in &demo.mocks {
        println!("{id} received {} request(s) in all", mock.received().len());
    }
    let ledger = demo.scratch.join("ledger");
    let ledger_ok = show_ledger(&demo.gateway, &ledger, demo.admin_addr, &demo.ledger_key)?;
    let _ = std::fs::remove_dir_all(&demo.scratch);
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

fn read_samples(dir: &Path) -> anyhow::Result<Vec<SampleRequest>> {
    let manifest_path = dir.join("examples/requests.yaml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    serde_saphyr::from_str(&manifest)
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest_path.display()))
}

/// Each partner's mock: its id, address and recorder.
type Mocks = Vec<(String, SocketAddr, Arc<MockPartner>)>;

/// The bundled policy, with every listener and partner on a free loopback port, the opt-out
/// store and a disclosure ledger in `scratch`, and (with `tls`) the DEMO certificates.
fn demo_policy(dir: &Path, scratch: &Path, ledger_key: &[u8]) -> anyhow::Result<(Policy, Mocks)> {
    let source = loader::read_policy_dir(dir).map_err(|d| loader::diagnostics_error(&d))?;
    let loaded =
        policy::load(&source, Some(&DemoEnv)).map_err(|d| loader::diagnostics_error(&d))?;
    let mut policy = loaded.policy;
    policy.gateway.listen = free_port()?;
    policy.gateway.admin_listen = free_port()?;
    if let Some(optouts) = policy.gateway.optouts.as_mut() {
        *optouts = gateway_core::policy::OptOutStoreConfig::Embedded {
            path: scratch.join("optouts"),
        };
    }
    // The demo always keeps a disclosure ledger, in the scratch directory.
    policy.gateway.ledger = Some(gateway_core::policy::LedgerConfig {
        path: scratch.join("ledger"),
        subject_key_env: gateway_core::ledger::DEFAULT_SUBJECT_KEY_ENV.to_string(),
        subject_key: Some(ledger_key.to_vec()),
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
    Ok((policy, mocks))
}

/// The gateway with one opted-out customer, behind a pingora server that also runs the mock
/// partners; returns once everything accepts connections.
fn start(dir: &Path, tls: bool) -> anyhow::Result<Demo> {
    let scratch = std::env::temp_dir().join(format!("partner-gateway-demo-{}", std::process::id()));
    let ledger_key = b"demo-only-ledger-key".to_vec();
    let (mut policy, mocks) = demo_policy(dir, &scratch, &ledger_key)?;
    let certs = if tls {
        let certs = DemoCerts::new(dir)?;
        certs.apply(&mut policy)?;
        Some(certs)
    } else {
        None
    };
    let (gateway_addr, admin_addr) = (policy.gateway.listen, policy.gateway.admin_listen);
    let gateway = Arc::new(Gateway::new(Active::build(policy)?, dir));
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
    Ok(Demo {
        gateway,
        client,
        gateway_addr,
        admin_addr,
        mocks,
        scratch,
        ledger_key,
    })
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
    let jwks_arg = jwks_file.display().to_string();
    println!(
        "\n== the disclosure ledger: partner-gateway audit verify {} --jwks {jwks_arg}\n(the key set saved from {jwks} before the ledger was closed)",
        ledger.display()
    );
    let verified = crate::cli::audit::verify::run(&files, Some(&jwks_arg), &mut out, &mut err)?;
    println!("\n== partner-gateway audit who-received --customer {OPTED_OUT_CUSTOMER}");
    let query = crate::cli::audit::who::Query {
        customer: OPTED_OUT_CUSTOMER,
        since: None,
        until: None,
        format: crate::cli::args::TextOrJson::Text,
    };
    crate::cli::audit::who::run(&files, key, &query, &mut out)?;
    println!("({OPTED_OUT_CUSTOMER} opted out of partner sharing: only contractors and authorities received their record)");
    Ok(verified == ExitCode::SUCCESS)
}

/// Sends one sample through the gateway and shows what the partner received. False when it
/// did not reach the partner, or the partner received something it should not have.
fn show_sample(dir: &Path, demo: &Demo, sample: &SampleRequest) -> anyhow::Result<bool> {
    let body = match &sample.body_file {
        Some(file) => {
            let path: PathBuf = dir.join("examples").join(file);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => Vec::new(),
    };
    let token = match &sample.caller {
        Some(caller) => demo_caller_token(dir, &demo.gateway, caller)?,
        None => None,
    };
    // What a browser-facing system might carry along: none of it may reach a partner.
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(leaks::BROWSER_HEADERS);
    let bearer = token.as_ref().map(|t| format!("Bearer {t}"));
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    for (name, value) in &sample.headers {
        headers.push((name, value));
    }
    let target = format!("/{}{}", sample.partner, sample.path);
    let response = demo
        .client
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
    render::print_request(record);
    let received_body = record.get("body").and_then(Value::as_str).unwrap_or("");
    let partner = format!("{} received", sample.partner);
    render::side_by_side("OhSoft sent", &body, &partner, received_body.as_bytes());
    render::print_changes(&demo.gateway, sample, &headers, &body);
    let partner_headers = render::received_headers(record);
    render::print_headers(&demo.gateway, &sample.partner, &partner_headers);
    let ok =
        leaks::received_only_allowed(&partner_headers, received_body.as_bytes(), demo.admin_addr)?;
    if ok {
        println!();
    }
    Ok(ok)
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
