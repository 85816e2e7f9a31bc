/*!
`mock-partner`: an upstream that answers every request with a JSON echo of what it received
(method, path, query, headers, body), and keeps a log of them at `GET /_mock/requests` so tests
and the demo can see exactly what reached the partner — or that nothing did.
*/
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use serde_json::{json, Value};

/// `mock-partner --listen ADDR [--name NAME] [--delay-ms MS] [--tls-cert PEM --tls-key PEM
/// [--tls-client-ca PEM]]`.
#[derive(clap::Args)]
pub struct Args {
    /// IP:PORT to listen on.
    #[arg(long, value_parser = listen_addr)]
    pub listen: String,
    #[arg(long, default_value = "mock")]
    pub name: String,
    /// Wait this long before answering (to try timeouts).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Listen with TLS, presenting this PEM certificate chain (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates chaining to this PEM CA (mTLS); the log records each
    /// request's client certificate DNS name as `client_cert`.
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
}

/// An `IP:PORT` (a usage error otherwise).
fn listen_addr(text: &str) -> anyhow::Result<String> {
    text.parse::<std::net::SocketAddr>()
        .with_context(|| format!("{text:?} is not an IP:PORT address"))?;
    Ok(text.to_string())
}

/// Runs the mock partner of `args` until the process ends. Whether it can listen is checked
/// first (exit 1 otherwise), because the server's own bind fails on a thread of its own and
/// would leave the process running without listening.
pub fn run_args(args: Args) -> anyhow::Result<std::process::ExitCode> {
    std::net::TcpListener::bind(&args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let tls = MockTls {
        cert: args.tls_cert,
        key: args.tls_key,
        client_ca: args.tls_client_ca,
    };
    run(
        &args.listen,
        &args.name,
        Duration::from_millis(args.delay_ms),
        &tls,
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The mock's own log endpoint; requests to it are not recorded.
pub const LOG_PATH: &str = "/_mock/requests";

pub struct MockPartner {
    name: String,
    delay: Duration,
    received: Mutex<Vec<Value>>,
}

impl MockPartner {
    pub fn new(name: &str, delay: Duration) -> Arc<MockPartner> {
        Arc::new(MockPartner {
            name: name.to_string(),
            delay,
            received: Mutex::new(Vec::new()),
        })
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// TLS for the mock: its certificate and, to require client certificates, a CA.
#[derive(Debug, Clone, Default)]
pub struct MockTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// A pingora service running `mock` on `addr`.
pub fn service(mock: Arc<MockPartner>, addr: &str) -> Service<MockApp> {
    let mut service = Service::new(format!("mock partner {}", mock.name), MockApp(mock));
    service.add_tcp(addr);
    service
}

/// A pingora service running `mock` on `addr` over TLS (h1 and h2 by ALPN).
pub fn tls_service(
    mock: Arc<MockPartner>,
    addr: &str,
    tls: &MockTls,
) -> anyhow::Result<Service<MockApp>> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        anyhow::bail!("--tls-cert and --tls-key go together");
    };
    let state = crate::tls::listener_from_files(cert, key, tls.client_ca.as_deref())?;
    let mut service = Service::new(format!("mock partner {}", mock.name), MockApp(mock));
    service.add_tls_with_settings(addr, None, state.settings()?);
    Ok(service)
}

pub struct MockApp(Arc<MockPartner>);

#[async_trait]
impl ServeHttp for MockApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mock = &self.0;
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let headers: Vec<Value> = req
            .headers
            .iter()
            .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect();
        // The verified client certificate's first DNS name, when the mock asked for one.
        let client_cert = crate::tls::peer_identity(session.digest()).and_then(|p| p.san_dns);
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body.extend_from_slice(&chunk);
        }
        let reply = if method == "GET" && path == LOG_PATH {
            Value::Array(mock.received())
        } else {
            let text = String::from_utf8_lossy(&body).into_owned();
            let record = json!({
                "partner": mock.name,
                "method": method,
                "path": path,
                "query": query,
                "headers": headers,
                "body": text,
                "json": serde_json::from_slice::<Value>(&body).ok(),
                "client_cert": client_cert,
            });
            if let Ok(mut log) = mock.received.lock() {
                log.push(record.clone());
            }
            if !mock.delay.is_zero() {
                tokio::time::sleep(mock.delay).await;
            }
            json!({"received": record})
        };
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("content-length", bytes.len())
            .body(bytes)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

/// `partner-gateway mock-partner --listen ADDR`: runs until killed.
pub fn run(listen: &str, name: &str, delay: Duration, tls: &MockTls) -> anyhow::Result<()> {
    let mut server = crate::cli::serve::new_server()?;
    let mock = MockPartner::new(name, delay);
    let scheme = if tls.cert.is_some() || tls.key.is_some() {
        server.add_service(tls_service(mock, listen, tls)?);
        "https"
    } else {
        server.add_service(service(mock, listen));
        "http"
    };
    eprintln!("mock partner {name:?} listening on {listen}; log at {scheme}://{listen}{LOG_PATH}");
    server.run_forever();
}
