/*!
Reads a policy directory from disk and hands it to the core loader. `check`, `serve`,
`explain` and reloads all come through here, so they agree on what a valid policy is.
*/
use std::path::{Path, PathBuf};

use gateway_core::policy::{
    self, Diagnostic, Env, Loaded, NamedFile, Partial, Policy, PolicySource, SourceFile,
};

use crate::gateway::Active;

/// The process environment, where secrets named by the policy live.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// How a path under the policy directory is shown in diagnostics: as the user wrote `--policy`.
pub fn display_path(dir: &Path, relative: &str) -> String {
    let base = dir.to_string_lossy();
    let base = base.trim_end_matches('/');
    if base.is_empty() {
        relative.to_string()
    } else {
        format!("{base}/{relative}")
    }
}

/// Whether a name in `partners/` is a partner file: `*.yaml` or `*.yml`, and not hidden (no
/// partner id starts with `.`). An editor's lock file such as `.#payflow.yaml`, which often
/// points nowhere, or its backup `payflow.yaml~` must not make every reload fail (or even start
/// one) while a file is being edited. The loader and the reload watcher both ask this.
pub fn partner_file(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The paths of the partner files in `partners` ([`partner_file`]), in no particular order.
pub fn partner_paths(partners: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(partners) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| partner_file(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect()
}

/// Reads `gateway.yaml` and every partner file of `partners/` ([`partner_file`]), sorted by
/// name.
pub fn read_policy_dir(dir: &Path) -> Result<PolicySource, Vec<Diagnostic>> {
    match read_policy_dir_partly(dir) {
        (Some(source), errors) if errors.is_empty() => Ok(source),
        (_, errors) => Err(errors),
    }
}

/// [`read_policy_dir`], with what could be read beside the files that could not: the source
/// (without those files) whenever `gateway.yaml` was read, so `check` can report the other
/// files' errors too.
fn read_policy_dir_partly(dir: &Path) -> (Option<PolicySource>, Vec<Diagnostic>) {
    let read = |relative: &str| -> Result<SourceFile, Diagnostic> {
        let shown = display_path(dir, relative);
        let unreadable = |line: u64, e: &dyn std::fmt::Display| Diagnostic {
            file: shown.clone(),
            line,
            message: format!("cannot read file: {e}"),
        };
        let bytes = read_policy_file(&dir.join(relative)).map_err(|e| unreadable(1, &e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // The line of the first byte that is not UTF-8.
            let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            unreadable(line as u64, &e.utf8_error())
        })?;
        Ok(SourceFile {
            path: shown.clone(),
            text,
        })
    };
    let mut errors = Vec::new();
    let gateway = read("gateway.yaml").map_err(|e| errors.push(e)).ok();
    let mut names: Vec<String> = match std::fs::read_dir(dir.join("partners")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| partner_file(n))
            .collect(),
        Err(e) => {
            errors.push(Diagnostic {
                file: display_path(dir, "partners"),
                line: 1,
                message: format!("cannot read the partners directory: {e}"),
            });
            Vec::new()
        }
    };
    names.sort();
    let mut partners = Vec::new();
    for name in names {
        match read(&format!("partners/{name}")) {
            Ok(file) => partners.push(file),
            Err(e) => errors.push(e),
        }
    }
    let source = gateway.map(|gateway| PolicySource {
        dir: dir.to_path_buf(),
        gateway,
        partners,
    });
    (source, errors)
}

/// Loads and validates a policy. `env: None` is `check` mode: secrets are not resolved. A file
/// that cannot be read is an error beside those of the files that can.
pub fn load(dir: &Path, env: Option<&dyn Env>) -> Result<Loaded, Vec<Diagnostic>> {
    load_partly(dir, env).map_err(|(errors, _)| errors)
}

/// [`load`], keeping on refusal what validated (see [`policy::load_partly`]), for `check` to
/// load the files it names.
pub fn load_partly(
    dir: &Path,
    env: Option<&dyn Env>,
) -> Result<Loaded, (Vec<Diagnostic>, Partial)> {
    let (source, mut errors) = read_policy_dir_partly(dir);
    let Some(source) = source else {
        return Err((errors, Partial::default()));
    };
    match policy::load_partly(&source, env) {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        // Only files that could not be read are wrong: gateway.yaml validated.
        Ok(loaded) => {
            let partial = Partial {
                policy: Some(Box::new(loaded.policy)),
                gateway_valid: true,
                partner_tls: Vec::new(),
            };
            Err((errors, partial))
        }
        Err((more, partial)) => {
            errors.extend(more);
            Err((errors, partial))
        }
    }
}

/// Joins every diagnostic into one error, one `FILE:LINE: message` per line.
pub fn diagnostics_error(diagnostics: &[Diagnostic]) -> anyhow::Error {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines_error(&lines)
}

/// Joins `FILE:LINE: message` lines into one error (what [`build_active`] parses back).
pub fn lines_error(lines: &[String]) -> anyhow::Error {
    anyhow::anyhow!("{INVALID_POLICY}{}", lines.join("\n"))
}

/// Builds the runtime pieces of a validated policy ([`Active::build`]), reporting what fails as
/// `FILE:LINE: message` lines like every other policy problem (`check`, `serve` and reloads
/// agree): problems of the files the policy names (certificates, `callers.keys`, `signing.key`,
/// `signing.publish`) arrive as such lines already, on the line that names the file.
pub fn build_active(dir: &Path, policy: Policy) -> Result<Active, Vec<String>> {
    let errors = match Active::build_all(policy) {
        Ok(active) => return Ok(active),
        Err(errors) => errors,
    };
    let (mut lines, other) = split_problems(errors);
    // What else could fail (a secret from the environment) is the gateway file's.
    let gateway = display_path(dir, "gateway.yaml");
    lines.extend(
        other
            .iter()
            .map(|message| format!("{gateway}:1: {message}")),
    );
    Err(lines)
}

/// The problems of the files `policy` names, as `FILE:LINE: message` lines, for `check` on a
/// gateway.yaml that did not validate: `policy` holds its settings as far as they did, so
/// what else fails to build is no news.
pub fn named_file_problems(policy: Policy) -> Vec<String> {
    match Active::build_all(policy) {
        Ok(_) => Vec::new(),
        Err(errors) => split_problems(errors).0,
    }
}

/// Problems of named files (arriving as `FILE:LINE` lines already, on the line that names the
/// file) apart from every other error (its message).
fn split_problems(errors: Vec<anyhow::Error>) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut other = Vec::new();
    for error in errors {
        let message = format!("{error:#}");
        match message.strip_prefix(INVALID_POLICY) {
            Some(listed) => {
                let listed = listed.lines().filter(|l| !l.trim().is_empty());
                lines.extend(listed.map(str::to_string));
            }
            None => other.push(message),
        }
    }
    (lines, other)
}

/// How [`diagnostics_error`] starts, before one `FILE:LINE: message` per line.
const INVALID_POLICY: &str = "invalid policy:\n";

/// The largest policy file, or file a policy names (key, certificate bundle, JWKS), read.
pub const MAX_POLICY_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a policy file or a file a policy names: only a regular file (a FIFO would block every
/// reload, `/dev/zero` would never end) of at most [`MAX_POLICY_FILE_BYTES`].
pub fn read_policy_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    // Checked before opening: opening a FIFO waits for a writer.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_POLICY_FILE_BYTES) as usize);
    std::fs::File::open(path)?
        .take(MAX_POLICY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_POLICY_FILE_BYTES {
        return Err(invalid(format!(
            "larger than {MAX_POLICY_FILE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// A policy file as text, read as [`read_policy_file`] reads it (not UTF-8 is an error).
pub fn read_policy_string(path: &Path) -> std::io::Result<String> {
    let bytes = read_policy_file(path)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A policy file's text, empty when it cannot be read (for finding a key's line in a message).
pub fn read_policy_text(path: &Path) -> String {
    read_policy_string(path).unwrap_or_default()
}

/// Reads a file the policy names (keys, JWKS), with the path in the error.
pub fn read_named_file(file: &NamedFile) -> anyhow::Result<Vec<u8>> {
    // Key material pasted where a path belongs never gets here: the policy load refuses it.
    read_policy_file(&file.path)
        .map_err(|e| named_file_error(file, format!("cannot read file: {e}")))
}

/// A problem with the content of a file the policy names, on the policy line that names it
/// (what [`build_active`] passes on as it stands).
pub fn named_file_error(file: &NamedFile, message: impl std::fmt::Display) -> anyhow::Error {
    diagnostics_error(&[crate::tls::files::problem(file, message)])
}

/// Loads and validates the candidate policy `shadow.policy` names, like any policy directory
/// (its files named in every diagnostic); `Ok(None)` without a `shadow` key. Only its partners,
/// routes and limits are used: its own listeners, TLS, ledger, opt-out store, keys and `shadow`
/// are never opened.
pub fn load_shadow(
    policy: &Policy,
    env: Option<&dyn Env>,
) -> Result<Option<Loaded>, Vec<Diagnostic>> {
    match &policy.gateway.shadow {
        None => Ok(None),
        Some(dir) => load(dir, env).map(Some),
    }
}

/// What the bundled demo keys and certificates say on their first line
/// (`certs/gen-demo-keys.sh`): their private keys are public in the repository.
const DEMO_MARK: &[u8] = b"DEMO ONLY:";

/// `FILE:1: warning: ...` for each key or certificate file the policy names that is one of the
/// bundled demo files: fine for the demo, never for real traffic (anyone can mint caller
/// tokens, read the listener's traffic or forge data-use tokens with them).
pub fn demo_key_warnings(policy: &Policy) -> Vec<String> {
    crate::reload::named_files(policy)
        .into_iter()
        .filter(|path| {
            read_policy_file(path).is_ok_and(|b| b.windows(DEMO_MARK.len()).any(|w| w == DEMO_MARK))
        })
        .map(|path| {
            format!(
                "{}:1: warning: a DEMO key or certificate: its private key is public in this repository, so it protects nothing; replace it before real use (see certs/README.md)",
                path.display()
            )
        })
        .collect()
}
