//! `serve`: load and validate the policy (refusing to start on any error), open the opt-out
//! store, and run the proxy and admin listeners until stopped.
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use crate::admin::AdminApp;
use crate::conn_limits::{HandshakeStep, Handshakes, LimitedApp};
use crate::gateway::Gateway;
use crate::loader::{self, ProcessEnv};
use crate::proxy::PartnerProxy;

/// A pingora server configured for this process (our own CLI, not pingora's argv parsing).
pub fn new_server() -> anyhow::Result<Server> {
    let conf = ServerConf {
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    Ok(server)
}

/// A TCP socket bound to `addr` (with `SO_REUSEADDR`, as pingora's listener and std's bind
/// set it) but not listening: the bind fails as a listener's would when the address is taken.
fn bind_only(addr: std::net::SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Loads the policy and builds the gateway state `serve` and `demo` run.
pub fn load_gateway(dir: &Path) -> anyhow::Result<Arc<Gateway>> {
    let before = crate::reload::before_start(dir);
    let loaded = loader::load(dir, Some(&ProcessEnv)).map_err(|d| loader::diagnostics_error(&d))?;
    // Before any store is opened: a second gateway on the same addresses (and, likely, the same
    // opt-out store and ledger) stops here instead of waiting for the ports for ever (the policy
    // already refused `listen` and `admin_listen` taking the same connections). Bound, not
    // listening: a client that connects in this moment is refused, never taken into a backlog
    // that closing these sockets would reset (a readiness probe polling a starting gateway met
    // such a reset).
    let mut held = Vec::new();
    for (key, addr) in [
        ("listen", loaded.policy.gateway.listen),
        ("admin_listen", loaded.policy.gateway.admin_listen),
    ] {
        let bound = bind_only(addr).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => ": is another gateway running?",
                _ => "",
            };
            anyhow::anyhow!("cannot listen on {addr} (`{key}`){hint}: {e}")
        })?;
        held.push(bound);
    }
    drop(held);
    for warning in &loaded.warnings {
        log::warn!("{}:{}: {}", warning.file, warning.line, warning.message);
    }
    for warning in loader::demo_key_warnings(&loaded.policy) {
        log::warn!("{warning}");
    }
    let candidate = loader::load_shadow(&loaded.policy, Some(&ProcessEnv))
        .map_err(|d| loader::diagnostics_error(&d))?;
    let candidate = candidate.map(|c| {
        for warning in &c.warnings {
            log::warn!("{}:{}: {}", warning.file, warning.line, warning.message);
        }
        log::info!(
            "shadow policy: version {} is decided beside the active one",
            c.policy.version
        );
        c.policy
    });
    let active = loader::build_active(dir, loaded.policy)
        .map_err(|lines| loader::lines_error(&lines))?
        .with_shadow(candidate);
    let gateway = Arc::new(Gateway::new(active, dir));
    crate::reload::started(&gateway, before);
    // A store that will not open leaves opt-out routes at 503 (and retries); the rest serves.
    // A database URL that cannot be used is a configuration error: `serve` refuses to start.
    crate::gateway::open_optouts_into(&gateway)?;
    // Likewise a ledger that cannot be written: every request that would be forwarded is 503.
    gateway.open_ledger();
    Ok(gateway)
}

/// Adds the proxy and admin listeners for `gateway` to `server`.
pub fn add_gateway_services(server: &mut Server, gateway: &Arc<Gateway>) -> anyhow::Result<()> {
    let active = gateway.active();
    let listen = active.policy.gateway.listen.to_string();
    let admin_listen = active.policy.gateway.admin_listen.to_string();
    // CONNECT reaches request_filter, which refuses it with a JSON 400 (pingora's own answer
    // would be a bare 405): no tunnel bypasses the filter either way.
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = true;
    // An HTTP/2 connection with no request under way is closed after the head deadline, as an
    // HTTP/1 connection that sends nothing is: idle connections cannot fill `max_connections`.
    options.h2_idle_timeout = Some(active.policy.gateway.limits.header_timeout);
    let mut app =
        pingora::proxy::http_proxy(&server.configuration, PartnerProxy::new(gateway.clone()));
    app.server_options = Some(options);
    let limited = LimitedApp::new(app, gateway.clone());
    let proxy = match &gateway.listener_tls {
        Some(tls) => {
            let handshakes = Handshakes::new(gateway.clone());
            let mut proxy = pingora::services::listening::Service::new(
                "partner-gateway proxy".to_string(),
                limited.with_handshakes(handshakes.clone()),
            );
            let step = Arc::new(HandshakeStep(handshakes));
            proxy.endpoints().set_pre_tls_callback(step);
            proxy.add_tls_with_settings(&listen, None, tls.settings()?);
            proxy
        }
        None => {
            let mut proxy = pingora::services::listening::Service::new(
                "partner-gateway proxy".to_string(),
                limited,
            );
            proxy.add_tcp(&listen);
            proxy
        }
    };
    server.add_service(proxy);
    // The admin listener is held to the same per-connection limits (its own connection count).
    let mut admin = pingora::services::listening::Service::new(
        "partner-gateway admin".to_string(),
        LimitedApp::new(AdminApp::new(gateway.clone()), gateway.clone()).admin(),
    );
    admin.add_tcp(&admin_listen);
    server.add_service(admin);
    Ok(())
}

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    // First of all: from here on a SIGHUP reloads (once serving) instead of ending the process.
    let hangups = crate::reload::Hangups::listen();
    let gateway = load_gateway(dir)
        .with_context(|| format!("not starting with the policy in {}", dir.display()))?;
    let mut server = new_server()?;
    add_gateway_services(&mut server, &gateway)?;
    crate::reload::watch(gateway.clone(), hangups);
    crate::memory::start();
    {
        // Dropped before serving: a reload must be able to free this policy (and its caches).
        let active = gateway.active();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            policy_version = %active.policy.version,
            partners = active.policy.partners.len(),
            listen = %active.policy.gateway.listen,
            admin_listen = %active.policy.gateway.admin_listen,
            "started"
        );
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(crate::shutdown::Signals(gateway.drain.clone())),
    });
    // Every request has been answered (or, past the drain's bound, cut): the shutdown
    // checkpoint is the ledger's last line.
    gateway.close_ledger();
    crate::logs::flush();
    std::process::exit(0)
}
