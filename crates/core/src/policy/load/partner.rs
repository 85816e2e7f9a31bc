/*!
`partners/<id>.yaml`: the partner's id, kind, purpose and upstream, its allowed callers, its
credential, the opt-outs it honours, the legal basis it is asked for, and its routes.
*/
use std::net::Ipv6Addr;
use std::path::Path;

use super::route::{check_route_overlaps, compile_route, validate_route, RouteCtx, RouteDraft};
use super::{
    env_secret, is_header_value, is_never_forwarded, is_token, line, Diags, Env, Invalid,
    SourceFile, DEFAULT_LEGAL_BASIS_HEADER, MIN_KEY_BYTES, NOT_FOR_UPSTREAM_AUTH,
};
use crate::optout::Scope;
use crate::policy::file::{self, PartnerFile};
use crate::policy::model::{Partner, PartnerKind, Upstream, UpstreamAuth};

// ---------------------------------------------------------------------------------------------
// partners/<id>.yaml

pub(super) fn partner_id(file: &SourceFile, d: &mut Diags) -> Option<String> {
    let name = Path::new(&file.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(id) = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
    else {
        d.error(&file.path, 1, Invalid::PartnerFileName(name));
        return None;
    };
    let valid = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        d.error(&file.path, 1, Invalid::PartnerId(id.to_string()));
        return None;
    }
    Some(id.to_string())
}

fn parse_kind(s: &str) -> Option<PartnerKind> {
    match s {
        "contractor" => Some(PartnerKind::Contractor),
        "business_partner" => Some(PartnerKind::BusinessPartner),
        "co_branded" => Some(PartnerKind::CoBranded),
        "government" => Some(PartnerKind::Government),
        _ => None,
    }
}

pub(super) fn validate_partner(
    path: &str,
    text: &str,
    id: &str,
    has_optouts: Option<bool>,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<Partner> {
    let p: PartnerFile = match file::parse_partner(text) {
        Ok(p) => p,
        Err(e) => {
            for e in file::all_errors::<PartnerFile>(text, e) {
                d.error(path, e.line, Invalid::Yaml(e));
            }
            return None;
        }
    };
    let before = d.errors.len();

    let kind = parse_kind(&p.kind.value);
    if kind.is_none() {
        d.error(path, line(&p.kind), Invalid::Kind(p.kind.value.clone()));
    }
    let purpose = &p.purpose.value;
    let purpose_ok = !purpose.is_empty()
        && purpose.trim() == purpose
        && purpose
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if !purpose_ok {
        d.error(path, line(&p.purpose), Invalid::Purpose(purpose.clone()));
    }
    let upstream = match parse_upstream(&p.upstream.value) {
        Ok(u) => Some(u),
        Err(reason) => {
            d.error(
                path,
                line(&p.upstream),
                Invalid::Upstream {
                    value: p.upstream.value.clone(),
                    reason,
                },
            );
            None
        }
    };

    let mut allowed_callers = Vec::new();
    for caller in p.allowed_callers.iter().flat_map(|c| &c.value) {
        if caller.value.is_empty()
            || caller
                .value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            d.error(path, line(caller), Invalid::Caller(caller.value.clone()));
        } else if !allowed_callers.contains(&caller.value) {
            allowed_callers.push(caller.value.clone());
        }
    }
    if p.allowed_callers
        .as_ref()
        .is_none_or(|c| c.value.is_empty())
    {
        let at = p.allowed_callers.as_ref().map_or(1, line);
        d.warn(path, at, Invalid::NoCallers);
    }

    // The partner's credential.
    let mut upstream_auth = None;
    let mut auth_header = None;
    if let Some(auth) = &p.upstream_auth {
        let auth = &auth.value;
        let header = auth.header.value.to_ascii_lowercase();
        if !is_token(&header) {
            d.error(
                path,
                line(&auth.header),
                Invalid::HeaderName(auth.header.value.clone()),
            );
        } else if NOT_FOR_UPSTREAM_AUTH.contains(&header.as_str())
            || header.starts_with("proxy-")
            || header.starts_with("ohsoft-data-use")
        {
            d.error(
                path,
                line(&auth.header),
                Invalid::ForbiddenAuthHeader(auth.header.value.clone()),
            );
        } else {
            auth_header = Some(header.clone());
        }
        let prefix = auth
            .prefix
            .as_ref()
            .map(|p| p.value.clone())
            .unwrap_or_default();
        if let Some(prefix_spanned) = &auth.prefix {
            if !is_header_value(&prefix) {
                d.error(
                    path,
                    line(prefix_spanned),
                    Invalid::HeaderValue(prefix.clone()),
                );
            }
        }
        if let Some(secret) = env_secret(path, &auth.env, "upstream_auth.env", env, d) {
            if is_header_value(&secret) {
                upstream_auth = Some(UpstreamAuth {
                    header,
                    value: format!("{prefix}{secret}"),
                });
            } else {
                d.error(
                    path,
                    line(&auth.env),
                    Invalid::EnvNotHeaderValue {
                        field: "upstream_auth.env",
                        name: auth.env.value.clone(),
                    },
                );
            }
        }
    }

    // Opt-outs.
    let default_scopes = match kind {
        Some(PartnerKind::BusinessPartner | PartnerKind::CoBranded) => {
            vec![Scope::PARTNER_SHARING.to_string(), format!("partner:{id}")]
        }
        _ => Vec::new(),
    };
    let mut honor_optouts: Vec<Scope> = Vec::new();
    let scopes_line = p.honor_optouts.as_ref().map_or(line(&p.kind), line);
    match &p.honor_optouts {
        None => {
            honor_optouts = default_scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect()
        }
        Some(list) => {
            for s in &list.value {
                match Scope::parse(&s.value) {
                    Ok(scope) if !honor_optouts.contains(&scope) => honor_optouts.push(scope),
                    Ok(_) => {}
                    Err(message) => d.error(path, line(s), Invalid::Scope(message)),
                }
            }
            for required in &default_scopes {
                if !list.value.iter().any(|s| &s.value == required) {
                    let kind = kind.map_or("", PartnerKind::as_str);
                    d.warn(
                        path,
                        line(list),
                        Invalid::MustHonour {
                            kind,
                            scope: required.clone(),
                        },
                    );
                }
            }
        }
    }
    let written: Vec<String> = match &p.honor_optouts {
        Some(list) => list.value.iter().map(|s| s.value.clone()).collect(),
        None => default_scopes.clone(),
    };
    let honours = !written.is_empty();
    if honours && has_optouts == Some(false) {
        d.error(
            path,
            scopes_line,
            Invalid::NoOptOutStore(written.join(", ")),
        );
    }

    // Legal basis: only government partners are asked for one.
    let not_government = kind.filter(|k| *k != PartnerKind::Government);
    let government_only = |key: &'static str, at: u64, d: &mut Diags| {
        if let Some(k) = not_government {
            d.error(
                path,
                at,
                Invalid::GovernmentOnly {
                    key,
                    kind: k.as_str(),
                },
            );
        }
        not_government.is_none()
    };
    let legal_basis_header = match &p.legal_basis_header {
        Some(h) if !government_only("legal_basis_header", line(h), d) => None,
        Some(h) => {
            let name = h.value.to_ascii_lowercase();
            if !is_token(&name) {
                d.error(path, line(h), Invalid::HeaderName(h.value.clone()));
            } else if is_never_forwarded(&name) {
                d.error(path, line(h), Invalid::ForbiddenHeader(h.value.clone()));
            }
            Some(name)
        }
        None if kind == Some(PartnerKind::Government) => {
            Some(DEFAULT_LEGAL_BASIS_HEADER.to_string())
        }
        None => None,
    };

    let legal_basis_format = match &p.legal_basis_format {
        Some(f) if !government_only("legal_basis_format", line(f), d) => None,
        Some(f) => match regex::Regex::new(&format!("^(?:{})$", f.value)) {
            Ok(re) => Some(re),
            Err(e) => {
                d.error(
                    path,
                    line(f),
                    Invalid::LegalBasisFormat(f.value.clone(), e.to_string()),
                );
                None
            }
        },
        None => None,
    };

    // Routes.
    let ctx = RouteCtx {
        path,
        honours,
        credential_header: auth_header.as_deref(),
    };
    let drafts: Vec<RouteDraft> = p
        .routes
        .value
        .iter()
        .map(|r| validate_route(&ctx, r, d))
        .collect();
    if drafts.is_empty() {
        d.warn(path, line(&p.routes), Invalid::NoRoutes);
    }
    check_route_overlaps(path, &drafts, d);

    let pseudonymize_lines: Vec<u64> = drafts.iter().filter_map(|r| r.pseudonymize_line).collect();
    let mut pseudonymize_key = None;
    match (&p.pseudonymize_key_env, pseudonymize_lines.first()) {
        (None, Some(&first)) => d.error(path, first, Invalid::PseudonymizeWithoutKey),
        (Some(name), used) => {
            if used.is_none() {
                d.warn(path, line(name), Invalid::UnusedKey);
            }
            if let Some(key) = env_secret(path, name, "pseudonymize_key_env", env, d) {
                if key.len() < MIN_KEY_BYTES {
                    d.warn(
                        path,
                        line(name),
                        Invalid::ShortKey(name.value.clone(), key.len()),
                    );
                }
                pseudonymize_key = Some(key.into_bytes());
            }
        }
        (None, None) => {}
    }

    // Filter programs: compiled for every route whose own paths are sound, so their mistakes
    // are reported alongside everything else.
    let mut routes = Vec::new();
    for draft in drafts {
        if let Some(route) = compile_route(path, draft, d) {
            routes.push(route);
        }
    }

    if d.errors.len() > before {
        return None;
    }
    Some(Partner {
        id: id.to_string(),
        kind: kind?,
        purpose: purpose.clone(),
        upstream: upstream?,
        routes,
        allowed_callers,
        pseudonymize_key,
        pseudonymize_key_env: p.pseudonymize_key_env.as_ref().map(|n| n.value.clone()),
        upstream_auth,
        honor_optouts,
        legal_basis_header,
        legal_basis_format,
    })
}

/// `http(s)://host[:port]` with nothing else but an optional final `/`.
pub(super) fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let scheme_end = text.find("://").ok_or_else(|| "no scheme".to_string())?;
    let scheme = &text[..scheme_end];
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(format!("unsupported scheme {scheme:?}")),
    };
    let rest = &text[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains('?') {
        return Err("a query is not allowed".to_string());
    }
    if tail.contains('#') {
        return Err("a fragment is not allowed".to_string());
    }
    if !(tail.is_empty() || tail == "/") {
        return Err(format!(
            "a path is not allowed ({tail:?}); routes give the path"
        ));
    }
    if authority.contains('@') {
        return Err(
            "user info is not allowed (put the partner's credential in upstream_auth)".to_string(),
        );
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in host".to_string())?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("invalid IPv6 address {inside:?}"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the host"))?,
            ),
        };
        (inside.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err("missing host".to_string());
    }
    if !host.contains(':')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("invalid port {p:?}")),
        },
    };
    Ok(Upstream { tls, host, port })
}
