//! `explain`: the exact body a partner would receive for a request (stdout), and what was
//! removed, transformed or dropped, with the tags (stderr). Uses the same core call as the
//! proxy, so the bytes are the same. Exit 0 = would be forwarded, 3 = would be refused.
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use gateway_core::filter::Change;
use gateway_core::plan::{self, Incoming, Outgoing, Target};
use gateway_core::Refusal;

use crate::gateway::{optouts_view, Active};
use std::sync::Arc;

use crate::loader;

/// Exit code when the request would be refused.
pub const EXIT_REFUSED: u8 = 3;

pub fn run(
    dir: &Path,
    partner: &str,
    method: &str,
    path: &str,
    caller: Option<&str>,
    header_args: &[String],
) -> anyhow::Result<ExitCode> {
    // Validated as `check` does; then only the secret that shapes this partner's body (its
    // pseudonymisation key) is read: explaining needs no partner credentials.
    let loaded = loader::load(dir, None).map_err(|d| loader::diagnostics_error(&d))?;
    let mut policy = loaded.policy;
    if let Some(p) = policy.partners.get_mut(partner).and_then(Arc::get_mut) {
        if let Some(name) = p.pseudonymize_key_env.clone() {
            match std::env::var(&name) {
                Ok(key) if !key.is_empty() => p.pseudonymize_key = Some(key.into_bytes()),
                _ => anyhow::bail!(
                    "environment variable {name:?} (pseudonymize_key_env of partner {partner:?}) is not set: explain needs it to compute the pseudonyms the partner would receive"
                ),
            }
        }
    }
    let active = Active::build(policy)?;
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;

    let mut headers = Vec::new();
    for arg in header_args {
        let (name, value) = arg
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header {arg:?} is not `name: value`"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    if !body.is_empty() && !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    let (raw_path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let gateway_path = format!("/{partner}{raw_path}");
    let optouts = crate::gateway::open_optout_source(&active.policy);

    let decision = (|| -> Result<(Target, Outgoing), Refusal> {
        let target = plan::resolve(&active.policy.partners, method, &gateway_path)?;
        if let Some(caller) = caller {
            active.authorize(&target.partner, caller)?;
        }
        let incoming = Incoming {
            query,
            headers: &headers,
            body: &body,
        };
        let outgoing = plan::plan(
            &target,
            &incoming,
            &active.policy.gateway.limits,
            optouts_view(&optouts),
            true,
        )?;
        Ok((target, outgoing))
    })();

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
            let partner = &target.partner;
            writeln!(
                err,
                "would forward to {} ({}, purpose {}) at {}{}",
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
            let route = target.route();
            for (field, n) in route.fields.iter().zip(&outgoing.report.matched) {
                if *n > 0 {
                    let category = field
                        .category
                        .as_deref()
                        .unwrap_or(gateway_core::policy::categories::UNCATEGORIZED);
                    writeln!(err, "  disclosed    {} ({category}) x{n}", field.path)?;
                }
            }
            let (_, categories) = route.disclosed(&outgoing.report.matched);
            writeln!(err, "  categories   {}", categories.join(", "))?;
            for (name, value) in active
                .data_use_headers(
                    &target,
                    caller.unwrap_or(crate::gateway::UNAUTHENTICATED_SUB),
                    &outgoing.body,
                    outgoing.legal_basis.as_deref(),
                    &crate::gateway::new_jti(),
                )
                .unwrap_or_default()
            {
                writeln!(err, "  tag          {name}: {value}")?;
            }
            std::io::stdout().lock().write_all(&outgoing.body)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
