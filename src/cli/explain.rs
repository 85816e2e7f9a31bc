//! `explain`: the exact body a partner would receive for a request (stdout), and what was
//! removed, transformed or dropped, with the tags (stderr). Uses the same core call as the
//! proxy, so the bytes are the same. Exit 0 = would be forwarded, 3 = would be refused.
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use gateway_core::filter::Change;
use gateway_core::plan::{self, Incoming, Outgoing, Target};
use gateway_core::{Refusal, RefusalKind};

use crate::cli::args::{self, PolicyArg};
use crate::gateway::{optouts_view, Active};
use crate::loader;

/// Exit code when the request would be refused.
pub const EXIT_REFUSED: u8 = 3;

/// `explain --policy DIR --partner ID [--method M] --path P [--caller SUB] [--header ..] < body`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub policy: PolicyArg,
    #[arg(long)]
    pub partner: String,
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// The path at the partner, e.g. /v1/shipments (a query string may follow `?`).
    #[arg(long, value_parser = partner_path)]
    pub path: String,
    /// The calling system's `sub`, checked against the partner's allowed_callers.
    #[arg(long)]
    pub caller: Option<String>,
    /// Extra request header, `name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = args::header)]
    pub headers: Vec<(String, String)>,
}

/// The request target as the proxy reads an HTTP/1 request line: in a target with a space or a
/// control character, which its parser refuses, pingora percent-encodes those and `"`, `<`,
/// `>`, and serves the escaped target (`/v1/tickets/a b` as `/v1/tickets/a%20b`; the whole target is escaped then,
/// non-ASCII bytes too), so `explain` judges that one too.
fn as_the_proxy_reads(target: &str) -> std::borrow::Cow<'_, str> {
    const ILLEGAL: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'<')
        .add(b'>');
    // Its parser stops at a space or a control character. A line feed ends the line, and a
    // space before `HTTP/1.0` or `HTTP/1.1` ends the target where the version parses: such
    // targets stay refused. (`"`, `<`, `>` alone pass that parser, and the target is then
    // refused whole, as here.)
    let stops = |b: u8| b == b' ' || b.is_ascii_control();
    // (Only when the space is where the parser stops first: after a control character it
    // escapes the whole line, space and version included.)
    let first_stop = target.bytes().position(stops);
    let version_inside = first_stop.is_some_and(|at| {
        let rest = &target[at..];
        rest.starts_with(" HTTP/1.0") || rest.starts_with(" HTTP/1.1")
    });
    if target.bytes().any(stops) && !target.contains('\n') && !version_inside {
        // The whole target, non-ASCII bytes included, as pingora escapes it.
        percent_encoding::utf8_percent_encode(target, ILLEGAL).into()
    } else {
        target.into()
    }
}

/// `--path` is the path at the partner, so it starts with `/`.
fn partner_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path.to_string())
    } else {
        Err("the path at the partner starts with `/` (e.g. /v1/shipments)".into())
    }
}

/// The most of a body `explain` reads when the route's own limit is lower (64 MiB).
const MAX_EXPLAINED_BYTES: usize = 64 << 20;

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let active = load_active(&args.policy.policy, &args.partner)?;
    // Bounded like the gateway's read: past the body limit the decision is 413 anyway, and a
    // stream (whose limit is per line) is explained up to `MAX_EXPLAINED_BYTES`.
    let limit = active
        .policy
        .gateway
        .limits
        .max_body_bytes
        .max(MAX_EXPLAINED_BYTES);
    let mut body = Vec::new();
    std::io::stdin()
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut body)?;
    let truncated = body.len() > limit;
    let optouts = crate::gateway::open_optout_source(&active.policy);
    let escaped = as_the_proxy_reads(&args.path);
    let target = plan::without_fragment(&escaped);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let gateway_path = format!("/{}{path}", args.partner);
    let decision = (|| -> Result<(Target, Outgoing), Refusal> {
        // What the proxy's HTTP library refuses as a request target, before any route is
        // looked at.
        if http::uri::PathAndQuery::try_from(target).is_err() {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                "malformed request target: not a valid URI path and query (the gateway refuses its request head)",
            ));
        }
        let target = plan::resolve(&active.policy.partners, &args.method, &gateway_path)?;
        if let Some(caller) = &args.caller {
            active.authorize(&target.partner, caller)?;
        }
        // A body without a content-type is taken for what the route reads: JSON, or the
        // stream format of a streaming route.
        let mut headers = gateway_core::plan::borrowed_headers(&args.headers);
        if !body.is_empty() && !headers.iter().any(|(n, _)| *n == "content-type") {
            let media_type = target.route().stream.map(|s| s.media_type());
            headers.push(("content-type", media_type.unwrap_or("application/json")));
        }
        let incoming = Incoming {
            query,
            headers: &headers,
            body: &body,
        };
        let limits = &active.policy.gateway.limits;
        let outgoing = plan::plan(&target, &incoming, limits, optouts_view(&optouts), true)?;
        Ok((target, outgoing))
    })();
    // A body cut at the limit is still decided as the gateway decides it (from the head, or
    // 413: it is over `max_body_bytes`), except on a streaming route, which takes any size and
    // cannot be explained whole.
    let streamed = plan::resolve(&active.policy.partners, &args.method, &gateway_path)
        .is_ok_and(|t| t.route().stream.is_some());
    anyhow::ensure!(
        !(truncated && streamed),
        "explain reads at most {limit} bytes of a stream's body from stdin"
    );
    let mut err = std::io::stderr().lock();
    match decision {
        Err(refusal) => {
            writeln!(
                err,
                "refused: {} {} ({})",
                refusal.status(),
                refusal.code(),
                refusal.message()
            )?;
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Ok((target, outgoing)) => {
            write_report(&mut err, &target, &outgoing)?;
            let typed = args.headers.iter().any(|(n, _)| n == "content-type");
            if let (Some(format), false) = (target.route().stream, typed) {
                writeln!(
                    err,
                    "  note         no content-type given: read as {}, which the gateway needs in the header (else 415)",
                    format.media_type()
                )?;
            }
            if args.caller.is_none() && active.policy.gateway.callers.is_some() {
                writeln!(
                    err,
                    "caller: not checked (no --caller); the gateway forwards only for an authenticated caller the partner allows"
                )?;
            }
            write_tags(
                &mut err,
                &active,
                &target,
                &outgoing,
                args.caller.as_deref(),
            )?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&outgoing.body)?;
            // Flushed here: a failure at exit would go unseen, and exit 0 with no body shown.
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The policy, validated as `check` does; then only the secret that shapes this partner's body
/// (its pseudonymisation key) is read: explaining needs no partner credentials.
fn load_active(dir: &Path, partner: &str) -> anyhow::Result<Active> {
    let loaded = loader::load(dir, None).map_err(|d| loader::diagnostics_error(&d))?;
    let mut policy = loaded.policy;
    if let Some(p) = policy.partners.get_mut(partner).and_then(Arc::get_mut) {
        if let Some(name) = p.pseudonymize_key_env.clone() {
            match std::env::var(&name) {
                Ok(key) if !key.is_empty() => p.pseudonymize_key = Some(key.into_bytes()),
                _ => anyhow::bail!(
                    "{} (pseudonymize_key_env of partner {partner:?}) is not set: explain needs it to compute the pseudonyms the partner would receive",
                    gateway_core::policy::env_variable(&name)
                ),
            }
        }
    }
    Active::build(policy)
}

/// Where the request would go and what the filter did to it.
fn write_report(err: &mut dyn Write, target: &Target, outgoing: &Outgoing) -> anyhow::Result<()> {
    let partner = &target.partner;
    let scheme = if partner.upstream.tls {
        "https"
    } else {
        "http"
    };
    writeln!(
        err,
        "would forward to {} ({}, purpose {}) at {scheme}://{}{}",
        partner.id,
        partner.kind.as_str(),
        partner.purpose,
        partner.upstream.authority(),
        outgoing.path_and_query
    )?;
    for change in &outgoing.report.changes {
        match change {
            Change::Removed { path } => writeln!(err, "  removed      {path}")?,
            Change::Transformed { path, transform } => {
                writeln!(err, "  transformed  {path} ({})", transform.name())?
            }
            Change::RecordDropped { path, subject } => writeln!(
                err,
                "  dropped      {path} (customer {subject:?} opted out)"
            )?,
        }
    }
    for name in &outgoing.query_removed {
        writeln!(err, "  removed      query parameter {name:?}")?;
    }
    for name in &outgoing.headers_removed {
        writeln!(err, "  removed      header {name:?}")?;
    }
    writeln!(
        err,
        "  records forwarded: {}, dropped: {}",
        outgoing.report.records_forwarded, outgoing.report.records_dropped
    )?;
    write_disclosed(err, target, outgoing)
}

/// The fields disclosed (with their data categories) and how often.
fn write_disclosed(
    err: &mut dyn Write,
    target: &Target,
    outgoing: &Outgoing,
) -> anyhow::Result<()> {
    let route = target.route();
    for (field, n) in route.matched_fields(&outgoing.report.matched) {
        let category = field.category_label();
        writeln!(err, "  disclosed    {} ({category}) x{n}", field.path)?;
    }
    let (paths, categories) = route.disclosed(&outgoing.report.matched);
    if paths.is_empty() {
        writeln!(err, "  categories   none (no field is disclosed)")?;
    } else if categories.is_empty() {
        writeln!(
            err,
            "  categories   none (the disclosed fields have no category)"
        )?;
    } else {
        writeln!(err, "  categories   {}", categories.join(", "))?;
    }
    Ok(())
}

/// The data-use headers the partner would receive.
fn write_tags(
    err: &mut dyn Write,
    active: &Active,
    target: &Target,
    outgoing: &Outgoing,
    caller: Option<&str>,
) -> anyhow::Result<()> {
    let caller = caller.unwrap_or(crate::gateway::UNAUTHENTICATED_SUB);
    let (legal_basis, jti) = (outgoing.legal_basis.as_deref(), crate::gateway::new_jti());
    // A streamed request's token is signed before its body exists, as the proxy does.
    let headers = match target.route().stream {
        Some(_) => active.stream_data_use_headers(target, caller, legal_basis, &jti),
        None => active.data_use_headers(target, caller, outgoing.body_sha256(), legal_basis, &jti),
    }
    .unwrap_or_default();
    for (name, value) in headers {
        writeln!(err, "  tag          {name}: {value}")?;
    }
    Ok(())
}
