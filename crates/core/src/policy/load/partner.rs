/*!
`partners/<id>.yaml`: the partner's id, kind, purpose and upstream, its allowed callers, its
credential, the opt-outs it honours, the legal basis it is asked for, and its routes.
*/
use std::net::Ipv6Addr;
use std::path::Path;

use super::route::{check_route_overlaps, compile_route, validate_route, RouteCtx, RouteDraft};
use super::{
    env_secret, env_variable, is_header_value, is_never_forwarded, is_token, line,
    may_carry_partner_credential, warn_short_key, Diags, Env, Invalid, PartnerTlsOnly, SourceFile,
    DEFAULT_LEGAL_BASIS_HEADER,
};
use crate::optout::Scope;
use crate::policy::file::{self, PartnerFile, Spanned, UpstreamAuthFile};
use crate::policy::model::{CredentialSource, Partner, PartnerKind, Route, Upstream, UpstreamAuth};

/// What can be wrong with a partner, apart from its routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidPartner {
    #[error(
        "invalid partner id {0:?} (the file name): expected lowercase letters, digits, `_` and `-`, starting with a letter or digit"
    )]
    PartnerId(String),
    #[error(
        "partner id {0:?} (the file name) is reserved: metrics count requests that name no partner under `partner=\"unknown\"`, which this partner's traffic would join"
    )]
    ReservedPartnerId(String),
    #[error("partner file name {0:?} must end in .yaml")]
    PartnerFileName(String),
    #[error("partner {id:?} is also defined by {other}")]
    DuplicatePartner { id: String, other: String },
    #[error("unknown kind {0:?} (expected one of: contractor, business_partner, co_branded, government)")]
    Kind(String),
    #[error("invalid purpose {0:?}: expected printable ASCII text without `\"` or `\\`")]
    Purpose(String),
    #[error("invalid upstream {value:?}: {reason} (expected http(s)://host[:port])")]
    Upstream { value: String, reason: String },
    #[error("invalid caller {0:?} in allowed_callers: expected a caller `sub` without spaces")]
    Caller(String),
    #[error("no allowed_callers: every request to this partner will be refused")]
    NoCallers,
    #[error("no routes: every request to this partner will be refused")]
    NoRoutes,
    #[error(
        "transform \"pseudonymize\" needs pseudonymize_key_env (the environment variable holding this partner's HMAC key)"
    )]
    PseudonymizeWithoutKey,
    #[error("pseudonymize_key_env is set but no route uses pseudonymize")]
    UnusedKey,
    #[error(
        "partner {other:?} pseudonymises with the same key ({how}): each partner needs its own, or the two can link their pseudonyms"
    )]
    SharedKey { other: String, how: &'static str },
    #[error(
        "partner {other:?} is sent the same credential ({how}): each partner would hold the other's API credential"
    )]
    SharedCredential { other: String, how: &'static str },
    #[error(
        "this partner's {what} comes from {how} as {other}: a secret sent or used here would be that one too; give each secret a variable of its own"
    )]
    SecretReused {
        what: &'static str,
        other: String,
        how: &'static str,
    },
    #[error("{0}")]
    Scope(String),
    #[error(
        "{kind} partners normally honour {scope:?}, which the privacy policy promises; this honor_optouts leaves it out"
    )]
    MustHonour { kind: &'static str, scope: String },
    #[error("this partner honours opt-outs ({0}) but gateway.yaml has no `optouts` store")]
    NoOptOutStore(String),
    #[error("invalid legal_basis_format {0:?}: {1}")]
    LegalBasisFormat(String, String),
    #[error("{key} is only for government partners (this partner's kind is {kind:?})")]
    GovernmentOnly {
        key: &'static str,
        kind: &'static str,
    },
    #[error("upstream_auth.prefix holds characters not allowed in a header value (the value is not shown)")]
    HeaderValue,
    #[error("upstream_auth.header is not a header name (letters, digits and !#$%&'*+-.^_`|~); the value is not shown in case it holds the credential")]
    AuthHeaderName,
    #[error(
        "upstream_auth.header {0:?} is not allowed: the gateway sets or strips that header itself"
    )]
    ForbiddenAuthHeader(String),
    #[error(
        "{} named by {field} holds characters not allowed in a header value",
        env_variable(name)
    )]
    EnvNotHeaderValue { field: &'static str, name: String },
}

pub(super) fn partner_id(file: &SourceFile, d: &mut Diags) -> Option<String> {
    let name = Path::new(&file.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(id) = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
    else {
        d.error(&file.path, 1, InvalidPartner::PartnerFileName(name));
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
        d.error(&file.path, 1, InvalidPartner::PartnerId(id.to_string()));
        return None;
    }
    if id == crate::policy::RESERVED_PARTNER_ID {
        d.error(
            &file.path,
            1,
            InvalidPartner::ReservedPartnerId(id.to_string()),
        );
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

/// Validates one partner file, section by section; `None` when any of it is wrong.
pub(super) fn validate_partner(
    path: &str,
    text: &str,
    id: &str,
    has_optouts: Option<bool>,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Result<Partner, Option<Box<PartnerTlsOnly>>> {
    let before = d.errors.len();
    let p: PartnerFile = match file::parse_partner(text) {
        Ok(p) => p,
        Err(e) => {
            let (errors, rest) = file::all_errors::<PartnerFile>(text, e);
            for e in errors {
                d.error(path, e.line, Invalid::Yaml(e));
            }
            // Only unknown keys were wrong: the rest of the file is still checked (and the
            // partner is refused below, as errors were recorded).
            rest.ok_or(None)?
        }
    };
    let kind = parse_kind(&p.kind.value);
    if kind.is_none() {
        d.error(
            path,
            line(&p.kind),
            InvalidPartner::Kind(p.kind.value.clone()),
        );
    }
    check_purpose(path, &p.purpose, d);
    let upstream = upstream(path, &p.upstream, d);
    let tls = p.tls.as_ref().and_then(|t| {
        let mut problems = Vec::new();
        let tls = crate::policy::tls::partner(path, t, upstream.as_ref(), base, &mut problems);
        for p in problems {
            d.error(path, p.line, Invalid::Tls(p.message));
        }
        tls
    });
    let allowed_callers = allowed_callers(path, p.allowed_callers.as_ref(), d);
    let credential = credential(path, p.upstream_auth.as_ref(), env, d);
    let optouts = opt_outs(path, &p, id, kind, has_optouts, d);
    let legal_basis_header = legal_basis_header(path, &p, kind, d);
    let legal_basis_format = legal_basis_format(path, &p, kind, d);
    let ctx = RouteCtx {
        path,
        honours: optouts.honours,
        credential_header: credential.header.as_deref(),
    };
    let (routes, pseudonymize_key) = routes(&ctx, &p, env, d);

    let valid = d.errors.len() == before;
    let (true, Some(kind), Some(upstream)) = (valid, kind, upstream) else {
        // Refused; its certificate files are still worth loading for `check`.
        let partner = id.to_string();
        return Err(tls.map(|tls| Box::new(PartnerTlsOnly { partner, tls })));
    };
    Ok(Partner {
        id: id.to_string(),
        kind,
        purpose: p.purpose.value.clone(),
        upstream,
        routes,
        allowed_callers,
        pseudonymize_key,
        pseudonymize_key_env: p.pseudonymize_key_env.as_ref().map(|n| n.value.clone()),
        upstream_auth: credential.auth,
        upstream_auth_source: p.upstream_auth.as_ref().map(|a| CredentialSource {
            header: a.value.header.value.to_ascii_lowercase(),
            env: a.value.env.value.clone(),
        }),
        honor_optouts: optouts.scopes,
        legal_basis_header,
        legal_basis_format,
        tls,
    })
}

/// Printable ASCII without `"` or a backslash, and no surrounding spaces (it goes into a header).
fn check_purpose(path: &str, purpose: &Spanned<String>, d: &mut Diags) {
    let text = &purpose.value;
    let ok = !text.is_empty()
        && text.trim() == text
        && text
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if !ok {
        d.error(path, line(purpose), InvalidPartner::Purpose(text.clone()));
    }
}

fn upstream(path: &str, upstream: &Spanned<String>, d: &mut Diags) -> Option<Upstream> {
    match parse_upstream(&upstream.value) {
        Ok(u) => Some(u),
        Err(reason) => {
            d.error(
                path,
                line(upstream),
                InvalidPartner::Upstream {
                    value: shown_upstream(&upstream.value),
                    reason,
                },
            );
            None
        }
    }
}

/// Caller `sub`s without spaces, deduplicated; none at all is a warning.
fn allowed_callers(
    path: &str,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    d: &mut Diags,
) -> Vec<String> {
    let mut allowed = Vec::new();
    for caller in list.iter().flat_map(|c| &c.value) {
        if caller.value.is_empty()
            || caller
                .value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            d.error(
                path,
                line(caller),
                InvalidPartner::Caller(caller.value.clone()),
            );
        } else if !allowed.contains(&caller.value) {
            allowed.push(caller.value.clone());
        }
    }
    if list.is_none_or(|c| c.value.is_empty()) {
        d.warn(path, list.map_or(1, line), InvalidPartner::NoCallers);
    }
    allowed
}

/// The partner's credential (`upstream_auth`).
struct Credential {
    /// Resolved in serve mode only.
    auth: Option<UpstreamAuth>,
    /// The (valid, lowercase) header it travels in: callers may not send it.
    header: Option<String>,
}

fn credential(
    path: &str,
    auth: Option<&Spanned<UpstreamAuthFile>>,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Credential {
    let mut credential = Credential {
        auth: None,
        header: None,
    };
    let Some(auth) = auth else {
        return credential;
    };
    let auth = &auth.value;
    let header = auth.header.value.to_ascii_lowercase();
    if !is_token(&header) {
        d.error(path, line(&auth.header), InvalidPartner::AuthHeaderName);
    } else if !may_carry_partner_credential(&header) {
        d.error(
            path,
            line(&auth.header),
            InvalidPartner::ForbiddenAuthHeader(auth.header.value.clone()),
        );
    } else {
        credential.header = Some(header.clone());
    }
    let prefix = auth
        .prefix
        .as_ref()
        .map(|p| p.value.clone())
        .unwrap_or_default();
    if let Some(prefix_spanned) = &auth.prefix {
        if !is_header_value(&prefix) {
            d.error(path, line(prefix_spanned), InvalidPartner::HeaderValue);
        }
    }
    if let Some(secret) = env_secret(path, &auth.env, "upstream_auth.env", env, d) {
        if is_header_value(&secret) {
            credential.auth = Some(UpstreamAuth {
                header,
                value: format!("{prefix}{secret}"),
                secret,
            });
        } else {
            d.error(
                path,
                line(&auth.env),
                InvalidPartner::EnvNotHeaderValue {
                    field: "upstream_auth.env",
                    name: auth.env.value.clone(),
                },
            );
        }
    }
    credential
}

/// The opt-out scopes a partner honours.
struct OptOuts {
    scopes: Vec<Scope>,
    /// Some scope is honoured as written (even one that does not parse).
    honours: bool,
}

/// `honor_optouts`, or the kind's default scopes when it is absent.
fn opt_outs(
    path: &str,
    p: &PartnerFile,
    id: &str,
    kind: Option<PartnerKind>,
    has_optouts: Option<bool>,
    d: &mut Diags,
) -> OptOuts {
    let default_scopes = match kind {
        Some(PartnerKind::BusinessPartner | PartnerKind::CoBranded) => {
            vec![Scope::PARTNER_SHARING.to_string(), format!("partner:{id}")]
        }
        _ => Vec::new(),
    };
    let (scopes, written) = match &p.honor_optouts {
        None => (
            default_scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
            default_scopes,
        ),
        Some(list) => {
            let scopes = written_scopes(path, list, d);
            for required in &default_scopes {
                if !list.value.iter().any(|s| &s.value == required) {
                    let kind = kind.map_or("", PartnerKind::as_str);
                    let scope = required.clone();
                    d.warn(path, line(list), InvalidPartner::MustHonour { kind, scope });
                }
            }
            let written = list.value.iter().map(|s| s.value.clone()).collect();
            (scopes, written)
        }
    };
    let honours = !written.is_empty();
    if honours && has_optouts == Some(false) {
        let at = p.honor_optouts.as_ref().map_or(line(&p.kind), line);
        d.error(path, at, InvalidPartner::NoOptOutStore(written.join(", ")));
    }
    OptOuts { scopes, honours }
}

/// The scopes of an `honor_optouts` list, deduplicated.
fn written_scopes(path: &str, list: &Spanned<Vec<Spanned<String>>>, d: &mut Diags) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = Vec::new();
    for s in &list.value {
        match Scope::parse(&s.value) {
            Ok(scope) if !scopes.contains(&scope) => scopes.push(scope),
            Ok(_) => {}
            Err(message) => d.error(path, line(s), InvalidPartner::Scope(message)),
        }
    }
    scopes
}

/// Only government partners are asked for a legal basis: its keys on any other kind are an
/// error (reported at `at`). True when the key may be used.
fn government_only(
    path: &str,
    kind: Option<PartnerKind>,
    key: &'static str,
    at: u64,
    d: &mut Diags,
) -> bool {
    match kind.filter(|k| *k != PartnerKind::Government) {
        Some(k) => {
            let kind = k.as_str();
            d.error(path, at, InvalidPartner::GovernmentOnly { key, kind });
            false
        }
        None => true,
    }
}

/// The legal-basis header: as written, or the default for government partners.
fn legal_basis_header(
    path: &str,
    p: &PartnerFile,
    kind: Option<PartnerKind>,
    d: &mut Diags,
) -> Option<String> {
    match &p.legal_basis_header {
        Some(h) if !government_only(path, kind, "legal_basis_header", line(h), d) => None,
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
    }
}

/// The legal-basis format: a regular expression the whole value must match.
fn legal_basis_format(
    path: &str,
    p: &PartnerFile,
    kind: Option<PartnerKind>,
    d: &mut Diags,
) -> Option<regex::Regex> {
    let f = p.legal_basis_format.as_ref()?;
    if !government_only(path, kind, "legal_basis_format", line(f), d) {
        return None;
    }
    match regex::Regex::new(&format!("^(?:{})$", f.value)) {
        Ok(re) => Some(re),
        Err(e) => {
            let problem = InvalidPartner::LegalBasisFormat(f.value.clone(), e.to_string());
            d.error(path, line(f), problem);
            None
        }
    }
}

/// Every route, the checks across routes, the pseudonymisation key the routes need, and the
/// filter programs: compiled for every route whose own paths are sound, so their mistakes are
/// reported alongside everything else.
fn routes(
    ctx: &RouteCtx<'_>,
    p: &PartnerFile,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> (Vec<Route>, Option<Vec<u8>>) {
    let path = ctx.path;
    let drafts: Vec<RouteDraft> = p
        .routes
        .value
        .iter()
        .map(|r| validate_route(ctx, r, d))
        .collect();
    if drafts.is_empty() {
        d.warn(path, line(&p.routes), InvalidPartner::NoRoutes);
    }
    check_route_overlaps(path, &drafts, d);
    let first_use = drafts.iter().find_map(|r| r.pseudonymize_line);
    let key = pseudonymize_key(path, p.pseudonymize_key_env.as_ref(), first_use, env, d);
    let routes = drafts
        .into_iter()
        .filter_map(|draft| compile_route(path, draft, d))
        .collect();
    (routes, key)
}

/// `pseudonymize_key_env`: required by a route that pseudonymises (`first_use` is its line),
/// resolved in serve mode; a short key is a warning.
fn pseudonymize_key(
    path: &str,
    name: Option<&Spanned<String>>,
    first_use: Option<u64>,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<Vec<u8>> {
    let Some(name) = name else {
        if let Some(first) = first_use {
            d.error(path, first, InvalidPartner::PseudonymizeWithoutKey);
        }
        return None;
    };
    if first_use.is_none() {
        d.warn(path, line(name), InvalidPartner::UnusedKey);
    }
    let key = env_secret(path, name, "pseudonymize_key_env", env, d)?;
    warn_short_key(path, name, &key, d);
    Some(key.into_bytes())
}

/// An upstream as an error message may show it: its scheme and a clean `host[:port]` (letters,
/// digits, `.`, `-`, an IPv6 address in brackets, a port of at most five digits), `***` in place
/// of any other authority (user info, a password without its `@host`), and never its path, query
/// or fragment (`?api_key=…`), which `…` stands for.
fn shown_upstream(text: &str) -> String {
    let host_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let clean = |authority: &str| {
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((inside, after)) => (inside, after.strip_prefix(':').unwrap_or(after)),
                None => return false,
            },
            None => authority.split_once(':').unwrap_or((authority, "")),
        };
        let v6 = authority.starts_with('[');
        !host.is_empty()
            && host.chars().all(|c| host_char(c) || (v6 && c == ':'))
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
    };
    let Some(at) = text.find("://") else {
        return if clean(text) {
            text.to_string()
        } else {
            "***".to_string()
        };
    };
    let (scheme, rest) = (&text[..at], &text[at + 3..]);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let shown = if clean(authority) { authority } else { "***" };
    let more = if end < rest.len() { "…" } else { "" };
    let scheme = if scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
        scheme
    } else {
        "***"
    };
    format!("{scheme}://{shown}{more}")
}

/// `http(s)://host[:port]` with nothing else but an optional final `/`.
pub(super) fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let scheme_end = text.find("://").ok_or_else(|| "no scheme".to_string())?;
    let scheme = &text[..scheme_end];
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
            return Err(format!("unsupported scheme {scheme:?}"))
        }
        _ => return Err("unsupported scheme".to_string()),
    };
    let rest = &text[scheme_end + 3..];
    // Before the path checks, whose messages would quote what follows a `/` in a password.
    if rest.contains('@') {
        return Err(
            "user info is not allowed (put the partner's credential in upstream_auth)".to_string(),
        );
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains('?') {
        return Err("a query is not allowed".to_string());
    }
    if tail.contains('#') {
        return Err("a fragment is not allowed".to_string());
    }
    if !(tail.is_empty() || tail == "/") {
        return Err("a path is not allowed (routes give the path)".to_string());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in host".to_string())?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| "invalid IPv6 address".to_string())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "unexpected text after the host".to_string())?,
            ),
        };
        (inside.to_string(), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        };
        if host.contains(':') {
            return Err(
                "invalid host (an IPv6 address goes in brackets: http://[::1]:8080)".to_string(),
            );
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("missing host".to_string());
    }
    if !host.contains(':')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err("invalid host (letters, digits, `.` and `-`)".to_string());
    }
    // A name whose last label is a number is an IPv4 address to the resolver, which also takes
    // shorthand (`127.1`, `2130706433`, `0x7f.1`) that certificates and people read otherwise:
    // only the four decimal numbers are taken.
    let ip = host
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical());
    if ip.is_some_and(|ip| {
        ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
    }) {
        return Err(
            "invalid host (0.0.0.0, [::], broadcast and multicast addresses name no partner)"
                .to_string(),
        );
    }
    let numeric = crate::policy::tls::numeric_last_label(host.trim_end_matches('.'));
    // Any address (IPv6 in brackets, the four decimal numbers) parsed as `ip` above.
    if ip.is_none() && numeric {
        return Err(
            "invalid host (an IPv4 address is written as four decimal numbers: 127.0.0.1)"
                .to_string(),
        );
    }
    if ip.is_none() && !crate::policy::tls::valid_server_name(&host) {
        return Err(
            "invalid host name (labels of letters, digits and `-`, not starting or ending with `-`)"
                .to_string(),
        );
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
            // Not all digits: perhaps a password written as `user:password` without the
            // `@`; not quoted.
            _ if !p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err("invalid port (not a number; the value is not shown)".to_string())
            }
            _ => return Err("invalid port (1 to 65535)".to_string()),
        },
    };
    Ok(Upstream { tls, host, port })
}
