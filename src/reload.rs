/*!
Policy reloads, from three triggers: a watcher polling the policy directory and every file the
policy names (certificates, keys, JWKS), `SIGHUP`, and `POST {admin}/reload`. One reload runs at a
time (the gateway's reload lock), so an older load can never be swapped in after a newer one.
Each change of the files is loaded once: the watcher skips files that `SIGHUP` or the admin API
already read as they are now. What the last reload read (by any trigger) is kept under the reload
lock ([`LastRead`]), with the files a refused policy names, so the watcher also notices a
missing certificate appearing after a reload by hand was refused for it.

A reload reads and validates the whole policy (and re-reads every certificate and key) before
anything is swapped; a policy that does not validate is logged with every `FILE:LINE: message`,
counted as `policy_reloads_total{result="error"}`, and the old policy keeps serving. The shadow
policy (`shadow.policy`) is part of the load: an invalid candidate refuses the whole reload the
same way, so the old active policy and the old candidate keep serving together. What only a
restart can change — the listen addresses, whether the proxy listener speaks TLS, the opt-out
store, the disclosure ledger — is refused the same way, rather than accepted and silently not applied.
*/
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::policy::Policy;
use sha2::{Digest, Sha256};

use crate::gateway::{Active, Gateway};
use crate::loader::{self, ProcessEnv};

/// How often the policy directory is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long files the watcher would load must then stay unchanged when the policy they make
/// discloses more than the one serving (see [`settled_if_widening`]).
const WIDENING_SETTLE: Duration = Duration::from_secs(3);

/// A refused reload: every problem, one line each (`FILE:LINE: message`).
#[derive(Debug, Clone, Default)]
pub struct Rejection {
    pub errors: Vec<String>,
    /// The files the refused policy names, when it could be read (the watcher keeps an eye on
    /// them, so that creating a missing certificate file is noticed).
    pub named_files: Vec<PathBuf>,
}

/// What the last reload, whichever its trigger, read (kept under the gateway's reload lock).
#[derive(Debug, Default)]
pub struct LastRead {
    /// The watched files as that reload found them (empty before the first reload).
    fingerprint: Fingerprint,
    /// The files the policy it refused names (the watcher keeps an eye on them too).
    refused_files: Vec<PathBuf>,
}

/// What the start read, for the watcher's first comparison: the policy directory's YAML as it
/// was just before the start loaded it ([`before_start`]), and the files that policy names as
/// they are now. An edit made while the gateway starts is then a change the watcher loads.
pub struct StartRead(Fingerprint);

/// Hashes the policy directory's YAML; call it before the start loads the policy.
pub fn before_start(dir: &Path) -> StartRead {
    StartRead(fingerprint(dir, &[]))
}

/// Records what the start read (see [`StartRead`]), for the watcher.
pub fn started(gateway: &Gateway, before: StartRead) {
    let dir = &gateway.policy_dir;
    let yaml_now = fingerprint_paths(dir, &[]);
    let named = named_files(&gateway.active().policy);
    let mut read: Fingerprint = fingerprint(dir, &named)
        .into_iter()
        .map(
            |(path, digest)| match before.0.iter().find(|(p, _)| *p == path) {
                Some((_, earlier)) => (path, *earlier),
                // A partner file that appeared while starting: not read.
                None if yaml_now.contains(&path) => (path, None),
                None => (path, digest),
            },
        )
        .collect();
    // A partner file that went while starting was read.
    read.extend(
        before
            .0
            .into_iter()
            .filter(|(p, _)| !yaml_now.contains(p) && !named.contains(p)),
    );
    read.sort();
    gateway.reload_guard().fingerprint = read;
}

/// The files the watcher looks at besides the policy directory: those the served policy names,
/// and those of the last policy refused.
fn watched(gateway: &Gateway, refused_files: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = named_files(&gateway.active().policy);
    files.extend(refused_files.iter().cloned());
    files
}

/// Loads the policy in `gateway.policy_dir` and swaps it in if it is valid: `Ok(version)`.
pub fn reload(gateway: &Gateway) -> Result<String, Rejection> {
    let mut last = gateway.reload_guard();
    // Taken before the files are read: a change made while they are read differs from it, so
    // the watcher still loads that change.
    let before = fingerprint(&gateway.policy_dir, &watched(gateway, &last.refused_files));
    let next = candidate(gateway);
    apply(gateway, &mut last, before, next)
}

/// The watcher's reload: loads the files only while they are exactly `judged`, the state its
/// settling and widening checks looked at, so that what it loads is what it waited on; `None`,
/// with nothing loaded, logged or counted, when they changed before or while it read them
/// (the next poll takes the change up), or a reload by hand read them as they are already.
fn reload_judged(gateway: &Gateway, judged: &Fingerprint) -> Option<Result<String, Rejection>> {
    let mut last = gateway.reload_guard();
    if last.fingerprint == *judged {
        return None;
    }
    let files = || fingerprint(&gateway.policy_dir, &watched(gateway, &last.refused_files));
    let before = files();
    if before != *judged {
        return None;
    }
    let next = candidate(gateway);
    if files() != before {
        return None;
    }
    Some(apply(gateway, &mut last, before, next))
}

/// Swaps `next` in (or logs and counts its refusal), and records what was read (`before`,
/// the files as they were just before).
fn apply(
    gateway: &Gateway,
    last: &mut LastRead,
    before: Fingerprint,
    next: Result<Active, Rejection>,
) -> Result<String, Rejection> {
    let outcome = match next {
        Ok(active) => {
            let version = active.policy.version.clone();
            log::info!("policy reloaded: version {version}");
            gateway.replace_active(active);
            gateway.metrics.policy_reload(true);
            Ok(version)
        }
        Err(rejection) => {
            log::error!(
                "policy reload rejected, the previous policy keeps serving:\n{}",
                rejection.errors.join("\n")
            );
            gateway.metrics.policy_reload(false);
            Err(rejection)
        }
    };
    last.refused_files = match &outcome {
        Ok(_) => Vec::new(),
        Err(rejection) => rejection.named_files.clone(),
    };
    // Only when the outcome names other files is the fingerprint taken again (a change in the
    // moment between is then missed).
    let after = watched(gateway, &last.refused_files);
    let same_files =
        before
            .iter()
            .map(|(p, _)| p)
            .eq(fingerprint_paths(&gateway.policy_dir, &after).iter());
    last.fingerprint = if same_files {
        before
    } else {
        fingerprint(&gateway.policy_dir, &after)
    };
    outcome
}

/// Reads, validates and builds the policy on disk, without swapping it in.
fn candidate(gateway: &Gateway) -> Result<Active, Rejection> {
    let dir = &gateway.policy_dir;
    let loaded = loader::load(dir, Some(&ProcessEnv)).map_err(|diagnostics| Rejection {
        errors: diagnostics.iter().map(ToString::to_string).collect(),
        named_files: Vec::new(),
    })?;
    let named_files = named_files(&loaded.policy);
    let reject = |errors: Vec<String>| Rejection {
        errors,
        named_files: named_files.clone(),
    };
    let restart_only = restart_only_changes(dir, &gateway.active().policy, &loaded.policy);
    if !restart_only.is_empty() {
        return Err(reject(restart_only));
    }
    let shadow = loader::load_shadow(&loaded.policy, Some(&ProcessEnv))
        .map_err(|diagnostics| reject(diagnostics.iter().map(ToString::to_string).collect()))?;
    let shadow = shadow.map(|s| s.policy);
    let active = loader::build_active(dir, loaded.policy).map_err(reject)?;
    let now = crate::gateway::now_unix() as i64;
    let regressions = crate::tls::presented_regressions(&gateway.active().tls, &active.tls, now);
    if !regressions.is_empty() {
        return Err(reject(
            regressions.iter().map(ToString::to_string).collect(),
        ));
    }
    Ok(active.with_shadow(shadow))
}

/// What differs between `old` and `new` that only a restart can apply, as `FILE:LINE: message`.
fn restart_only_changes(dir: &Path, old: &Policy, new: &Policy) -> Vec<String> {
    let file = loader::display_path(dir, "gateway.yaml");
    let text = crate::loader::read_policy_text(&dir.join("gateway.yaml"));
    let at = |key: &str, message: String| format!("{file}:{}: {message}", key_line(&text, key));
    let (old_gw, new_gw) = (&old.gateway, &new.gateway);
    let mut errors = Vec::new();
    if old_gw.listen != new_gw.listen {
        errors.push(at("listen", format!(
            "`listen` changed from {} to {}: listen addresses change only at a restart (the previous policy keeps serving)",
            old_gw.listen, new_gw.listen
        )));
    }
    if old_gw.admin_listen != new_gw.admin_listen {
        errors.push(at("admin_listen", format!(
            "`admin_listen` changed from {} to {}: listen addresses change only at a restart (the previous policy keeps serving)",
            old_gw.admin_listen, new_gw.admin_listen
        )));
    }
    match (&old_gw.tls, &new_gw.tls) {
        (None, Some(_)) => errors.push(at("tls", "`tls` was added: the proxy listener was started in plain HTTP and can only switch to TLS at a restart (the previous policy keeps serving)".into())),
        (Some(_), None) => errors.push(at("tls", "`tls` was removed: the proxy listener speaks TLS and can only switch to plain HTTP at a restart (the previous policy keeps serving)".into())),
        _ => {}
    }
    // The open store is the one acknowledged opt-outs are written to: swapping the policy
    // under it would send writes and reads to different places.
    if old_gw.optouts != new_gw.optouts {
        errors.push(at("optouts", "the `optouts` section changed: the opt-out store can only change at a restart (the previous policy keeps serving)".into()));
    }
    // The ledger is opened once: a policy that adds, moves or drops it would otherwise claim
    // records the running gateway does not write.
    if old_gw.ledger != new_gw.ledger {
        errors.push(at("ledger", "the `ledger` section changed: the disclosure ledger can only change at a restart (the previous policy keeps serving)".into()));
    }
    errors
}

/// The 1-based line of top-level `key:` in a YAML text (1 when it is not there).
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(1, |i| i + 1)
}

/// Every file outside the policy directory's YAML that a policy reads: certificates, keys,
/// CA sets, the callers' JWKS, the signing key and published keys, and the shadow policy's
/// `gateway.yaml` and partner files.
pub fn named_files(policy: &Policy) -> Vec<PathBuf> {
    let gw = &policy.gateway;
    let mut files = Vec::new();
    if let Some(tls) = &gw.tls {
        files.extend([tls.cert.path.clone(), tls.key.path.clone()]);
        files.extend(tls.client_ca.iter().map(|f| f.path.clone()));
    }
    for partner in policy.partners.values() {
        if let Some(tls) = &partner.tls {
            files.extend(tls.ca.iter().map(|f| f.path.clone()));
            if let Some((cert, key)) = &tls.client_cert {
                files.extend([cert.path.clone(), key.path.clone()]);
            }
        }
    }
    if let Some(callers) = &gw.callers {
        files.extend(callers.keys.iter().map(|f| f.path.clone()));
    }
    if let Some(signing) = &gw.signing {
        files.push(signing.key.path.clone());
        files.extend(signing.publish.iter().map(|f| f.path.clone()));
    }
    // The candidate policy's own files: editing it reloads both.
    if let Some(shadow) = &gw.shadow {
        files.push(shadow.join("gateway.yaml"));
        files.extend(crate::loader::partner_paths(&shadow.join("partners")));
    }
    files.sort();
    files.dedup();
    files
}

/// What identifies a version of the policy on disk: each file and the SHA-256 of its bytes
/// (`None` while unreadable). Contents rather than times, so a rotation that keeps sizes and
/// times, or swaps a symlink (Kubernetes secret volumes), is still seen.
type Fingerprint = Vec<(PathBuf, Option<[u8; 32]>)>;

/// The files a fingerprint covers: `gateway.yaml`, every partner file, and `named`, sorted.
fn fingerprint_paths(dir: &Path, named: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths = vec![dir.join("gateway.yaml")];
    paths.extend(crate::loader::partner_paths(&dir.join("partners")));
    paths.extend(named.iter().cloned());
    paths.sort();
    paths.dedup();
    paths
}

fn fingerprint(dir: &Path, named: &[PathBuf]) -> Fingerprint {
    fingerprint_paths(dir, named)
        .into_iter()
        .map(|path| {
            let bytes = crate::loader::read_policy_file(&path).ok();
            let digest = bytes.map(|b| Sha256::digest(b).into());
            (path, digest)
        })
        .collect()
}

/// SIGHUP (what `systemctl reload` sends), listened for from the very start of `serve`.
pub struct Hangups {
    runtime: tokio::runtime::Runtime,
    signals: tokio::signal::unix::Signal,
}

impl Hangups {
    /// Replaces SIGHUP's default action (ending the process) at once, before the policy and the
    /// opt-out store load, which can take a while: a SIGHUP during start is kept and reloads
    /// once the gateway runs ([`watch`]) instead of ending the process.
    pub fn listen() -> Option<Hangups> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| log::error!("cannot listen for SIGHUP: {e}"))
            .ok()?;
        let signals = {
            let _context = runtime.enter();
            signal(SignalKind::hangup())
        };
        let signals = signals
            .map_err(|e| log::error!("cannot listen for SIGHUP: {e}"))
            .ok()?;
        Some(Hangups { runtime, signals })
    }

    /// Reloads `gateway` on every SIGHUP, on a thread of its own.
    fn reload(self, gateway: Arc<Gateway>) {
        let Hangups {
            runtime,
            mut signals,
        } = self;
        let spawned = std::thread::Builder::new()
            .name("sighup-reload".into())
            .spawn(move || {
                runtime.block_on(async {
                    while signals.recv().await.is_some() {
                        log::info!("SIGHUP: reloading the policy");
                        let _ = reload(&gateway);
                    }
                });
            });
        if let Err(e) = spawned {
            log::error!("cannot start the SIGHUP listener: {e}");
        }
    }
}

/// Starts the watcher thread for `gateway`'s policy directory and the files the policy names,
/// and reloads on the SIGHUPs `hangups` listens for (see [`Hangups::listen`]).
pub fn watch(gateway: Arc<Gateway>, hangups: Option<Hangups>) {
    if let Some(hangups) = hangups {
        hangups.reload(gateway.clone());
    }
    std::thread::Builder::new()
        .name("policy-watcher".into())
        .spawn(move || {
            let dir = gateway.policy_dir.clone();
            let files = || watched(&gateway, &gateway.reload_guard().refused_files);
            let mut seen = fingerprint(&dir, &files());
            {
                // Without a record of the start (see `started`), what is on disk now stands
                // for it.
                let mut last = gateway.reload_guard();
                if last.fingerprint.is_empty() {
                    last.fingerprint = seen.clone();
                }
            }
            loop {
                std::thread::sleep(POLL_INTERVAL);
                let now = fingerprint(&dir, &files());
                // Compared with what the last reload read too, not only with the last poll: a
                // file put back between two polls after `POST /reload` or SIGHUP read it in
                // its changed state looks unchanged to the polls alone.
                if now == seen && now == gateway.reload_guard().fingerprint {
                    continue;
                }
                // Debounce: load only once the files have stopped changing.
                std::thread::sleep(POLL_INTERVAL);
                if fingerprint(&dir, &files()) != now {
                    continue;
                }
                // `POST /reload` or SIGHUP already read the files as they are now (the usual
                // "edit, then reload" of ops): loading them again would log and count the same
                // outcome twice (checked again when loading, after any wait).
                if gateway.reload_guard().fingerprint != now {
                    if !settled_if_widening(&gateway, &now, &files) {
                        continue;
                    }
                    let _ = reload_judged(&gateway, &now);
                }
                seen = gateway.reload_guard().fingerprint.clone();
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| log::error!("cannot start the policy watcher: {e}"));
}

/// A partner file caught half-written by the watcher can be a valid policy by itself, and one
/// that discloses more than the whole file: its `allow` list without the transforms or the
/// `honor_optouts` written after it. So when the files as they are now (`now`) make a policy
/// that discloses more than the one serving, they must stay unchanged for [`WIDENING_SETTLE`]
/// before the watcher loads them: false when they changed meanwhile (the next poll takes the
/// change up). A policy that is refused, or discloses nothing new, is loaded at once.
fn settled_if_widening(
    gateway: &Gateway,
    now: &Fingerprint,
    files: &dyn Fn() -> Vec<PathBuf>,
) -> bool {
    // The policy files alone (no certificates read, nothing logged): what `diff` compares.
    // Judged on the files as they are `now`; one that does not load is loaded (and refused) as
    // it is, never as whatever replaces it meanwhile (see `reload_judged`).
    let next = loader::load(&gateway.policy_dir, Some(&ProcessEnv));
    if fingerprint(&gateway.policy_dir, &files()) != *now {
        return false;
    }
    let Ok(next) = next else {
        return true;
    };
    if !gateway_core::diff::diff(&gateway.active().policy, &next.policy).discloses_more {
        return true;
    }
    log::info!(
        "policy files changed, and the change discloses more: loading it once they have stayed unchanged for {} s",
        WIDENING_SETTLE.as_secs()
    );
    let until = std::time::Instant::now() + WIDENING_SETTLE;
    while std::time::Instant::now() < until {
        std::thread::sleep(POLL_INTERVAL);
        if fingerprint(&gateway.policy_dir, &files()) != *now {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
