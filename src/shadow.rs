/*!
Shadow mode as the running gateway does it: every request the active policy decided is handed,
after that decision, to one background thread that decides it under the candidate
(`shadow: { policy: DIR }`) with the same functions the proxy uses ([`plan::resolve`], the
caller check, [`plan::plan_forwarded`]), and compares that with the active policy's decision
with [`gateway_core::shadow::compare`]. The active decision is the request's own ([`Live`]:
while a shadow is configured the request path's filter notes what it forwards); only a request
refused on its head is decided again under the active policy, on its head alone. Differences are counted in
`partner_gateway_shadow_differences_total{partner,route,change}` and the latest
[`RECENT_CAPACITY`] are kept for `GET {admin}/shadow`: paths, forms, status and code only.

Nothing of the candidate's decision leaves this module: it sends no byte upstream, writes no
ledger record, signs no token and logs no request content.

Off the request path: the request hands its job over with a non-blocking `try_send` into a
bounded queue ([`QUEUE_JOBS`] jobs and [`QUEUE_BYTES`] bytes of bodies and notes at most). When
the queue is full the job is dropped, counted (`skipped` at `/shadow`) and, at most every 10 s,
logged. The body moves into the job (no copy); the request never waits for the candidate.
*/
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Utc;
use gateway_core::optout::OptOutSource;
use gateway_core::plan::{self, Incoming, OptOuts};
use gateway_core::policy::{Partner, Policy};
use gateway_core::shadow::{compare_noted, Decision, Noted, Recent};
use gateway_core::Refusal;
use serde_json::{json, Value};

use crate::gateway::{optouts_view, Active, Gateway};
use crate::metrics::{Metrics, UNKNOWN};
use crate::tls::PeerIdentity;

/// How many differences `/shadow` lists (the newest).
pub const RECENT_CAPACITY: usize = 256;
/// Jobs waiting for the shadow thread at most.
pub const QUEUE_JOBS: usize = 1024;
/// Bytes held by waiting jobs at most (their bodies and notes).
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Seconds between two "skipped" log lines.
const SKIP_LOG_EVERY_S: i64 = 10;
const QUEUE_FULL: &str = "the evaluation queue is full";
const TOO_LARGE: &str =
    "a request's forwarded field paths were too large to compare (deep paths with long names)";

/// One request to decide again: what the active policy saw, moved here after its decision.
pub struct Job {
    /// The active policy (and its candidate) the request was decided under.
    pub active: Arc<Active>,
    pub method: String,
    /// The standard method's name, or `other` (what `/shadow` shows).
    pub method_label: &'static str,
    pub raw_path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub peer: Option<PeerIdentity>,
    /// `None`: the active policy refused the request on its head, the body was never read.
    pub body: Option<Vec<u8>>,
    /// The head announces a body (for the head-only decision).
    pub body_announced: bool,
    /// The opt-out set the active decision used.
    pub optouts: Option<Arc<dyn OptOutSource>>,
    /// The active policy's decision on the whole request, when the body was read.
    pub live: Option<Live>,
    /// Set by [`Shadow::submit`]: how many times the shadow state was cleared before. A job
    /// from before the last [`Shadow::clear`] is dropped, not counted.
    pub generation: u64,
}

impl Job {
    /// What this job holds while it waits: its body and the request path's note of what it
    /// forwarded (which can be several times the body's size) and to whom (the records'
    /// subject ids). Counted against [`QUEUE_BYTES`].
    fn held_bytes(&self) -> usize {
        let note = match &self.live {
            Some(Live {
                outcome: Noted::Forwarded(forwarded, records, head),
                ..
            }) => forwarded.heap_bytes() + records.heap_bytes() + head.heap_bytes(),
            _ => 0,
        };
        self.body.as_ref().map_or(0, Vec::capacity) + note
    }
}

/// The active policy's decision on a request whose body it read, as the request path made it.
pub struct Live {
    /// The partner and route (index) the request targets.
    pub partner: Arc<Partner>,
    pub route: usize,
    /// What the partner receives ([`plan::plan_forwarded`]'s note), or the refusal.
    pub outcome: Noted,
}

impl Live {
    /// Takes what the shadow thread needs from the request path's `outcome` (made with
    /// [`plan::plan_forwarded`]): the forwarded values move out of its report.
    pub fn take(target: &plan::Target, outcome: &mut Result<plan::Outgoing, Refusal>) -> Live {
        Live {
            partner: target.partner.clone(),
            route: target.route_index,
            outcome: Noted::take(outcome),
        }
    }

    fn labels(&self) -> Option<(String, String)> {
        let route = self.partner.routes.get(self.route)?;
        Some((self.partner.id.clone(), route.template.clone()))
    }
}

/// The shadow thread's queue and what it found.
#[derive(Default)]
pub struct Shadow {
    queue: OnceLock<SyncSender<Job>>,
    queued_bytes: Arc<AtomicUsize>,
    recent: Mutex<Option<Recent>>,
    evaluated: AtomicU64,
    skipped: AtomicU64,
    last_skip_log: AtomicI64,
    /// Bumped by [`Shadow::clear`].
    generation: AtomicU64,
}

impl Shadow {
    pub fn new() -> Shadow {
        Shadow::default()
    }

    /// Hands `job` to the shadow thread (started on the first job) without waiting: a full
    /// queue drops the job and counts it.
    pub fn submit(gateway: &Arc<Gateway>, mut job: Job) {
        let shadow = &gateway.shadow;
        job.generation = shadow.generation.load(Ordering::Acquire);
        let size = job.held_bytes();
        let held = shadow.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if held + size > QUEUE_BYTES && held > 0 {
            shadow.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return shadow.skip(QUEUE_FULL);
        }
        let queue = shadow.queue.get_or_init(|| start(gateway.clone()));
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                shadow.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                shadow.skip(QUEUE_FULL);
            }
        }
    }

    /// Forgets what the candidates so far found (a reload removed the `shadow` key), so that a
    /// later candidate starts from zero, like its metric series.
    pub fn clear(&self) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Under the lock that noting takes: a job either finished noting before, and is
        // forgotten here, or sees the new generation and is dropped.
        self.generation.fetch_add(1, Ordering::AcqRel);
        *recent = None;
        self.evaluated.store(0, Ordering::Release);
        self.skipped.store(0, Ordering::Relaxed);
    }

    /// Counts a request the candidate did not decide (`skipped` at `/shadow`) and logs `why`
    /// at most every [`SKIP_LOG_EVERY_S`] seconds.
    fn skip(&self, why: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        let now = Utc::now().timestamp();
        let last = self.last_skip_log.load(Ordering::Relaxed);
        if now - last >= SKIP_LOG_EVERY_S
            && self
                .last_skip_log
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "shadow policy: {why}, requests are served without shadow decisions ({} skipped so far)",
                self.skipped.load(Ordering::Relaxed)
            );
        }
    }

    /// Decides `job` under both policies and notes the differences; counted as evaluated only
    /// once they are noted, so a reader that sees the count also sees its differences.
    fn evaluate(&self, metrics: &Metrics, job: &Job) {
        let Some(candidate) = job.active.shadow.as_ref() else {
            return;
        };
        if job.generation != self.generation.load(Ordering::Acquire) {
            return; // decided by a candidate that was removed since
        }
        if !self.note_differences(metrics, job, candidate) {
            self.skip(TOO_LARGE);
        }
    }

    /// False when the request's decisions were too large to compare (nothing noted).
    fn note_differences(&self, metrics: &Metrics, job: &Job, candidate: &Policy) -> bool {
        if let Some(Live {
            outcome: Noted::Forwarded(forwarded, ..),
            ..
        }) = &job.live
        {
            if !forwarded.complete() {
                // Not comparable whatever the candidate does: do not decide it for nothing.
                return false;
            }
        }
        let optouts = optouts_view(&job.optouts);
        let decided;
        let (live_labels, live) = match &job.live {
            Some(live) => (live.labels(), &live.outcome),
            None => {
                decided = decide(&job.active.policy, job, optouts);
                (decided.0.clone(), &decided.1)
            }
        };
        let (shadow_labels, shadow) = decide(candidate, job, optouts);
        let Some(differences) = compare_noted(live, &shadow) else {
            return false;
        };
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if job.generation != self.generation.load(Ordering::Acquire) {
            return true; // the candidate was removed while this job was decided: dropped
        }
        self.evaluated.fetch_add(1, Ordering::Release);
        if differences.is_empty() {
            return true;
        }
        let (partner, route) = live_labels
            .or(shadow_labels)
            .unwrap_or_else(|| (UNKNOWN.into(), UNKNOWN.into()));
        for d in &differences {
            metrics.shadow_difference(&partner, &route, d.change);
        }
        recent
            .get_or_insert_with(|| Recent::new(RECENT_CAPACITY))
            .push(
                (&partner, &route, job.method_label),
                &differences,
                Utc::now().timestamp(),
            );
        true
    }

    /// `GET /shadow` while a candidate is configured: the newest differences first.
    pub fn to_json(&self, active: &Active) -> Value {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let differences: Vec<Value> = recent
            .iter()
            .flat_map(Recent::newest_first)
            .map(|e| {
                json!({
                    "time": crate::drift::rfc3339(e.time),
                    "partner": e.partner,
                    "route": e.route,
                    "method": e.method,
                    "change": e.change.as_str(),
                    "path": e.path,
                    "active": e.active,
                    "shadow": e.shadow,
                })
            })
            .collect();
        json!({
            "shadow": true,
            "policy": active.policy.gateway.shadow.as_ref().map(|p| p.display().to_string()),
            "active_version": active.policy.version,
            "shadow_version": active.shadow.as_ref().map(|p| p.version.clone()),
            "evaluated": self.evaluated.load(Ordering::Acquire),
            "skipped": self.skipped.load(Ordering::Relaxed),
            "differences_total": recent.as_ref().map_or(0, |r| r.total),
            "differences": differences,
        })
    }
}

/// The shadow thread's name (its panics are reported without their message).
const THREAD: &str = "shadow-policy";

/// Starts the shadow thread; its end of the queue lives as long as the process.
fn start(gateway: Arc<Gateway>) -> SyncSender<Job> {
    quiet_panics();
    let (sender, receiver) = sync_channel(QUEUE_JOBS);
    let spawned = std::thread::Builder::new()
        .name(THREAD.into())
        .spawn(move || run(&gateway, receiver));
    if let Err(e) = spawned {
        log::error!("cannot start the shadow policy thread: {e}");
    }
    sender
}

/// A panic message can quote what it was handling: on the shadow thread only its place is
/// logged. Other threads keep the hook they had.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(THREAD) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                log::error!(
                    "shadow policy: a shadow decision panicked at {}; the request was not affected",
                    at.as_deref().unwrap_or("an unknown place")
                );
            } else {
                previous(info);
            }
        }));
    });
}

fn run(gateway: &Gateway, jobs: Receiver<Job>) {
    // Serving comes first: this thread runs at the lowest CPU priority, so on a busy machine it
    // falls behind, its queue fills and shadow decisions are skipped rather than slowing requests.
    let lowest = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    if let Err(e) = lowest {
        log::warn!("shadow policy: cannot lower the shadow thread's priority: {e}");
    }
    let shadow = &gateway.shadow;
    while let Some(job) = next_job(&jobs) {
        let size = job.held_bytes();
        // A decision that panics loses this job only; the request was answered long ago.
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| shadow.evaluate(&gateway.metrics, &job)));
        drop(job);
        shadow.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        // A panic was logged by the hook above; the thread goes on with the next job.
        let _ = outcome;
    }
}

/// Polls of an empty queue, [`IDLE_POLL`] apart, before the thread blocks until the next job.
const IDLE_POLLS: u32 = 100;
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// The next job; `None` once the queue's sending end is gone. While traffic flows the thread
/// polls (sleeping [`IDLE_POLL`] when the queue is empty) instead of blocking on the queue: a
/// request's `try_send` then never has to wake it, which would cost the request path a system
/// call. After [`IDLE_POLLS`] empty polls (idle traffic) it blocks.
fn next_job(jobs: &Receiver<Job>) -> Option<Job> {
    for _ in 0..IDLE_POLLS {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::sleep(IDLE_POLL),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    jobs.recv().ok()
}

/// One policy's decision on `job`, and the partner and route it names (labels from that
/// policy). The same steps as the proxy: resolve, the caller check (with the gateway's own
/// caller authentication), then the head alone or the whole [`plan::plan_forwarded`].
fn decide(policy: &Policy, job: &Job, optouts: OptOuts<'_>) -> (Option<(String, String)>, Noted) {
    let refused = |refusal: Refusal| Noted::Decided(Decision::refused(&refusal));
    let target = match plan::resolve(&policy.partners, &job.method, &job.raw_path) {
        Ok(target) => target,
        Err(refusal) => return (None, refused(refusal)),
    };
    let labels = Some((target.partner.id.clone(), target.route().template.clone()));
    let headers = gateway_core::plan::borrowed_headers(&job.headers);
    let admitted = job
        .active
        .authenticate(&target.partner, &headers, job.peer.as_ref());
    if let Err((refusal, _)) = admitted {
        return (labels, refused(refusal));
    }
    let decision = match &job.body {
        None => match plan::check_head(&target, &headers, job.body_announced) {
            Ok(()) => Noted::Decided(Decision::Admitted),
            Err(refusal) => refused(refusal),
        },
        Some(body) => {
            let incoming = Incoming {
                query: job.query.as_deref(),
                headers: &headers,
                body,
            };
            let limits = &policy.gateway.limits;
            Noted::take(&mut plan::plan_forwarded(
                &target, &incoming, limits, optouts,
            ))
        }
    };
    (labels, decision)
}
