/*!
`gateway.yaml`: listeners, limits, the admin token, the opt-out store, caller authentication
and the data-use signing key.
*/
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{
    env_secret, file_path, is_env_name, line, non_empty, quoted_env_name, reads_like_env_name,
    resolve, warn_short_key, Diags, Env, Invalid, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN,
};
use crate::policy::file::{CallersFile, GatewayFile, LedgerFile, LimitsFile, SigningFile, Spanned};
use crate::policy::model::{
    CallersConfig, GatewayConfig, LedgerConfig, Limits, ListenerTls, NamedFile, SigningConfig,
};

/// What can be wrong in `gateway.yaml` itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidGateway {
    #[error("invalid {field} address {value:?}: expected IP:PORT, such as {example}")]
    ListenAddress {
        field: &'static str,
        value: String,
        example: &'static str,
    },
    #[error("admin_listen {0:?} takes the same connections as listen (the admin API needs its own port)")]
    SameListen(String),
    #[error("limits.{0} must be greater than 0")]
    ZeroLimit(&'static str),
    #[error("{0} must be greater than 0")]
    ZeroSetting(&'static str),
    #[error("limits.{field} {value} is too large for this machine")]
    LimitTooLarge { field: &'static str, value: u64 },
    #[error("callers.{0} is missing (required unless allow_unauthenticated is true)")]
    CallersFieldMissing(&'static str),
    #[error(
        "callers needs `keys` (a JWKS file with the callers' public keys) or `hs256_secret_env`"
    )]
    CallersNoKeys,
    #[error(
        "no `callers` section: caller authentication is required (add `callers`, or `callers: {{allow_unauthenticated: true}}` for local development only)"
    )]
    CallersMissing,
    #[error("ledger.rotate_bytes {0} is too small (at least 4096)")]
    RotateTooSmall(u64),
    #[error(
        "the HS256 secret in {} is {} bytes long; at least {} are required",
        quoted_env_name(.0), .1, crate::jose::MIN_HS256_SECRET_BYTES
    )]
    ShortHs256Secret(String, usize),
    #[error("callers.allow_unauthenticated is true: requests without a caller token are accepted (local development only)")]
    Unauthenticated,
    #[error(
        "no `signing` section: partners would receive no signed data-use token (add `signing` with issuer, key and kid, or `signing: {{disabled: true}}` to run without tokens explicitly)"
    )]
    SigningMissing,
    #[error("signing.{0} is missing (required unless disabled is true)")]
    SigningFieldMissing(&'static str),
    #[error(
        "signing.disabled is true, so signing.{0} has no use: remove it, or remove `disabled`"
    )]
    SigningDisabledWithKey(&'static str),
    #[error("signing.disabled is true: forwarded requests carry no signed data-use token")]
    SigningDisabled,
    #[error(
        "ledger with signing.disabled: checkpoints are written unsigned (`\"sig\": null`), so nothing proves who wrote the chain and `audit verify --jwks` refuses it"
    )]
    LedgerUnsigned,
}

/// Validates `gateway.yaml`'s settings. Refused, they come back as far as they validated
/// (what did not is left out, listeners at their defaults): not a configuration to run, only
/// what `check` loads the named files of.
pub(super) fn validate_gateway(
    path: &str,
    g: GatewayFile,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Result<GatewayConfig, Box<GatewayConfig>> {
    let before = d.errors.len();
    let (listen, admin_listen) = listeners(path, &g, d);
    let limits = limits(path, g.limits.as_ref(), d);
    let admin_token_env = admin_token_env(path, g.admin_token_env.as_ref(), d);

    let optouts = g
        .optouts
        .as_ref()
        .and_then(|o| super::optouts::validate_optouts(path, &o.value, line(o), base, env, d));

    let tls = listener_tls(path, &g, listen, base, d);
    // A client certificate identity is a caller credential of its own.
    let cert_callers = tls.as_ref().is_some_and(|t| t.client_identity.is_some());

    let callers = match &g.callers {
        None if cert_callers => None,
        None => {
            d.error(path, 1, InvalidGateway::CallersMissing);
            None
        }
        Some(c) => validate_callers(path, &c.value, line(c), base, env, d),
    };

    let signing = match &g.signing {
        None => {
            d.error(path, 1, InvalidGateway::SigningMissing);
            None
        }
        Some(s) => validate_signing(path, s, base, d),
    };

    let ledger = g
        .ledger
        .as_ref()
        .and_then(|l| validate_ledger(path, &l.value, base, env, d));
    if let (Some(l), Some(s)) = (&g.ledger, &g.signing) {
        if s.value.disabled.as_ref().is_some_and(|f| f.value) {
            d.warn(path, line(l), InvalidGateway::LedgerUnsigned);
        }
    }

    let shadow = g
        .shadow
        .as_ref()
        .and_then(|s| non_empty(path, &s.value.policy, "shadow.policy", d))
        .map(|dir| resolve(base, &dir));

    let valid = d.errors.len() == before && listen.is_some() && admin_listen.is_some();
    let default = |addr: &str| {
        addr.parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let config = GatewayConfig {
        listen: listen.unwrap_or_else(|| default(DEFAULT_LISTEN)),
        admin_listen: admin_listen.unwrap_or_else(|| default(DEFAULT_ADMIN_LISTEN)),
        limits,
        admin_token_env,
        optouts,
        callers,
        signing,
        tls,
        ledger,
        shadow,
    };
    if valid {
        Ok(config)
    } else {
        Err(Box::new(config))
    }
}

/// Whether two listen addresses take the same connections: the same port on the same address,
/// or on an unspecified one (`0.0.0.0` takes every IPv4 address; `[::]` every address, IPv4
/// too on a dual-stack host). Port 0 picks a free port each time, but the same address written
/// twice is one listener.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    // `[::ffff:127.0.0.1]` is 127.0.0.1.
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let any = |x: &std::net::IpAddr, y: &std::net::IpAddr| {
        x.is_unspecified() && (x.is_ipv6() || y.is_ipv4())
    };
    // The same text twice shares one socket, port 0 included.
    a == b || (a.port() == b.port() && a.port() != 0 && (x == y || any(&x, &y) || any(&y, &x)))
}

/// `listen` and `admin_listen`, which may not take the same connections.
fn listeners(
    path: &str,
    g: &GatewayFile,
    d: &mut Diags,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let listen = listen_addr(path, g.listen.as_ref(), "listen", DEFAULT_LISTEN, d);
    let admin_listen = listen_addr(
        path,
        g.admin_listen.as_ref(),
        "admin_listen",
        DEFAULT_ADMIN_LISTEN,
        d,
    );
    if let (Some(a), Some(b), Some(spanned)) = (listen, admin_listen, g.admin_listen.as_ref()) {
        if overlap(a, b) {
            d.error(
                path,
                line(spanned),
                InvalidGateway::SameListen(spanned.value.clone()),
            );
        }
    }
    (listen, admin_listen)
}

/// `tls` of the proxy listener; without it, a warning when `listen` is not loopback.
fn listener_tls(
    path: &str,
    g: &GatewayFile,
    listen: Option<SocketAddr>,
    base: &Path,
    d: &mut Diags,
) -> Option<ListenerTls> {
    let tls = g.tls.as_ref().and_then(|t| {
        let mut problems = Vec::new();
        let tls = crate::policy::tls::listener(path, t, base, &mut problems);
        for p in problems {
            d.error(path, p.line, Invalid::Tls(p.message));
        }
        tls
    });
    if let (None, None, Some(listen)) = (&g.tls, &tls, listen) {
        if let Some(warning) = crate::policy::tls::plain_listen_warning(listen) {
            let at = g.listen.as_ref().map_or(1, line);
            d.warn(path, at, Invalid::Tls(warning));
        }
    }
    tls
}

/// `ledger`: a directory, the subject key's variable (set and non-empty when the environment
/// is read) and an optional rotation size.
fn validate_ledger(
    path: &str,
    l: &LedgerFile,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<LedgerConfig> {
    let dir = non_empty(path, &l.path, "ledger.path", d);
    let before = d.errors.len();
    let subject_key = env_secret(path, &l.subject_key_env, "ledger.subject_key_env", env, d);
    if let Some(key) = &subject_key {
        warn_short_key(path, &l.subject_key_env, key, d);
    }
    let key_ok = d.errors.len() == before;
    let rotate_bytes = match &l.rotate_bytes {
        None => gateway_ledger_default_rotate(),
        Some(v) if v.value < MIN_ROTATE_BYTES => {
            d.error(path, line(v), InvalidGateway::RotateTooSmall(v.value));
            return None;
        }
        Some(v) => v.value,
    };
    if !key_ok {
        return None;
    }
    Some(LedgerConfig {
        path: resolve(base, &dir?),
        subject_key_env: l.subject_key_env.value.clone(),
        subject_key: subject_key.map(String::into_bytes),
        rotate_bytes,
    })
}

/// The smallest `ledger.rotate_bytes`: a file must hold a few records.
const MIN_ROTATE_BYTES: u64 = 4096;

fn gateway_ledger_default_rotate() -> u64 {
    crate::policy::DEFAULT_LEDGER_ROTATE_BYTES
}

/// `limits`: each member given replaces its default.
fn limits(path: &str, given: Option<&Spanned<LimitsFile>>, d: &mut Diags) -> Limits {
    let mut limits = Limits::default();
    if let Some(l) = given {
        let l = &l.value;
        if let Some(v) = limit(path, l.max_body_bytes.as_ref(), "max_body_bytes", d) {
            limits.max_body_bytes = v;
        }
        if let Some(v) = limit(path, l.max_depth.as_ref(), "max_depth", d) {
            limits.max_depth = v;
        }
        let millis = |v: Option<&Spanned<u64>>, field: &'static str, d: &mut Diags| {
            limit(path, v, field, d).map(|ms| Duration::from_millis(ms as u64))
        };
        if let Some(v) = millis(l.upstream_timeout_ms.as_ref(), "upstream_timeout_ms", d) {
            limits.upstream_timeout = v;
        }
        if let Some(v) = millis(l.header_timeout_ms.as_ref(), "header_timeout_ms", d) {
            limits.header_timeout = v;
        }
        if let Some(v) = millis(l.body_timeout_ms.as_ref(), "body_timeout_ms", d) {
            limits.body_timeout = v;
        }
        if let Some(v) = limit(path, l.max_header_bytes.as_ref(), "max_header_bytes", d) {
            limits.max_header_bytes = v;
        }
        if let Some(v) = limit(path, l.max_connections.as_ref(), "max_connections", d) {
            limits.max_connections = v;
        }
        // Decoded bodies are bounded like raw ones unless the policy says otherwise.
        limits.max_decoded_bytes = limits.max_body_bytes;
        if let Some(v) = limit(path, l.max_decoded_bytes.as_ref(), "max_decoded_bytes", d) {
            limits.max_decoded_bytes = v;
        }
    }
    limits
}

/// The admin token is read when an admin write arrives: unset means writes are refused.
fn admin_token_env(path: &str, name: Option<&Spanned<String>>, d: &mut Diags) -> Option<String> {
    let name = name?;
    let field = "admin_token_env";
    if !is_env_name(&name.value) {
        d.error(path, line(name), Invalid::EnvName { field });
        return None;
    }
    if !reads_like_env_name(&name.value) {
        d.warn(path, line(name), Invalid::EnvNameUnusual { field });
    }
    Some(name.value.clone())
}

fn listen_addr(
    path: &str,
    value: Option<&Spanned<String>>,
    field: &'static str,
    default: &'static str,
    d: &mut Diags,
) -> Option<SocketAddr> {
    let Some(value) = value else {
        return default.parse().ok();
    };
    match value.value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            d.error(
                path,
                line(value),
                InvalidGateway::ListenAddress {
                    field,
                    value: value.value.clone(),
                    example: default,
                },
            );
            None
        }
    }
}

fn limit(
    path: &str,
    value: Option<&Spanned<u64>>,
    field: &'static str,
    d: &mut Diags,
) -> Option<usize> {
    let value = value?;
    if value.value == 0 {
        d.error(path, line(value), InvalidGateway::ZeroLimit(field));
        return None;
    }
    match usize::try_from(value.value) {
        Ok(v) => Some(v),
        Err(_) => {
            d.error(
                path,
                line(value),
                InvalidGateway::LimitTooLarge {
                    field,
                    value: value.value,
                },
            );
            None
        }
    }
}

fn validate_callers(
    path: &str,
    c: &CallersFile,
    section_line: u64,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<CallersConfig> {
    let allow_unauthenticated = c.allow_unauthenticated.as_ref().is_some_and(|b| b.value);
    if let Some(flag) = c.allow_unauthenticated.as_ref().filter(|b| b.value) {
        d.warn(path, line(flag), InvalidGateway::Unauthenticated);
    }
    let required = |value: &Option<Spanned<String>>,
                    field: &'static str,
                    full: &'static str,
                    d: &mut Diags| {
        match value {
            Some(v) => non_empty(path, v, full, d),
            None if allow_unauthenticated => Some(String::new()),
            None => {
                d.error(
                    path,
                    section_line,
                    InvalidGateway::CallersFieldMissing(field),
                );
                None
            }
        }
    };
    let issuer = required(&c.issuer, "issuer", "callers.issuer", d);
    let audience = required(&c.audience, "audience", "callers.audience", d);
    let keys = match &c.keys {
        Some(k) => file_path(path, k, "callers.keys", d)
            .map(|p| Some(named(path, "callers.keys", k, &p, base))),
        None if allow_unauthenticated || c.hs256_secret_env.is_some() => Some(None),
        None => {
            d.error(path, section_line, InvalidGateway::CallersNoKeys);
            None
        }
    };
    let mut hs256_secret = None;
    let mut hs256_ok = true;
    if let Some(name) = &c.hs256_secret_env {
        let before = d.errors.len();
        hs256_secret =
            env_secret(path, name, "callers.hs256_secret_env", env, d).map(String::into_bytes);
        if let Some(short) = hs256_secret
            .as_ref()
            .filter(|s| s.len() < crate::jose::MIN_HS256_SECRET_BYTES)
        {
            let short = InvalidGateway::ShortHs256Secret(name.value.clone(), short.len());
            d.error(path, line(name), short);
        }
        hs256_ok = d.errors.len() == before;
    }
    let groups_claim = match &c.groups_claim {
        Some(g) => Some(non_empty(path, g, "callers.groups_claim", d)?),
        None => None,
    };
    let max_token_lifetime_s = match &c.max_token_lifetime_s {
        Some(v) if v.value == 0 => {
            d.error(
                path,
                line(v),
                InvalidGateway::ZeroSetting("callers.max_token_lifetime_s"),
            );
            return None;
        }
        Some(v) => v.value,
        None => crate::policy::model::DEFAULT_MAX_TOKEN_LIFETIME_SECS,
    };
    if !hs256_ok {
        return None;
    }
    Some(CallersConfig {
        issuer: issuer?,
        audience: audience?,
        keys: keys?,
        allow_unauthenticated,
        hs256_secret_env: c.hs256_secret_env.as_ref().map(|n| n.value.clone()),
        hs256_secret,
        groups_claim,
        max_token_lifetime_s,
    })
}

/// The file `key` names (`value`, read as `text`), with where, for diagnostics about its
/// content.
fn named(
    source: &str,
    key: &'static str,
    value: &Spanned<String>,
    text: &str,
    base: &Path,
) -> NamedFile {
    NamedFile {
        path: resolve(base, text),
        key,
        source: source.to_string(),
        line: line(value),
    }
}

/// `signing`: issuer, key and kid; or `disabled: true` and nothing else (then `None`, warned).
fn validate_signing(
    path: &str,
    section: &Spanned<SigningFile>,
    base: &Path,
    d: &mut Diags,
) -> Option<SigningConfig> {
    let s = &section.value;
    let given: [(&'static str, bool); 4] = [
        ("issuer", s.issuer.is_some()),
        ("key", s.key.is_some()),
        ("kid", s.kid.is_some()),
        ("publish", s.publish.is_some()),
    ];
    if let Some(flag) = s.disabled.as_ref().filter(|f| f.value) {
        d.warn(path, line(flag), InvalidGateway::SigningDisabled);
        for (field, _) in given.iter().filter(|(_, given)| *given) {
            d.error(
                path,
                line(flag),
                InvalidGateway::SigningDisabledWithKey(field),
            );
        }
        return None;
    }
    let required = |v: &Option<Spanned<String>>,
                    field: &'static str,
                    full: &'static str,
                    d: &mut Diags| match v {
        Some(v) => non_empty(path, v, full, d),
        None => {
            d.error(
                path,
                line(section),
                InvalidGateway::SigningFieldMissing(field),
            );
            None
        }
    };
    let issuer = required(&s.issuer, "issuer", "signing.issuer", d);
    let key = required(&s.key, "key", "signing.key", d)
        .and(s.key.as_ref())
        .and_then(|k| {
            Some(named(
                path,
                "signing.key",
                k,
                &file_path(path, k, "signing.key", d)?,
                base,
            ))
        });
    let kid = required(&s.kid, "kid", "signing.kid", d);
    let mut publish = Vec::new();
    let mut publish_ok = true;
    for p in s.publish.iter().flat_map(|p| &p.value) {
        match file_path(path, p, "signing.publish entry", d) {
            Some(text) => publish.push(named(path, "signing.publish", p, &text, base)),
            None => publish_ok = false,
        }
    }
    if !publish_ok {
        return None;
    }
    Some(SigningConfig {
        issuer: issuer?,
        key: key?,
        kid: kid?,
        publish,
    })
}
