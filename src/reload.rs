/*!
Policy reloads: a watcher polls the policy directory, waits for edits to settle (a half-written
file is not loaded), validates the new policy completely, and only then swaps it in. A policy
that does not validate is logged with every `FILE:LINE: message`, counted as
`policy_reloads_total{result="error"}`, and the old policy keeps serving.
*/
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::gateway::{Active, Gateway};
use crate::loader::{self, ProcessEnv};

/// How often the policy directory is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What identifies a version of the policy files on disk: names, sizes and modification times.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    let mut visit = |path: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&path) {
            files.push((path, meta.len(), meta.modified().ok()));
        }
    };
    visit(dir.join("gateway.yaml"));
    if let Ok(entries) = std::fs::read_dir(dir.join("partners")) {
        for entry in entries.flatten() {
            visit(entry.path());
        }
    }
    files.sort();
    files
}

/// Loads the policy in `gateway.policy_dir` and swaps it in if it is valid. Returns whether it was.
pub fn reload(gateway: &Gateway) -> bool {
    let dir = &gateway.policy_dir;
    let old = gateway.active();
    let result = loader::load(dir, Some(&ProcessEnv))
        .map_err(|d| loader::diagnostics_error(&d))
        .and_then(|loaded| {
            // The open store is the one acknowledged opt-outs are written to: swapping the
            // policy under it would send writes and reads to different places.
            let store_path = |p: &gateway_core::policy::Policy| p.gateway.optouts.clone();
            if store_path(&loaded.policy) != store_path(&old.policy) {
                anyhow::bail!(
                    "the `optouts` section changed: the opt-out store can only change at a restart"
                );
            }
            Active::build(loaded.policy)
        });
    match result {
        Ok(active) => {
            let (old_gw, new_gw) = (&old.policy.gateway, &active.policy.gateway);
            if old_gw.listen != new_gw.listen || old_gw.admin_listen != new_gw.admin_listen {
                log::warn!(
                    "listen addresses changed in {}: they take effect at the next restart",
                    dir.display()
                );
            }
            log::info!("policy reloaded: version {}", active.policy.version);
            gateway.replace_active(active);
            gateway.metrics.policy_reload(true);
            true
        }
        Err(e) => {
            log::error!("policy reload rejected, the previous policy keeps serving: {e:#}");
            gateway.metrics.policy_reload(false);
            false
        }
    }
}

/// Reloads on every SIGHUP (what `systemctl reload` sends), on a thread of its own.
fn reload_on_sighup(gateway: Arc<Gateway>) {
    let spawned = std::thread::Builder::new()
        .name("sighup-reload".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return log::error!("cannot listen for SIGHUP: {e}"),
            };
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let mut hangups = match signal(SignalKind::hangup()) {
                    Ok(hangups) => hangups,
                    Err(e) => return log::error!("cannot listen for SIGHUP: {e}"),
                };
                while hangups.recv().await.is_some() {
                    log::info!("SIGHUP: reloading the policy");
                    reload(&gateway);
                }
            });
        });
    if let Err(e) = spawned {
        log::error!("cannot start the SIGHUP listener: {e}");
    }
}

/// Starts the watcher thread for `gateway`'s policy directory, and reloads on SIGHUP.
pub fn watch(gateway: Arc<Gateway>) {
    reload_on_sighup(gateway.clone());
    std::thread::Builder::new()
        .name("policy-watcher".into())
        .spawn(move || {
            let mut seen = fingerprint(&gateway.policy_dir);
            loop {
                std::thread::sleep(POLL_INTERVAL);
                let now = fingerprint(&gateway.policy_dir);
                if now == seen {
                    continue;
                }
                // Debounce: load only once the files have stopped changing.
                std::thread::sleep(POLL_INTERVAL);
                let settled = fingerprint(&gateway.policy_dir);
                if settled != now {
                    continue;
                }
                seen = settled;
                reload(&gateway);
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| log::error!("cannot start the policy watcher: {e}"));
}
