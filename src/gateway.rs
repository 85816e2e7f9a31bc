/*!
The gateway's shared runtime state: the policy being served (swapped whole on reload), the
opt-out store, the keys, and the metrics. One [`Gateway`] is shared by the proxy, the admin
listener and the reload watcher.
*/
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use anyhow::Context;
use gateway_core::callers::{AuthError, Caller, CallerKeys, CallerVerifier};
use gateway_core::optout::OptOutSource;
use gateway_core::plan::{OptOuts, Target};
use gateway_core::policy::{ClientIdentity, Partner, Policy};
use gateway_core::tagging::{
    DataUseTag, Jwks, TokenInput, TokenSigner, DATA_USE_HEADER, DATA_USE_TOKEN_HEADER, MAX_TTL_SECS,
};
use gateway_core::{Refusal, RefusalKind};

use crate::drift::Drift;
use crate::ledger::Ledger;
use crate::loader;
use crate::metrics::{Metrics, PolicySeries};
use crate::optout::postgres::PgOptOuts;
use crate::optout::{Freshness, OptOutBackend, OptOutStore};
use crate::shadow::Shadow;
use crate::tls::{ListenerTlsState, PeerIdentity, TlsMaterial};
use gateway_core::policy::OptOutStoreConfig;

/// How callers are authenticated under the active policy.
enum CallerAuth {
    /// Tokens are verified. With `anonymous` (`allow_unauthenticated: true` beside keys, local
    /// development only) a request without any passes as [`UNAUTHENTICATED_SUB`]; a token that
    /// is sent is still verified and checked against `allowed_callers`.
    Verify {
        verifier: CallerVerifier,
        anonymous: bool,
    },
    /// `allow_unauthenticated: true` and no keys, local development only (logged loudly at start).
    Unauthenticated,
    /// No `callers` section: the client certificate's identity is the only credential.
    CertificateOnly,
}

/// The verifier of the callers' tokens `c` names: its keys (and HS256 secret), issuer,
/// audience, groups claim and lifetime limit.
fn caller_verifier(c: &gateway_core::policy::CallersConfig) -> anyhow::Result<CallerVerifier> {
    let mut keys = match &c.keys {
        None => CallerKeys::new(),
        Some(file) => CallerKeys::parse(&loader::read_named_file(file)?)
            .map_err(|e| loader::named_file_error(file, format!("{e:#}")))?,
    };
    match (&c.hs256_secret, &c.hs256_secret_env) {
        (Some(secret), _) => keys
            .add_hs256_secret(None, secret)
            .context("callers HS256 secret")?,
        // `check` reads no secrets (`serve` judges this one, its length included): a stand-in
        // lets the rest of the verifier be checked.
        (None, Some(_)) => keys
            .add_hs256_secret(None, &[0; gateway_core::jose::MIN_HS256_SECRET_BYTES])
            .context("callers HS256 secret")?,
        (None, None) => {}
    }
    let verifier = CallerVerifier::new(keys, &c.issuer, &c.audience, c.groups_claim.clone())
        .map_err(|e| match &c.keys {
            Some(file) => {
                loader::named_file_error(file, format!("no usable verification key: {e:#}"))
            }
            None => anyhow::Error::new(e).context("callers: no usable verification key"),
        })?
        .with_max_lifetime(c.max_token_lifetime_s);
    log::info!("caller keys: {}", verifier.keys().describe().join(", "));
    Ok(verifier)
}

/// How callers are authenticated under `gw` (reading the keys it names).
fn caller_auth(gw: &gateway_core::policy::GatewayConfig) -> anyhow::Result<CallerAuth> {
    Ok(match &gw.callers {
        Some(c) if c.allow_unauthenticated => {
            log::warn!("callers.allow_unauthenticated is set: ANY local process may send customer data through this gateway (local development only)");
            let keys = c.keys.is_some() || c.hs256_secret.is_some();
            if keys {
                CallerAuth::Verify {
                    verifier: caller_verifier(c)?,
                    anonymous: true,
                }
            } else {
                CallerAuth::Unauthenticated
            }
        }
        Some(c) => CallerAuth::Verify {
            verifier: caller_verifier(c)?,
            anonymous: false,
        },
        None if gw.tls.as_ref().is_some_and(|t| t.client_identity.is_some()) => {
            CallerAuth::CertificateOnly
        }
        None => anyhow::bail!("gateway.yaml has no `callers` section"),
    })
}

/// The data-use signer and the JWKS the admin port publishes (reading the keys `gw` names);
/// the problem of every file that fails.
fn signing(
    gw: &gateway_core::policy::GatewayConfig,
) -> Result<(Option<TokenSigner>, Vec<u8>), Vec<anyhow::Error>> {
    let Some(s) = &gw.signing else {
        log::warn!("signing.disabled is true: forwarded requests carry no signed data-use token");
        return Ok((None, br#"{"keys":[]}"#.to_vec()));
    };
    let signer = loader::read_named_file(&s.key).and_then(|pem| {
        TokenSigner::from_pkcs8_pem(&pem, &s.kid, &s.issuer)
            .map_err(|e| loader::named_file_error(&s.key, format!("{e:#}")))
    });
    let mut published = Vec::new();
    let mut errors = Vec::new();
    for file in &s.publish {
        let kid = file
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .unwrap_or("published");
        match loader::read_named_file(file) {
            Ok(pem) => published.push((file, pem, kid)),
            Err(e) => errors.push(e),
        }
    }
    let mut signer = match signer {
        Ok(signer) if errors.is_empty() => signer,
        Ok(_) => return Err(errors),
        Err(e) => {
            errors.insert(0, e);
            return Err(errors);
        }
    };
    crate::signing::use_fastest_backend(&mut signer);
    let mut jwks = Jwks::new(&signer);
    for (file, pem, kid) in published {
        if let Err(e) = jwks.publish_file(&pem, kid) {
            errors.push(loader::named_file_error(file, format!("{e:#}")));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((Some(signer), jwks.to_json().into_bytes()))
}

/// The `sub` the data-use token names when the policy lets callers in unauthenticated.
pub const UNAUTHENTICATED_SUB: &str = "unauthenticated";

/// Everything built from one policy load: swapped as a unit so a request never sees half of two policies.
pub struct Active {
    pub policy: Arc<Policy>,
    callers: CallerAuth,
    signer: Option<TokenSigner>,
    jwks: Vec<u8>,
    /// Certificates and keys of both legs, read with this policy.
    pub tls: TlsMaterial,
    /// The candidate policy `shadow.policy` names, decided beside this one (never forwarded);
    /// swapped with it as a unit.
    pub shadow: Option<Arc<Policy>>,
    /// The metric series of this policy's partners and routes, resolved when it was loaded.
    pub series: PolicySeries,
}

impl Active {
    /// Builds the runtime pieces a validated policy names: the callers' keys, the data-use
    /// signing key and the JWKS. Any unreadable or unusable key stops the load.
    pub fn build(policy: Policy) -> anyhow::Result<Active> {
        Active::build_all(policy).map_err(|mut errors| errors.remove(0))
    }

    /// [`Active::build`], with the problem of every piece that fails (callers' keys, TLS
    /// material, signing key and published keys), not only the first: for `check`.
    pub fn build_all(policy: Policy) -> Result<Active, Vec<anyhow::Error>> {
        let callers = caller_auth(&policy.gateway);
        let tls = TlsMaterial::load(&policy, now_unix() as i64)
            .map_err(|d| loader::diagnostics_error(&d));
        let signing = signing(&policy.gateway);
        let (callers, (tls, tls_warnings), (signer, jwks)) = match (callers, tls, signing) {
            (Ok(callers), Ok(tls), Ok(signing)) => (callers, tls, signing),
            (callers, tls, signing) => {
                let mut errors: Vec<anyhow::Error> =
                    [callers.err(), tls.err()].into_iter().flatten().collect();
                errors.extend(signing.err().unwrap_or_default());
                return Err(errors);
            }
        };
        for w in &tls_warnings {
            log::warn!("{w}");
        }
        Ok(Active {
            policy: Arc::new(policy),
            callers,
            signer,
            jwks,
            tls,
            shadow: None,
            series: PolicySeries::default(),
        })
    }

    /// The same, deciding `candidate` beside it (`shadow`).
    pub fn with_shadow(mut self, candidate: Option<Policy>) -> Active {
        self.shadow = candidate.map(Arc::new);
        self
    }

    /// Authenticates the caller from its `Authorization` header(s) and, with
    /// `tls.client_identity`, its client certificate (`peer`); when both are configured both
    /// must pass and name the same caller. Checks it may use `partner` and returns its `sub`.
    /// On 401 the error carries the `WWW-Authenticate` value. `headers` are the request's, names
    /// lowercase: every `authorization` header counts (more than one is refused).
    pub fn authenticate(
        &self,
        partner: &Partner,
        headers: &[(&str, &str)],
        peer: Option<&PeerIdentity>,
    ) -> Result<String, (Refusal, Option<String>)> {
        let authorization: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| *n == "authorization")
            .map(|(_, v)| *v)
            .collect();
        let authorization = authorization.as_slice();
        let certified = self.certificate_identity(peer)?;
        let caller = match (&self.callers, certified) {
            (
                CallerAuth::Verify {
                    anonymous: true, ..
                },
                None,
            ) if authorization.is_empty() => return Ok(UNAUTHENTICATED_SUB.to_string()),
            (CallerAuth::Verify { verifier, .. }, certified) => {
                let result = match authorization {
                    [] => verifier.verify_cached(None, now_unix()),
                    [one] => verifier.verify_cached(Some(one), now_unix()),
                    _ => Err(AuthError::MalformedHeader),
                };
                let caller = result.map_err(|e| (e.to_refusal(), Some(e.www_authenticate())))?;
                if let Some(cert_sub) = certified.filter(|c| *c != caller.sub) {
                    return Err((
                        Refusal::new(RefusalKind::CallerNotAllowed, format!(
                            "the caller token's sub {:?} is not the client certificate's identity {cert_sub:?}",
                            caller.sub
                        )),
                        None,
                    ));
                }
                caller
            }
            (_, Some(sub)) => Arc::new(Caller::named(&sub)),
            (CallerAuth::Unauthenticated, None) => return Ok(UNAUTHENTICATED_SUB.to_string()),
            (CallerAuth::CertificateOnly, None) => {
                return Err((
                    Refusal::new(
                        RefusalKind::Unauthenticated,
                        "no client certificate identity",
                    ),
                    None,
                ))
            }
        };
        caller.check_partner(partner).map_err(|r| (r, None))?;
        Ok(caller.sub.clone())
    }

    /// The caller identity of the client certificate, when the policy takes one from it.
    /// With `tls.client_ca`, a connection the client-certificate check in force did not accept
    /// after its handshake (a TLS session resumed from before a reload that changed the CA or
    /// turned mTLS on; see `crate::tls`) is refused, and so is one with no record of that check.
    fn certificate_identity(
        &self,
        peer: Option<&PeerIdentity>,
    ) -> Result<Option<String>, (Refusal, Option<String>)> {
        let tls = self.policy.gateway.tls.as_ref();
        let mtls = tls.is_some_and(|t| t.client_ca.is_some());
        if peer.map_or(mtls, |p| !p.accepted) {
            return Err((
                Refusal::new(
                    RefusalKind::Unauthenticated,
                    "the client certificate of this TLS session is not accepted by the client CA in force: connect again with a full handshake",
                ),
                None,
            ));
        }
        match tls.and_then(|t| t.client_identity) {
            None => Ok(None),
            Some(ClientIdentity::SanDns) => match peer.and_then(|p| p.san_dns.clone()) {
                Some(sub) => Ok(Some(sub)),
                None => Err((
                    Refusal::new(RefusalKind::Unauthenticated,
                        "the client certificate has no DNS subject alternative name to identify the caller",
                    ),
                    None,
                )),
            },
        }
    }

    /// Whether caller `sub` may send to `partner` (for `explain --caller`, which has no token).
    /// Its groups are unknown without a token, so only its `sub` can admit it.
    pub fn authorize(&self, partner: &Partner, sub: &str) -> Result<(), Refusal> {
        Caller::named(sub).check_partner(partner)
    }

    /// The `ohsoft-data-use` tag and the signed data-use token for one forwarded body, given
    /// by its digest ([`Outgoing::body_sha256`](gateway_core::plan::Outgoing::body_sha256)).
    pub fn data_use_headers(
        &self,
        target: &Target,
        caller: &str,
        body_sha256: &str,
        legal_basis: Option<&str>,
        jti: &str,
    ) -> Result<Vec<(String, String)>, Refusal> {
        self.data_use_headers_for(target, caller, Some(body_sha256), legal_basis, jti)
    }

    /// The data-use headers of a streamed request: its token says `"stream": true` and binds
    /// no body digest (the disclosure ledger records the digest of what was sent).
    pub fn stream_data_use_headers(
        &self,
        target: &Target,
        caller: &str,
        legal_basis: Option<&str>,
        jti: &str,
    ) -> Result<Vec<(String, String)>, Refusal> {
        self.data_use_headers_for(target, caller, None, legal_basis, jti)
    }

    /// `body_sha256`: the digest of the exact bytes forwarded, or `None` for a stream; read
    /// only when there is a signer.
    fn data_use_headers_for(
        &self,
        target: &Target,
        caller: &str,
        body_sha256: Option<&str>,
        legal_basis: Option<&str>,
        jti: &str,
    ) -> Result<Vec<(String, String)>, Refusal> {
        let partner = &target.partner;
        let use_ = partner.kind.data_use();
        let tag = DataUseTag::for_request(partner, &self.policy.version, legal_basis)
            .request_header_value()?;
        let mut headers = vec![(DATA_USE_HEADER.to_string(), tag)];
        if let Some(signer) = &self.signer {
            let input = TokenInput {
                aud: &partner.id,
                sub: caller,
                use_,
                purpose: &partner.purpose,
                policy_version: &self.policy.version,
                body_sha256: body_sha256.unwrap_or_default(),
                legal_basis,
                now_unix: now_unix(),
                ttl_secs: MAX_TTL_SECS,
                jti,
            };
            let token = match body_sha256 {
                Some(_) => signer.sign(&input),
                None => signer.sign_stream(&input),
            };
            let token = token.map_err(|e| {
                Refusal::new(
                    RefusalKind::Internal,
                    format!("cannot sign the data-use token: {e}"),
                )
            })?;
            headers.push((DATA_USE_TOKEN_HEADER.to_string(), token));
        }
        Ok(headers)
    }

    /// The data-use signing key (also signs the ledger's checkpoints), when there is one.
    pub fn signer(&self) -> Option<&TokenSigner> {
        self.signer.as_ref()
    }

    /// The JWKS document with the public keys of data-use tokens.
    pub fn jwks(&self) -> Vec<u8> {
        self.jwks.clone()
    }
}

/// A fresh `jti` for a data-use token: a random (version 4) UUID.
pub fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Seconds since the epoch (0 if the clock is before 1970, which makes every token expired).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Gateway {
    active: RwLock<Arc<Active>>,
    /// The proxy listener's certificate and client CA, when it speaks TLS.
    pub listener_tls: Option<ListenerTlsState>,
    pub policy_dir: PathBuf,
    pub metrics: Metrics,
    /// Unknown fields seen per route (`/drift`).
    pub drift: Drift,
    /// The candidate policy's evaluation queue and differences (`/shadow`).
    pub shadow: Shadow,
    optouts: RwLock<Option<Arc<dyn OptOutBackend>>>,
    ledger: RwLock<Option<Arc<Ledger>>>,
    started: std::time::Instant,
    /// Held for a whole reload (load, validate, swap): the watcher, SIGHUP and the admin API
    /// reload one at a time, so an older load can never be swapped in after a newer one. It
    /// keeps what the last reload read (see `reload::LastRead`).
    reloading: Mutex<crate::reload::LastRead>,
    /// Requests under way, and whether a stop is draining them (see `shutdown`).
    pub drain: Arc<crate::shutdown::Drain>,
}

impl Gateway {
    pub fn new(mut active: Active, policy_dir: &Path) -> Gateway {
        let metrics = Metrics::new();
        metrics.set_policy_version(&active.policy.version);
        metrics.policy_reload(true);
        active.series = metrics.register_policy(&active.policy);
        if let Some(candidate) = &active.shadow {
            metrics.register_shadow(&active.policy, candidate);
        }
        set_certificate_expiries(&metrics, &active.tls.expiries);
        let listener_tls = active
            .tls
            .listener
            .as_ref()
            .map(|l| ListenerTlsState::new(l.cert.clone(), l.client_verifier.clone()));
        Gateway {
            active: RwLock::new(Arc::new(active)),
            listener_tls,
            policy_dir: policy_dir.to_path_buf(),
            metrics,
            drift: Drift::new(),
            shadow: Shadow::new(),
            optouts: RwLock::new(None),
            ledger: RwLock::new(None),
            started: std::time::Instant::now(),
            reloading: Mutex::new(crate::reload::LastRead::default()),
            drain: Arc::default(),
        }
    }

    /// The policy and keys in force right now.
    pub fn active(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Serialises reloads: hold the guard from reading the files until the swap is done. It
    /// holds what the last reload read.
    pub fn reload_guard(&self) -> MutexGuard<'_, crate::reload::LastRead> {
        match self.reloading.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Swaps in a new policy; in-flight requests finish on the one they started with, and new
    /// TLS handshakes use its certificates (established connections keep theirs).
    pub fn replace_active(&self, mut active: Active) {
        let changed = self.active().policy.version != active.policy.version;
        self.metrics.set_policy_version(&active.policy.version);
        active.series = self.metrics.register_policy(&active.policy);
        match &active.shadow {
            Some(candidate) => self.metrics.register_shadow(&active.policy, candidate),
            None => {
                // In this order: once `clear` returns no job notes any more, so nothing
                // counts into the series after they are removed.
                self.shadow.clear();
                self.metrics.clear_shadow();
            }
        }
        set_certificate_expiries(&self.metrics, &active.tls.expiries);
        if let (Some(state), Some(material)) = (&self.listener_tls, &active.tls.listener) {
            state.update(material.cert.clone(), material.client_verifier.clone());
        }
        {
            let mut guard = match self.active.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            *guard = Arc::new(active);
        }
        // After the swap: requests decided under the old policy are no longer listed (see
        // `Drift::record`), so none adds to the fresh list.
        if changed {
            self.drift.clear();
        }
    }

    pub fn set_optouts(&self, backend: Arc<dyn OptOutBackend>) {
        let mut guard = match self.optouts.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(backend);
        drop(guard);
        self.refresh_optout_gauge();
    }

    /// Opens the disclosure ledger the policy names (kept for the life of the process: a
    /// reload that changes `ledger` takes effect at the next start).
    pub fn open_ledger(&self) {
        let active = self.active();
        if let Some(config) = &active.policy.gateway.ledger {
            let errors = self.metrics.ledger_error_counter();
            let ledger = Ledger::start(config, Box::new(move || errors.inc()));
            let mut guard = match self.ledger.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            *guard = Some(ledger);
        }
    }

    /// The disclosure ledger, when the policy has one.
    pub fn ledger(&self) -> Option<Arc<Ledger>> {
        match self.ledger.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Shutdown: the ledger's final checkpoint, signed with the active key.
    pub fn close_ledger(&self) {
        if let Some(ledger) = self.ledger() {
            ledger.close(self.active().signer());
        }
    }

    /// Where opt-outs are kept, once opened.
    pub fn optout_backend(&self) -> Option<Arc<dyn OptOutBackend>> {
        match self.optouts.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The opt-out set as the request path asks it: `None` when not loaded, or (PostgreSQL)
    /// stale past `max_staleness_s`, so that routes honouring opt-outs answer 503.
    pub fn optout_source(&self) -> Option<Arc<dyn OptOutSource>> {
        self.optout_backend().and_then(|b| b.source())
    }

    /// How fresh the opt-out copy is (`None`: no `optouts` section or not opened).
    pub fn optout_freshness(&self) -> Option<Freshness> {
        self.optout_backend().map(|b| b.freshness())
    }

    /// Sets `partner_gateway_optouts{scope}` from the store's counters, for the scopes the
    /// policy honours only: label values come from the policy, never from admin input.
    pub fn refresh_optout_gauge(&self) {
        let active = self.active();
        let mut scopes: Vec<&str> = active
            .policy
            .partners
            .values()
            .flat_map(|p| p.honor_optouts.iter().map(|s| s.as_str()))
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        let counts = self
            .optout_backend()
            .map(|backend| backend.count_by_scope())
            .unwrap_or_default();
        self.metrics.set_optouts(scopes.into_iter().map(|scope| {
            let count = counts
                .iter()
                .find(|(s, _)| s.as_str() == scope)
                .map_or(0, |(_, n)| *n);
            (scope, count)
        }));
    }

    /// Sets `partner_gateway_optouts_staleness_seconds`: the age of the opt-out copy (0 for the
    /// embedded store; time since the last catch-up for a PostgreSQL replica); while opt-outs
    /// some partner honours are not loaded, the time since start, so "opt-outs not loaded" is
    /// visible without traffic.
    pub fn refresh_optouts_staleness(&self) {
        let age = match self.optout_freshness() {
            Some(Freshness::Current { staleness } | Freshness::Stale { staleness, .. }) => {
                staleness
            }
            None | Some(Freshness::NotLoaded) if self.needs_optouts() => self.started.elapsed(),
            _ => std::time::Duration::ZERO,
        };
        self.metrics.set_optouts_staleness(age);
    }

    fn needs_optouts(&self) -> bool {
        self.active()
            .policy
            .partners
            .values()
            .any(|p| !p.honor_optouts.is_empty())
    }

    /// Ready when the policy is loaded and, if any partner honours opt-outs, the opt-out data
    /// has been loaded once. A PostgreSQL replica that lost its database stays ready (the
    /// contractor routes keep working) but reports itself degraded.
    pub fn ready(&self) -> Readiness {
        if self.drain.draining() {
            return Readiness::NotReady("the gateway is shutting down".into());
        }
        if self.ledger().is_some_and(|l| !l.writable()) {
            return Readiness::NotReady("the disclosure ledger cannot be written".into());
        }
        let needs_optouts = self.needs_optouts();
        match self.optout_freshness() {
            None | Some(Freshness::NotLoaded) if needs_optouts => {
                Readiness::NotReady("opt-out data is not loaded".into())
            }
            Some(
                f @ Freshness::Stale {
                    staleness,
                    max_staleness,
                },
            ) => Readiness::Degraded {
                staleness,
                max_staleness,
                refusing: needs_optouts && !f.usable(),
            },
            _ => Readiness::Ready,
        }
    }

    /// The policy says `signing: { disabled: true }`: partners get no data-use token.
    pub fn signing_disabled(&self) -> bool {
        self.active().policy.gateway.signing.is_none()
    }
}

/// Exactly the certificates of the policy being served (names come from the policy).
fn set_certificate_expiries(metrics: &Metrics, expiries: &[(String, i64)]) {
    metrics.clear_certificate_expiry();
    for (name, not_after) in expiries {
        metrics.set_certificate_expiry(name, *not_after);
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// 503: policy or opt-out data not loaded yet.
    NotReady(String),
    /// 200, but the opt-out copy is stale (the database is unreachable); past the bound
    /// (`refusing`) routes that honour opt-outs answer 503.
    Degraded {
        staleness: std::time::Duration,
        max_staleness: std::time::Duration,
        refusing: bool,
    },
}

/// Borrow helper so callers can hold the `Arc` while passing `OptOuts` down.
pub fn optouts_view(source: &Option<Arc<dyn OptOutSource>>) -> OptOuts<'_> {
    match source {
        Some(source) => OptOuts::Loaded(source.as_ref()),
        None => OptOuts::NotLoaded,
    }
}

/// Opens the opt-out data read-only, for commands that run beside the server (`explain`).
pub fn open_optout_source(policy: &Policy) -> Option<Arc<dyn OptOutSource>> {
    let path = match policy.gateway.optouts.as_ref()? {
        OptOutStoreConfig::Embedded { path } => path,
        OptOutStoreConfig::Postgres(pg) => {
            return match crate::optout::postgres::bulk::load_once(pg) {
                Ok(set) => Some(Arc::new(set)),
                Err(e) => {
                    log::warn!("opt-out data not loaded: {e:#}");
                    None
                }
            };
        }
    };
    if !path.exists() {
        // What a gateway starting now would have: a new, empty store.
        log::info!(
            "no opt-out store at {} yet: no customer has opted out",
            path.display()
        );
        return Some(Arc::new(gateway_core::optout::OptOutSet::new()));
    }
    match OptOutStore::open_read_only(path) {
        Ok(store) => Some(store.in_memory()),
        Err(e) => {
            log::warn!("opt-out data not loaded: {e:#}");
            None
        }
    }
}

/// How often an opt-out store that would not open is tried again.
const OPTOUT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the opt-out data the policy names and makes it the gateway's opt-out source. If the
/// embedded store cannot be opened, the gateway stays not-ready for opt-out routes (503) and a
/// background thread keeps trying; everything else serves meanwhile. A PostgreSQL replica
/// starts at once and loads in the background (not ready until the first complete load); `Err`
/// only when it cannot start at all (a database URL that cannot be used), which no retry mends.
pub fn open_optouts_into(gateway: &Arc<Gateway>) -> anyhow::Result<()> {
    let path = match gateway.active().policy.gateway.optouts.clone() {
        None => return Ok(()),
        Some(OptOutStoreConfig::Postgres(pg)) => {
            let replica = PgOptOuts::start(&pg)
                .with_context(|| format!("opt-out database (table {})", pg.table))?;
            gateway.set_optouts(replica);
            return Ok(());
        }
        Some(OptOutStoreConfig::Embedded { path }) => path,
    };
    match OptOutStore::open(&path) {
        Ok(store) => {
            gateway.set_optouts(Arc::new(store));
            Ok(())
        }
        Err(e) => {
            let error = e.context(format!("opt-out store {}", path.display()));
            log::error!("{error:#}: routes that honour opt-outs answer 503 until it opens");
            let gateway = gateway.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(OPTOUT_RETRY);
                match OptOutStore::open(&path) {
                    Ok(store) => {
                        log::info!("opt-out store {} is open", path.display());
                        gateway.set_optouts(Arc::new(store));
                        return;
                    }
                    Err(e) => log::debug!("opt-out store still not open: {e:#}"),
                }
            });
            Ok(())
        }
    }
}
