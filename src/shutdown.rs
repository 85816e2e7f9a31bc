/*!
Stopping: what the stop signals (`SIGTERM`, `SIGINT`, `SIGQUIT`) do to requests under way.

`SIGTERM` drains. `/readyz` turns 503 and new requests are refused with 503 `not_ready`, so a
load balancer moves traffic to another replica. Every request already admitted runs to its end:
the caller gets the partner's answer and the ledger gets the outcome line. Only then do the
listeners stop, and the ledger's shutdown checkpoint is written. A drain lasts at most
[`MAX_DRAIN`]: requests still running then are cut, as `kill -9` would cut them. A second
`SIGTERM`, or a `SIGINT`, stops at once. `SIGQUIT` drains like `SIGTERM`: pingora would take it
for a graceful upgrade (handing the listening sockets to a new process over a Unix socket),
which this gateway does not use.
*/
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// The longest a drain waits for requests under way: below the 30 s a service manager usually
/// allows a stop (the bundled systemd unit's `TimeoutStopSec`).
pub const MAX_DRAIN: Duration = Duration::from_secs(25);

/// Requests under way, and whether the gateway is draining.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

/// One request under way, from its first byte to the end of its answer (dropped with the
/// request's context).
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drain {
    /// Counts a request as under way. It is counted before [`Drain::draining`] is asked, and a
    /// drain is started before the count is read, so no admitted request is missed.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Refuses new requests from now on; true when every request under way has finished
    /// within `within`.
    pub async fn drain(&self, within: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + within;
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// pingora's shutdown signal, with a drain before a graceful stop.
pub struct Signals(pub Arc<Drain>);

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            log::error!("cannot watch for stop signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = quit.recv() => {}
            _ = term.recv() => {}
        }
        let under_way = self.0.in_flight();
        log::info!("stopping: draining {under_way} request(s) under way; new requests get 503");
        tokio::select! {
            drained = self.0.drain(MAX_DRAIN) => {
                if drained {
                    log::info!("stopping: every request under way has finished");
                } else {
                    log::warn!(
                        "stopping: {} request(s) still under way after {} s are cut",
                        self.0.in_flight(),
                        MAX_DRAIN.as_secs()
                    );
                }
            }
            _ = term.recv() => log::warn!("stopping now: a second SIGTERM"),
            _ = int.recv() => log::warn!("stopping now: SIGINT"),
        }
        ShutdownSignal::GracefulTerminate
    }
}
