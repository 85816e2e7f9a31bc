/*!
Policy validation: the files' wire format ([`super::file`]) → the validated [`Policy`].

[`load`] works in layers, like `vector validate`: YAML (syntax, unknown keys, types), then the
meaning of every value (addresses, paths, routes, transforms, opt-out rules), then the
environment (secrets; skipped in check mode), then the filter programs. It never stops at the
first mistake: every problem in every file comes back as a [`Diagnostic`] `FILE:LINE: message`,
sorted by file and line (problems on one line keep the order they were found in). Only the
filter-program layer waits: a route whose own paths, transforms or records do not parse is
compiled once they are fixed, so its compile errors never repeat a mistake already reported.
The core does no I/O: the shell reads the directory into a
[`PolicySource`] and hands the process environment in through [`Env`].

Choices where DESIGN.md is silent:
- `listen` and `admin_listen` default to `127.0.0.1:8080` and `127.0.0.1:9090`; `limits`
  members default to [`Limits::default`].
- Relative file paths in `gateway.yaml` (`optouts.path`, `callers.keys`, `signing.key`,
  `signing.publish`) are resolved against the parent of the policy directory, so with
  `--policy policy/`, `certs/x.pem` is `./certs/x.pem`.
- `callers.issuer` and `callers.audience` are required, and `keys` or `hs256_secret_env`,
  unless `allow_unauthenticated: true` (then missing ones are empty).
- `honor_optouts` replaces the kind's default scopes (DESIGN: it "overrides that"); leaving
  `partner_sharing` or `partner:<id>` out for a `business_partner` or `co_branded` partner is
  a warning, since the privacy policy promises those opt-outs.
- Check mode (`env: None`) resolves no secret: the model's `pseudonymize_key`,
  `upstream_auth` and `callers.hs256_secret` are then `None`.
- Partner files may end in `.yaml` or `.yml`; the id is the name without it.
- The policy version hashes `gateway.yaml` and `partners/<file name>` (relative names, so the
  version does not depend on how `--policy` was spelled) with each file's text.
*/
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::file::{self, CallersFile, GatewayFile, PartnerFile, RouteFile, SigningFile, Spanned};
use super::model::{
    CallersConfig, GatewayConfig, Limits, OptOutStoreConfig, Partner, PartnerKind, Policy, Route,
    RouteSegment, SigningConfig, Upstream, UpstreamAuth,
};
use super::path::{FieldPath, PathError};
use super::route::{literal_count, parse_template, same_shape};
use crate::filter::{CompileError, FilterProgram, FilterSpec, Transform};
use crate::optout::Scope;

/// A policy directory as read by the shell.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The directory as given (`policy/`); relative paths in `gateway.yaml` resolve against its parent.
    pub dir: PathBuf,
    pub gateway: SourceFile,
    /// `partners/*.yaml`, in any order.
    pub partners: Vec<SourceFile>,
}

/// One policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// As displayed in diagnostics, e.g. `policy/partners/acme-ship.yaml`. Its file name gives the partner id.
    pub path: String,
    pub text: String,
}

/// Where secrets named by the policy come from (the process environment; a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A valid policy, and what is suspicious about it.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// One problem in one file: displayed as `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; problems with a whole file are reported on line 1.
    pub line: u64,
    /// Lowercase, no trailing period, quotes what the file says.
    pub message: String,
}

/// The default gateway listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// The legal-basis header of government partners, unless the policy names another.
pub const DEFAULT_LEGAL_BASIS_HEADER: &str = "ohsoft-legal-basis";
/// Methods a route may list.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Below this many bytes a pseudonymisation key draws a warning.
pub const MIN_KEY_BYTES: usize = 32;

/// Request headers that must never reach a partner, whatever a route says.
const NEVER_FORWARDED: [&str; 24] = [
    "authorization",
    "cookie",
    "set-cookie",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "via",
    "user-agent",
    "referer",
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "ohsoft-data-use",
];
const NEVER_FORWARDED_PREFIXES: [&str; 3] = ["x-forwarded-", "proxy-", "ohsoft-data-use"];

/// Headers the partner credential may not use: the gateway sets or strips them itself.
const NOT_FOR_UPSTREAM_AUTH: [&str; 14] = [
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "forwarded",
    "via",
    "ohsoft-data-use",
];

/// Everything `check` can find wrong (or suspicious) in a policy; [`Diagnostic`] adds file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Invalid {
    #[error("{}", .0.message)]
    Yaml(file::YamlError),
    #[error("invalid {field} address {value:?}: expected IP:PORT, such as {example}")]
    ListenAddress {
        field: &'static str,
        value: String,
        example: &'static str,
    },
    #[error("admin_listen {0:?} is the same address as listen (the admin API needs its own port)")]
    SameListen(String),
    #[error("limits.{0} must be greater than 0")]
    ZeroLimit(&'static str),
    #[error("limits.{field} {value} is too large for this machine")]
    LimitTooLarge { field: &'static str, value: u64 },
    #[error(
        "invalid environment variable name {value:?} in {field} (expected letters, digits and `_`, not starting with a digit)"
    )]
    EnvName { field: &'static str, value: String },
    #[error("environment variable {name:?} named by {field} is not set")]
    EnvUnset { field: &'static str, name: String },
    #[error("environment variable {name:?} named by {field} is empty")]
    EnvEmpty { field: &'static str, name: String },
    #[error("environment variable {name:?} named by {field} holds characters not allowed in a header value")]
    EnvNotHeaderValue { field: &'static str, name: String },
    #[error("{0} is empty")]
    Empty(&'static str),
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
    #[error("callers.allow_unauthenticated is true: requests without a caller token are accepted (local development only)")]
    Unauthenticated,
    #[error(
        "invalid partner id {0:?} (the file name): expected lowercase letters, digits, `_` and `-`, starting with a letter or digit"
    )]
    PartnerId(String),
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
    #[error("invalid route path {path:?}: {reason}")]
    RoutePath { path: String, reason: String },
    #[error("route {0:?} has no methods (expected a list such as [POST])")]
    NoMethods(String),
    #[error(
        "unknown method {0:?} (expected one of: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"
    )]
    Method(String),
    #[error("unknown method {0:?} (methods are uppercase: {1:?})")]
    LowercaseMethod(String, String),
    #[error("method {0:?} is never allowed: {1}")]
    ForbiddenMethod(String, &'static str),
    #[error("method {0:?} is listed twice")]
    DuplicateMethod(String),
    #[error("route {path:?} duplicates route {other:?} on line {other_line}: both take {methods}")]
    DuplicateRoute {
        path: String,
        other: String,
        other_line: u64,
        methods: String,
    },
    #[error(
        "routes {path:?} and {other:?} (line {other_line}) both match some {methods} requests equally well; the one declared first wins"
    )]
    AmbiguousRoutes {
        path: String,
        other: String,
        other_line: u64,
        methods: String,
    },
    #[error("{0}")]
    FieldPath(PathError),
    #[error(
        "transform for {0:?} is an unquoted YAML null: write \"null\" in quotes to replace the value with null (or `remove`)"
    )]
    NullTransform(String),
    #[error("{0}")]
    Transform(String),
    #[error("invalid subject {0:?}: expected the name of one member of each record")]
    Subject(String),
    #[error("subject {0:?} needs records (the path of the customer records; \"$\" when the body is one record)")]
    SubjectWithoutRecords(String),
    #[error("route {0:?} takes no body (no allow or transform), so records and subject have nothing to select")]
    RecordsWithoutBody(String),
    #[error(
        "transform \"pseudonymize\" needs pseudonymize_key_env (the environment variable holding this partner's HMAC key)"
    )]
    PseudonymizeWithoutKey,
    #[error("pseudonymize_key_env is set but no route uses pseudonymize")]
    UnusedKey,
    #[error("the key in {0:?} is {1} bytes long; use at least 32 random bytes")]
    ShortKey(String, usize),
    #[error("{0}")]
    Scope(String),
    #[error(
        "{kind} partners normally honour {scope:?}, which the privacy policy promises; this honor_optouts leaves it out"
    )]
    MustHonour { kind: &'static str, scope: String },
    #[error("this partner honours opt-outs ({0}) but gateway.yaml has no `optouts` store")]
    NoOptOutStore(String),
    #[error(
        "route {0:?} must name records and subject: this partner honours opt-outs, and without them the records of customers who opted out could never be dropped"
    )]
    NoSubjects(String),
    #[error("invalid legal_basis_format {0:?}: {1}")]
    LegalBasisFormat(String, String),
    #[error("{key} is only for government partners (this partner's kind is {kind:?})")]
    GovernmentOnly {
        key: &'static str,
        kind: &'static str,
    },
    #[error("invalid header name {0:?}: expected letters, digits and !#$%&'*+-.^_`|~")]
    HeaderName(String),
    #[error("upstream_auth.prefix {0:?} holds characters not allowed in a header value")]
    HeaderValue(String),
    #[error("header {0:?} may never be forwarded to a partner")]
    ForbiddenHeader(String),
    #[error(
        "header {0:?} carries the partner's credential (upstream_auth); the caller may not send it"
    )]
    CredentialHeader(String),
    #[error(
        "upstream_auth.header {0:?} is not allowed: the gateway sets or strips that header itself"
    )]
    ForbiddenAuthHeader(String),
    #[error("invalid query parameter name {0:?}: expected a non-empty name without `&`, `=`, `#`, `%`, `+` or spaces")]
    QueryName(String),
    #[error(
        "invalid json_types entry {0:?}: expected a lowercase media type ending in +json, such as application/merge-patch+json"
    )]
    JsonType(String),
    #[error("{path:?}: {message}")]
    Compile { path: String, message: String },
}

/// Loads and validates a policy. `env: None` is check mode: secrets are not resolved and unset
/// variables are not errors. `Some(env)` (serve, explain) resolves every secret the policy names.
pub fn load(source: &PolicySource, env: Option<&dyn Env>) -> Result<Loaded, Vec<Diagnostic>> {
    let mut d = Diags::default();
    let base = base_dir(&source.dir);

    let gateway_file = match file::parse_gateway(&source.gateway.text) {
        Ok(g) => Some(g),
        Err(e) => {
            for e in file::all_errors::<GatewayFile>(&source.gateway.text, e) {
                d.error(&source.gateway.path, e.line, Invalid::Yaml(e));
            }
            None
        }
    };
    let has_optouts = gateway_file.as_ref().map(|g| g.optouts.is_some());
    let gateway =
        gateway_file.and_then(|g| validate_gateway(&source.gateway.path, g, &base, env, &mut d));

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut partners = BTreeMap::new();
    for file in &source.partners {
        let id = partner_id(file, &mut d);
        if let Some(id) = &id {
            if let Some(other) = seen.get(id) {
                let other = other.clone();
                d.error(
                    &file.path,
                    1,
                    Invalid::DuplicatePartner {
                        id: id.clone(),
                        other,
                    },
                );
            } else {
                seen.insert(id.clone(), file.path.clone());
            }
        }
        let id = id.unwrap_or_default();
        if let Some(partner) =
            validate_partner(&file.path, &file.text, &id, has_optouts, env, &mut d)
        {
            partners.insert(id, Arc::new(partner));
        }
    }

    d.errors
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    d.warnings
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    match gateway {
        Some(gateway) if d.errors.is_empty() => Ok(Loaded {
            policy: Policy {
                version: policy_version(source),
                gateway,
                partners,
            },
            warnings: d.warnings,
        }),
        _ if d.errors.is_empty() => Err(vec![Diagnostic {
            file: source.gateway.path.clone(),
            line: 1,
            message: "internal error: the policy could not be assembled".to_string(),
        }]),
        _ => Err(d.errors),
    }
}

#[derive(Default)]
struct Diags {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Diags {
    fn error(&mut self, file: &str, line: u64, problem: Invalid) {
        self.errors.push(Diagnostic {
            file: file.to_string(),
            line: line.max(1),
            message: problem.to_string(),
        });
    }

    fn warn(&mut self, file: &str, line: u64, problem: Invalid) {
        self.warnings.push(Diagnostic {
            file: file.to_string(),
            line: line.max(1),
            message: problem.to_string(),
        });
    }
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line().max(1)
}

/// Relative paths in `gateway.yaml` are relative to the policy directory's parent.
fn base_dir(dir: &Path) -> PathBuf {
    match dir.components().next_back() {
        Some(Component::Normal(_)) => dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        Some(Component::RootDir | Component::Prefix(_)) => dir.to_path_buf(),
        Some(Component::CurDir | Component::ParentDir) | None => dir.join(".."),
    }
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// First 12 hex digits of SHA-256 over every file's relative name and text, in name order.
fn policy_version(source: &PolicySource) -> String {
    let mut files: Vec<(String, &str)> =
        vec![("gateway.yaml".to_string(), source.gateway.text.as_str())];
    for p in &source.partners {
        let name = Path::new(&p.path)
            .file_name()
            .map_or_else(|| p.path.clone(), |n| n.to_string_lossy().into_owned());
        files.push((format!("partners/{name}"), p.text.as_str()));
    }
    files.sort();
    let mut hasher = Sha256::new();
    for (name, text) in files {
        for part in [name.as_bytes(), text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks an env var name; in serve mode also reads it (unset or empty is an error).
fn env_secret(
    file: &str,
    name: &Spanned<String>,
    field: &'static str,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<String> {
    if !is_env_name(&name.value) {
        d.error(
            file,
            line(name),
            Invalid::EnvName {
                field,
                value: name.value.clone(),
            },
        );
        return None;
    }
    let env = env?;
    match env.var(&name.value) {
        None => {
            d.error(
                file,
                line(name),
                Invalid::EnvUnset {
                    field,
                    name: name.value.clone(),
                },
            );
            None
        }
        Some(v) if v.is_empty() => {
            d.error(
                file,
                line(name),
                Invalid::EnvEmpty {
                    field,
                    name: name.value.clone(),
                },
            );
            None
        }
        Some(v) => Some(v),
    }
}

fn non_empty(
    file: &str,
    value: &Spanned<String>,
    field: &'static str,
    d: &mut Diags,
) -> Option<String> {
    if value.value.trim().is_empty() {
        d.error(file, line(value), Invalid::Empty(field));
        None
    } else {
        Some(value.value.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// gateway.yaml

fn validate_gateway(
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
        .and_then(|o| non_empty(path, &o.value.path, "optouts.path", d))
        .map(|p| OptOutStoreConfig {
            path: resolve(base, &p),
        });

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

// ---------------------------------------------------------------------------------------------
// partners/<id>.yaml

fn partner_id(file: &SourceFile, d: &mut Diags) -> Option<String> {
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

fn validate_partner(
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
fn parse_upstream(text: &str) -> Result<Upstream, String> {
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

/// RFC 9110 token (header names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
}

fn is_never_forwarded(name: &str) -> bool {
    NEVER_FORWARDED.contains(&name) || NEVER_FORWARDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

struct RouteCtx<'a> {
    path: &'a str,
    /// The partner honours some opt-out scope: body routes need records and subject.
    honours: bool,
    /// The partner's credential header (from upstream_auth), never taken from the caller.
    credential_header: Option<&'a str>,
}

/// A route whose parts have been checked, waiting for its filter program.
struct RouteDraft {
    template: String,
    line: u64,
    segments: Option<Vec<RouteSegment>>,
    methods: Vec<String>,
    /// `None`: the route takes no body. Only compiled when `spec_ok`.
    spec: Option<FilterSpec>,
    spec_ok: bool,
    /// Each path written in the route (as written, as displayed) with its line, to place compile errors.
    path_lines: Vec<(String, String, u64)>,
    pseudonymize_line: Option<u64>,
    query: Vec<String>,
    headers: Vec<String>,
    json_types: Vec<String>,
}

fn validate_route(ctx: &RouteCtx<'_>, spanned: &Spanned<RouteFile>, d: &mut Diags) -> RouteDraft {
    let path = ctx.path;
    let r = &spanned.value;
    let route_line = line(spanned);
    let template = r.path.value.clone();
    let segments = match parse_template(&template) {
        Ok(s) => Some(s),
        Err(reason) => {
            d.error(
                path,
                line(&r.path),
                Invalid::RoutePath {
                    path: template.clone(),
                    reason,
                },
            );
            None
        }
    };

    let mut methods: Vec<String> = Vec::new();
    match &r.methods {
        Some(list) if !list.value.is_empty() => {
            for m in &list.value {
                let name = m.value.as_str();
                let upper = name.to_ascii_uppercase();
                let problem = if METHODS.contains(&name) {
                    None
                } else if upper == "CONNECT" {
                    Some(Invalid::ForbiddenMethod(
                        name.to_string(),
                        "it would open a tunnel past the filter",
                    ))
                } else if upper == "TRACE" {
                    Some(Invalid::ForbiddenMethod(
                        name.to_string(),
                        "it echoes the request back",
                    ))
                } else if METHODS.contains(&upper.as_str()) {
                    Some(Invalid::LowercaseMethod(name.to_string(), upper))
                } else {
                    Some(Invalid::Method(name.to_string()))
                };
                match problem {
                    Some(problem) => d.error(path, line(m), problem),
                    None if methods.iter().any(|x| x == name) => {
                        d.error(path, line(m), Invalid::DuplicateMethod(name.to_string()))
                    }
                    None => methods.push(name.to_string()),
                }
            }
        }
        _ => d.error(path, route_line, Invalid::NoMethods(template.clone())),
    }

    let mut spec = FilterSpec::default();
    let mut spec_ok = true;
    let mut path_lines = Vec::new();
    let mut field_path = |text: &Spanned<String>, d: &mut Diags| match FieldPath::parse(&text.value)
    {
        Ok(p) => {
            path_lines.push((text.value.clone(), p.to_string(), line(text)));
            Some(p)
        }
        Err(e) => {
            d.error(path, line(text), Invalid::FieldPath(e));
            None
        }
    };
    for a in r.allow.iter().flat_map(|a| &a.value) {
        match field_path(a, d) {
            Some(p) => spec.allow.push(p),
            None => spec_ok = false,
        }
    }
    let mut pseudonymize_line = None;
    let named_transforms = r.transform.as_ref().is_some_and(|t| !t.value.0.is_empty());
    for (key, value) in r.transform.iter().flat_map(|t| &t.value.0) {
        let p = field_path(key, d);
        let t = match &value.value {
            None => {
                d.error(path, line(value), Invalid::NullTransform(key.value.clone()));
                None
            }
            Some(name) => match Transform::parse(name) {
                Ok(t) => Some(t),
                Err(message) => {
                    d.error(path, line(value), Invalid::Transform(message));
                    None
                }
            },
        };
        match (p, t) {
            (Some(p), Some(Some(t))) => {
                if t == Transform::Pseudonymize && pseudonymize_line.is_none() {
                    pseudonymize_line = Some(line(value));
                }
                spec.transforms.push((p, t));
            }
            // `remove`: not allowed, which is the default.
            (Some(_), Some(None)) => {}
            _ => spec_ok = false,
        }
    }
    // As written: a route that names any allow or transform entry filters a body.
    let takes_body = r.allow.as_ref().is_some_and(|a| !a.value.is_empty()) || named_transforms;

    if let Some(records) = &r.records {
        match field_path(records, d) {
            Some(p) => spec.records = Some(p),
            None => spec_ok = false,
        }
    }
    if let Some(subject) = &r.subject {
        let s = &subject.value;
        if s.is_empty() || s.contains(['.', '[', ']', '*', '$']) {
            d.error(path, line(subject), Invalid::Subject(s.clone()));
            spec_ok = false;
        } else {
            path_lines.push((s.clone(), s.clone(), line(subject)));
            spec.subject = Some(s.clone());
            if r.records.is_none() {
                d.error(
                    path,
                    line(subject),
                    Invalid::SubjectWithoutRecords(s.clone()),
                );
                spec_ok = false;
            }
        }
    }
    if !takes_body && (r.records.is_some() || r.subject.is_some()) {
        d.error(
            path,
            route_line,
            Invalid::RecordsWithoutBody(template.clone()),
        );
    }
    if takes_body && ctx.honours && (r.records.is_none() || r.subject.is_none()) {
        d.error(path, route_line, Invalid::NoSubjects(template.clone()));
    }
    let mut query = Vec::new();
    for q in r.query.iter().flat_map(|q| &q.value) {
        let bad = q.value.is_empty()
            || q.value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "&=#%+".contains(c));
        if bad {
            d.error(path, line(q), Invalid::QueryName(q.value.clone()));
        } else if !query.contains(&q.value) {
            query.push(q.value.clone());
        }
    }

    let mut headers = Vec::new();
    for h in r.headers.iter().flat_map(|h| &h.value) {
        let name = h.value.to_ascii_lowercase();
        if !is_token(&name) {
            d.error(path, line(h), Invalid::HeaderName(h.value.clone()));
        } else if is_never_forwarded(&name) {
            d.error(path, line(h), Invalid::ForbiddenHeader(h.value.clone()));
        } else if ctx.credential_header == Some(name.as_str()) {
            d.error(path, line(h), Invalid::CredentialHeader(h.value.clone()));
        } else if !headers.contains(&name) {
            headers.push(name);
        }
    }

    let mut json_types = Vec::new();
    for t in r.json_types.iter().flat_map(|t| &t.value) {
        let valid = t.value.split_once('/').is_some_and(|(ty, sub)| {
            is_token(ty) && is_token(sub) && sub.ends_with("+json") && sub.len() > "+json".len()
        }) && t.value == t.value.to_ascii_lowercase();
        if !valid {
            d.error(path, line(t), Invalid::JsonType(t.value.clone()));
        } else if !json_types.contains(&t.value) {
            json_types.push(t.value.clone());
        }
    }

    RouteDraft {
        template,
        line: route_line,
        segments,
        methods,
        spec: takes_body.then_some(spec),
        spec_ok,
        path_lines,
        pseudonymize_line,
        query,
        headers,
        json_types,
    }
}

/// Two routes of the same template shape with a method in common are an error (which one
/// should get the request?); two different templates that match the same paths equally
/// well are a warning (the first declared wins).
fn check_route_overlaps(path: &str, drafts: &[RouteDraft], d: &mut Diags) {
    for (i, later) in drafts.iter().enumerate() {
        let Some(later_segments) = &later.segments else {
            continue;
        };
        for earlier in &drafts[..i] {
            let Some(earlier_segments) = &earlier.segments else {
                continue;
            };
            let shared: Vec<&str> = later
                .methods
                .iter()
                .filter(|m| earlier.methods.contains(m))
                .map(String::as_str)
                .collect();
            if shared.is_empty() {
                continue;
            }
            let methods = shared.join(", ");
            if same_shape(later_segments, earlier_segments) {
                d.error(
                    path,
                    later.line,
                    Invalid::DuplicateRoute {
                        path: later.template.clone(),
                        other: earlier.template.clone(),
                        other_line: earlier.line,
                        methods,
                    },
                );
            } else if can_overlap(later_segments, earlier_segments)
                && literal_count(later_segments) == literal_count(earlier_segments)
            {
                d.warn(
                    path,
                    later.line,
                    Invalid::AmbiguousRoutes {
                        path: later.template.clone(),
                        other: earlier.template.clone(),
                        other_line: earlier.line,
                        methods,
                    },
                );
            }
        }
    }
}

/// Is there a path both templates match?
fn can_overlap(a: &[RouteSegment], b: &[RouteSegment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (RouteSegment::Literal(x), RouteSegment::Literal(y)) => x == y,
            (RouteSegment::Param(_), RouteSegment::Literal(l))
            | (RouteSegment::Literal(l), RouteSegment::Param(_)) => !l.is_empty(),
            (RouteSegment::Param(_), RouteSegment::Param(_)) => true,
        })
}

fn compile_route(path: &str, draft: RouteDraft, d: &mut Diags) -> Option<Route> {
    let filter = match (&draft.spec, draft.spec_ok) {
        (Some(spec), true) => match FilterProgram::compile(spec) {
            Ok(program) => Some(Arc::new(program)),
            Err(errors) => {
                for e in errors {
                    let at = compile_error_line(&draft, &e);
                    let CompileError { path: p, message } = e;
                    d.error(path, at, Invalid::Compile { path: p, message });
                }
                return None;
            }
        },
        (Some(_), false) => return None,
        (None, _) => None,
    };
    Some(Route {
        template: draft.template,
        segments: draft.segments?,
        methods: draft.methods,
        filter,
        query: draft.query,
        headers: draft.headers,
        json_types: draft.json_types,
        response_headers: Vec::new(),
    })
}

fn compile_error_line(draft: &RouteDraft, e: &CompileError) -> u64 {
    draft
        .path_lines
        .iter()
        .find(|(written, shown, _)| *written == e.path || *shown == e.path)
        .map_or(draft.line, |(_, _, l)| *l)
}

#[cfg(test)]
mod tests;
