/*!
`gateway.yaml`: listeners, limits, the admin token, the opt-out store, caller authentication
and the data-use signing key.
*/
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    env_secret, is_env_name, line, non_empty, resolve, Diags, Env, Invalid, DEFAULT_ADMIN_LISTEN,
    DEFAULT_LISTEN,
};
use crate::policy::file::{CallersFile, GatewayFile, OptOutsFile, SigningFile, Spanned};
use crate::policy::model::{
    CallersConfig, GatewayConfig, Limits, OptOutStoreConfig, PostgresOptOuts, SigningConfig,
};

// ---------------------------------------------------------------------------------------------
// gateway.yaml

pub(super) fn validate_gateway(
    path: &str,
    g: GatewayFile,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<GatewayConfig> {
    let before = d.errors.len();
    let listen = listen_addr(path, g.listen.as_ref(), "listen", DEFAULT_LISTEN, d);
    let admin_listen = listen_addr(
        path,
        g.admin_listen.as_ref(),
        "admin_listen",
        DEFAULT_ADMIN_LISTEN,
        d,
    );
    if let (Some(a), Some(b), Some(spanned)) = (listen, admin_listen, g.admin_listen.as_ref()) {
        if a == b && a.port() != 0 {
            d.error(
                path,
                line(spanned),
                Invalid::SameListen(spanned.value.clone()),
            );
        }
    }

    let mut limits = Limits::default();
    if let Some(l) = &g.limits {
        let l = &l.value;
        if let Some(v) = limit(path, l.max_body_bytes.as_ref(), "max_body_bytes", d) {
            limits.max_body_bytes = v;
        }
        if let Some(v) = limit(path, l.max_depth.as_ref(), "max_depth", d) {
            limits.max_depth = v;
        }
        if let Some(v) = &l.upstream_timeout_ms {
            if v.value == 0 {
                d.error(path, line(v), Invalid::ZeroLimit("upstream_timeout_ms"));
            }
            limits.upstream_timeout = Duration::from_millis(v.value);
        }
    }

    let admin_token_env = g.admin_token_env.as_ref().and_then(|name| {
        // The token is read when an admin write arrives: unset means writes are refused.
        if is_env_name(&name.value) {
            Some(name.value.clone())
        } else {
            d.error(
                path,
                line(name),
                Invalid::EnvName {
                    field: "admin_token_env",
                    value: name.value.clone(),
                },
            );
            None
        }
    });

    let optouts = g
        .optouts
        .as_ref()
        .and_then(|o| validate_optouts(path, &o.value, line(o), base, env, d));

    let callers = match &g.callers {
        None => {
            d.error(path, 1, Invalid::CallersMissing);
            None
        }
        Some(c) => validate_callers(path, &c.value, line(c), base, env, d),
    };

    let signing = g
        .signing
        .as_ref()
        .and_then(|s| validate_signing(path, &s.value, base, d));

    if d.errors.len() > before {
        return None;
    }
    Some(GatewayConfig {
        listen: listen?,
        admin_listen: admin_listen?,
        limits,
        admin_token_env,
        optouts,
        callers,
        signing,
    })
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
                Invalid::ListenAddress {
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
        d.error(path, line(value), Invalid::ZeroLimit(field));
        return None;
    }
    match usize::try_from(value.value) {
        Ok(v) => Some(v),
        Err(_) => {
            d.error(
                path,
                line(value),
                Invalid::LimitTooLarge {
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
        d.warn(path, line(flag), Invalid::Unauthenticated);
    }
    let required = |value: &Option<Spanned<String>>,
                    field: &'static str,
                    full: &'static str,
                    d: &mut Diags| {
        match value {
            Some(v) => non_empty(path, v, full, d),
            None if allow_unauthenticated => Some(String::new()),
            None => {
                d.error(path, section_line, Invalid::CallersFieldMissing(field));
                None
            }
        }
    };
    let issuer = required(&c.issuer, "issuer", "callers.issuer", d);
    let audience = required(&c.audience, "audience", "callers.audience", d);
    let keys = match &c.keys {
        Some(k) => non_empty(path, k, "callers.keys", d).map(|k| resolve(base, &k)),
        None if allow_unauthenticated || c.hs256_secret_env.is_some() => Some(PathBuf::new()),
        None => {
            d.error(path, section_line, Invalid::CallersNoKeys);
            None
        }
    };
    let mut hs256_secret = None;
    let mut hs256_ok = true;
    if let Some(name) = &c.hs256_secret_env {
        let before = d.errors.len();
        hs256_secret =
            env_secret(path, name, "callers.hs256_secret_env", env, d).map(String::into_bytes);
        hs256_ok = d.errors.len() == before;
    }
    let groups_claim = match &c.groups_claim {
        Some(g) => Some(non_empty(path, g, "callers.groups_claim", d)?),
        None => None,
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
    })
}

fn validate_signing(
    path: &str,
    s: &SigningFile,
    base: &Path,
    d: &mut Diags,
) -> Option<SigningConfig> {
    let issuer = non_empty(path, &s.issuer, "signing.issuer", d);
    let key = non_empty(path, &s.key, "signing.key", d);
    let kid = non_empty(path, &s.kid, "signing.kid", d);
    let mut publish = Vec::new();
    let mut publish_ok = true;
    for p in s.publish.iter().flat_map(|p| &p.value) {
        match non_empty(path, p, "signing.publish entry", d) {
            Some(p) => publish.push(resolve(base, &p)),
            None => publish_ok = false,
        }
    }
    if !publish_ok {
        return None;
    }
    Some(SigningConfig {
        issuer: issuer?,
        key: resolve(base, &key?),
        kid: kid?,
        publish,
    })
}

/// `optouts:`: the embedded store's `path`, or `postgres` (never both, never neither).
fn validate_optouts(
    path: &str,
    o: &OptOutsFile,
    at: u64,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<OptOutStoreConfig> {
    match (&o.path, &o.postgres) {
        (Some(p), None) => {
            non_empty(path, p, "optouts.path", d).map(|p| OptOutStoreConfig::Embedded {
                path: resolve(base, &p),
            })
        }
        (None, Some(pg)) => {
            let pg = &pg.value;
            // Serve mode refuses to start without the URL; the URL itself stays out of the policy.
            env_secret(path, &pg.url_env, "optouts.postgres.url_env", env, d);
            let table = match &pg.table {
                None => PostgresOptOuts::DEFAULT_TABLE.to_string(),
                Some(t) if PostgresOptOuts::valid_table(&t.value) => t.value.clone(),
                Some(t) => {
                    d.error(path, line(t), Invalid::TableName(t.value.clone()));
                    return None;
                }
            };
            let max_staleness_s = match &pg.max_staleness_s {
                None => PostgresOptOuts::DEFAULT_MAX_STALENESS_S,
                Some(v) if v.value == 0 => {
                    d.error(path, line(v), Invalid::ZeroStaleness);
                    return None;
                }
                Some(v) => v.value,
            };
            if !is_env_name(&pg.url_env.value) {
                return None;
            }
            Some(OptOutStoreConfig::Postgres(PostgresOptOuts {
                url_env: pg.url_env.value.clone(),
                table,
                max_staleness: Duration::from_secs(max_staleness_s),
            }))
        }
        _ => {
            d.error(path, at, Invalid::OptOutsBackend);
            None
        }
    }
}
