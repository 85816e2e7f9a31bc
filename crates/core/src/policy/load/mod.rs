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

Choices where the contract is silent (also in the README):
- `listen` and `admin_listen` default to `127.0.0.1:8080` and `127.0.0.1:9090`; `limits`
  members default to [`Limits::default`].
- Relative file paths in `gateway.yaml` (`optouts.path`, `callers.keys`, `signing.key`,
  `signing.publish`) are resolved against the parent of the policy directory, so with
  `--policy policy/`, `certs/x.pem` is `./certs/x.pem`.
- `callers.issuer` and `callers.audience` are required, and `keys` or `hs256_secret_env`,
  unless `allow_unauthenticated: true` (then missing ones are empty).
- `honor_optouts` replaces the kind's default scopes; leaving
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
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::file::{self, GatewayFile, Spanned};
use super::model::{PartnerTls, Policy, SecretVariable, PSEUDONYMISATION_KEY};
use crate::headers::{is_never_forwarded, may_carry_partner_credential};

mod gateway;
mod optouts;
mod partner;
mod route;
mod stream;

use gateway::validate_gateway;
use partner::{partner_id, validate_partner};

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
/// Below this many bytes an HMAC key (pseudonymisation, the ledger's subjects) draws a warning.
pub const MIN_KEY_BYTES: usize = 32;

/// Everything `check` can find wrong (or suspicious) in a policy; [`Diagnostic`] adds file and line.
/// Each file part has its own type; what several parts share is here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Invalid {
    #[error("{}", .0.message)]
    Yaml(file::YamlError),
    #[error("the key in {} is {} bytes long; use at least {MIN_KEY_BYTES} random bytes", quoted_env_name(.0), .1)]
    ShortKey(String, usize),
    /// The value is not repeated: a name this far off is often the secret itself, pasted in.
    #[error(
        "{field} must name an environment variable (letters, digits and `_`, not starting with a digit); the value is not shown in case it is the secret itself"
    )]
    EnvName { field: &'static str },
    #[error("{} named by {field} is not set", env_variable(name))]
    EnvUnset { field: &'static str, name: String },
    #[error("{} named by {field} is empty", env_variable(name))]
    EnvEmpty { field: &'static str, name: String },
    /// A warning: lower case variable names are legal, and a secret pasted in may be one too.
    #[error("{field} does not read like the name of an environment variable (upper case letters, digits and `_`): if it is the secret itself, put the secret in the environment and name its variable here; the value is not shown")]
    EnvNameUnusual { field: &'static str },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} holds key material, not the path of a file; the value is not shown")]
    KeyMaterial(&'static str),
    #[error("invalid header name {0:?}: expected letters, digits and !#$%&'*+-.^_`|~")]
    HeaderName(String),
    #[error("header {0:?} may never be forwarded to a partner")]
    ForbiddenHeader(String),
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Gateway(#[from] gateway::InvalidGateway),
    #[error(transparent)]
    OptOuts(#[from] optouts::InvalidOptOuts),
    #[error(transparent)]
    Partner(#[from] partner::InvalidPartner),
    #[error(transparent)]
    Route(#[from] route::InvalidRoute),
}

/// Loads and validates a policy. `env: None` is check mode: secrets are not resolved and unset
/// variables are not errors. `Some(env)` (serve, explain) resolves every secret the policy names.
pub fn load(source: &PolicySource, env: Option<&dyn Env>) -> Result<Loaded, Vec<Diagnostic>> {
    load_partly(source, env).map_err(|(errors, _)| errors)
}

/// What `check` can still load the named files of when a policy does not validate, so a
/// certificate problem is listed beside an error elsewhere, not after it is fixed.
#[derive(Debug, Default)]
pub struct Partial {
    /// The gateway settings with the partners whose files validated, when `gateway.yaml`
    /// parsed; if it did not validate ([`Partial::gateway_valid`]), only as far as it did.
    pub policy: Option<Box<Policy>>,
    /// Whether `gateway.yaml` validated.
    pub gateway_valid: bool,
    /// The `tls` sections that validated in partner files that did not.
    pub partner_tls: Vec<PartnerTlsOnly>,
}

/// One partner's `tls` section without the rest of its file.
#[derive(Debug, Clone)]
pub struct PartnerTlsOnly {
    pub partner: String,
    pub tls: PartnerTls,
}

/// [`load`], keeping on refusal what validated ([`Partial`]).
pub fn load_partly(
    source: &PolicySource,
    env: Option<&dyn Env>,
) -> Result<Loaded, (Vec<Diagnostic>, Partial)> {
    let mut d = Diags::default();
    let base = base_dir(&source.dir);

    let gateway_file = match file::parse_gateway(&source.gateway.text) {
        Ok(g) => Some(g),
        Err(e) => {
            let (errors, rest) = file::all_errors::<GatewayFile>(&source.gateway.text, e);
            for e in errors {
                d.error(&source.gateway.path, e.line, Invalid::Yaml(e));
            }
            // Only unknown keys were wrong: the rest is still checked; the policy is refused
            // anyway, as errors were recorded.
            rest
        }
    };
    let has_optouts = gateway_file.as_ref().map(|g| g.optouts.is_some());
    let gateway =
        gateway_file.map(|g| validate_gateway(&source.gateway.path, g, &base, env, &mut d));

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut partners = BTreeMap::new();
    let mut partner_tls = Vec::new();
    for file in &source.partners {
        let id = partner_id(file, &mut d);
        if let Some(id) = &id {
            if let Some(other) = seen.get(id) {
                let other = other.clone();
                d.error(
                    &file.path,
                    1,
                    partner::InvalidPartner::DuplicatePartner {
                        id: id.clone(),
                        other,
                    },
                );
            } else {
                seen.insert(id.clone(), file.path.clone());
            }
        }
        let id = id.unwrap_or_default();
        match validate_partner(&file.path, &file.text, &id, has_optouts, &base, env, &mut d) {
            Ok(partner) => {
                partners.insert(id, Arc::new(partner));
            }
            Err(tls) => partner_tls.extend(tls.map(|tls| *tls)),
        }
    }

    d.errors
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let version = policy_version(source);
    match gateway {
        Some(Ok(gateway)) if d.errors.is_empty() => {
            let policy = Policy {
                version,
                gateway,
                partners,
            };
            shared_secrets(source, &seen, &policy, &mut d);
            d.warnings
                .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            Ok(Loaded {
                policy,
                warnings: d.warnings,
            })
        }
        None if d.errors.is_empty() => Err((
            vec![Diagnostic {
                file: source.gateway.path.clone(),
                line: 1,
                message: "internal error: the policy could not be assembled".to_string(),
            }],
            Partial::default(),
        )),
        gateway => {
            let gateway_valid = matches!(gateway, Some(Ok(_)));
            let gateway = gateway.map(|g| g.unwrap_or_else(|partly| *partly));
            let policy = gateway.map(|gateway| {
                Box::new(Policy {
                    version,
                    gateway,
                    partners,
                })
            });
            let partial = Partial {
                policy,
                gateway_valid,
                partner_tls,
            };
            Err((d.errors, partial))
        }
    }
}

/// Each secret needs a variable of its own ([`Policy::secret_variables`]), warned about at the
/// later partner's line when a partner's secret comes from the same variable as an earlier
/// secret, or (where secrets are read: `serve`) holds the same value. A warning, not an error:
/// test and staging setups often share them, and refusing them would stop a gateway at a
/// restart.
/// - two partners with one pseudonymisation key can link their pseudonyms;
/// - two partners with one API credential each hold the other's;
/// - a partner's credential or key that is another secret (the admin token, the ledger key,
///   another partner's key or credential, its own key) puts that secret where it does not belong.
fn shared_secrets(
    source: &PolicySource,
    files: &BTreeMap<String, String>,
    policy: &Policy,
    d: &mut Diags,
) {
    let vars = policy.secret_variables();
    for (i, var) in vars.iter().enumerate() {
        let Some(owner) = var.owner else {
            continue;
        };
        let same = |o: &&SecretVariable<'_>| {
            o.env == var.env || (var.value.is_some_and(|v| !v.is_empty()) && o.value == var.value)
        };
        let Some(other) = vars[..i].iter().find(same) else {
            continue;
        };
        let how = if other.env == var.env {
            "the same variable"
        } else {
            "the same value"
        };
        let problem = match (other.owner, var.what) {
            (Some(o), PSEUDONYMISATION_KEY) if other.what == var.what => {
                partner::InvalidPartner::SharedKey {
                    other: o.to_string(),
                    how,
                }
            }
            (Some(o), _) if other.what == var.what => partner::InvalidPartner::SharedCredential {
                other: o.to_string(),
                how,
            },
            _ => partner::InvalidPartner::SecretReused {
                what: var.what,
                other: other.describe(),
                how,
            },
        };
        let key = if var.what == PSEUDONYMISATION_KEY {
            "pseudonymize_key_env"
        } else {
            "upstream_auth"
        };
        let path = files.get(owner).cloned().unwrap_or_default();
        let text = source.partners.iter().find(|f| f.path == path);
        let line = text.map_or(1, |f| key_line(&f.text, key));
        d.warn(&path, line, problem);
    }
}

/// The line of top-level key `key` in a policy file (1 when it cannot be found).
fn key_line(text: &str, key: &str) -> u64 {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(1, |i| i as u64 + 1)
}

#[derive(Default)]
struct Diags {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Diags {
    fn error(&mut self, file: &str, line: u64, problem: impl Into<Invalid>) {
        self.errors.push(Diagnostic::new(file, line, problem));
    }

    fn warn(&mut self, file: &str, line: u64, problem: impl Into<Invalid>) {
        self.warnings.push(Diagnostic::new(file, line, problem));
    }
}

impl Diagnostic {
    /// A diagnostic whose message quotes no credential (see
    /// [`crate::policy::file::redact_quoted_secrets`]).
    fn new(file: &str, line: u64, problem: impl Into<Invalid>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line: line.max(1),
            message: crate::policy::file::redact_quoted_secrets(&problem.into().to_string()),
        }
    }
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line().max(1)
}

/// The directory a policy directory's relative paths are resolved against: its parent.
pub fn base_dir(dir: &Path) -> PathBuf {
    match dir.components().next_back() {
        Some(Component::Normal(_)) => dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        Some(Component::RootDir | Component::Prefix(_)) => dir.to_path_buf(),
        Some(Component::CurDir | Component::ParentDir) | None => dir.join(".."),
    }
}

pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
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

/// How messages name the environment variable `name` a policy field gives:
/// `environment variable "NAME"` when it reads like one (upper case letters, digits and `_`,
/// in words of at most 20 characters, few digits, none in a word past 10), otherwise without
/// the name. A secret pasted
/// where the variable's name belongs (`d41f0c7a…`, `sk_live_…`) is a valid variable name too,
/// and is then never repeated in `check`, the logs or an admin answer.
pub fn env_variable(name: &str) -> String {
    if reads_like_env_name(name) {
        format!("environment variable {name:?}")
    } else {
        env_variable_unquoted(name)
    }
}

/// [`env_variable`] with the name as it is, not in quotes (`environment variable NAME`).
pub fn env_variable_unquoted(name: &str) -> String {
    if reads_like_env_name(name) {
        format!("environment variable {name}")
    } else {
        "the environment variable (its name is not shown: it looks like a secret, not a variable name)"
            .to_string()
    }
}

/// See [`env_variable`].
fn reads_like_env_name(name: &str) -> bool {
    let digits = name.bytes().filter(u8::is_ascii_digit).count();
    name.len() <= 64
        && digits <= 4
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && name.split('_').all(|word| {
            // A long word with digits in it reads like a key (`AKIAIOSFODNN7EXAMPLE`).
            word.len() <= 20 && (word.len() <= 10 || !word.bytes().any(|b| b.is_ascii_digit()))
        })
}

/// What messages write for a variable's name they may not show (see [`env_variable`]).
const NAME_NOT_SHOWN: &str = "(name not shown)";

/// [`env_name_shown`], the name in quotes (`"ACME_KEY"`).
fn quoted_env_name(name: &str) -> String {
    if reads_like_env_name(name) {
        format!("{name:?}")
    } else {
        NAME_NOT_SHOWN.to_string()
    }
}

/// A variable's name as messages may show it: itself when it reads like one, otherwise
/// `(name not shown)` (see [`env_variable`]).
pub fn env_name_shown(name: &str) -> &str {
    if reads_like_env_name(name) {
        name
    } else {
        NAME_NOT_SHOWN
    }
}

/// Warns about an HMAC key from `name` shorter than [`MIN_KEY_BYTES`]: the pseudonyms or
/// ledger hashes it keys are only as hard to reverse as the key is to guess.
fn warn_short_key(file: &str, name: &Spanned<String>, key: &str, d: &mut Diags) {
    if key.len() < MIN_KEY_BYTES {
        d.warn(
            file,
            line(name),
            Invalid::ShortKey(name.value.clone(), key.len()),
        );
    }
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
        d.error(file, line(name), Invalid::EnvName { field });
        return None;
    }
    if !reads_like_env_name(&name.value) {
        d.warn(file, line(name), Invalid::EnvNameUnusual { field });
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

/// The path of a key or certificate file (`field`): non-empty, and not key material pasted in
/// its place (a PEM block, or its base64 body), which is refused without being quoted.
fn file_path(
    file: &str,
    value: &Spanned<String>,
    field: &'static str,
    d: &mut Diags,
) -> Option<String> {
    let path = non_empty(file, value, field, d)?;
    if looks_like_key_material(&path) {
        d.error(file, line(value), Invalid::KeyMaterial(field));
        return None;
    }
    Some(path)
}

/// Whether a value given as a file's path is key material instead: a PEM block, or base64 of
/// 40 characters or more (line breaks, also written as `\\n`, ignored) that decodes to a PEM
/// block or to a DER SEQUENCE of exactly its length, or that ends in `=` padding (a raw key or
/// seed). Short values and values with other characters are paths.
pub(super) fn looks_like_key_material(value: &str) -> bool {
    use base64::Engine as _;
    let v = value.trim();
    if v.contains("-----BEGIN") {
        return true;
    }
    let compact: String = v.replace("\\n", "").split_whitespace().collect();
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if compact.len() < 40 || !compact.bytes().all(base64) {
        return false;
    }
    if compact.ends_with('=') {
        return true;
    }
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&compact) else {
        return false;
    };
    if der.windows(10).any(|w| w == b"-----BEGIN") {
        return true;
    }
    // SEQUENCE, then its length in the shortest form: one byte below 0x80, else 0x81 or 0x82
    // and one or two bytes.
    let (len, header) = match der.as_slice() {
        [0x30, n, ..] if *n < 0x80 => (usize::from(*n), 2),
        [0x30, 0x81, n, ..] if *n >= 0x80 => (usize::from(*n), 3),
        [0x30, 0x82, hi, lo, ..] if *hi > 0 => (usize::from(*hi) << 8 | usize::from(*lo), 4),
        _ => return false,
    };
    der.len() == header + len
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

/// For tests: the policy of `gateway` (its gateway.yaml) and one partner `acme` (its file),
/// which must load.
#[cfg(test)]
pub(crate) fn one_partner(gateway: &str, partner: String, env: Option<&dyn Env>) -> Policy {
    let source = PolicySource {
        dir: "policy".into(),
        gateway: SourceFile {
            path: "policy/gateway.yaml".into(),
            text: gateway.into(),
        },
        partners: vec![SourceFile {
            path: "policy/partners/acme.yaml".into(),
            text: partner,
        }],
    };
    load(&source, env)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .policy
}

#[cfg(test)]
mod tests;
