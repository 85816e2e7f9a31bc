/*!
TLS handshakes under the head deadline. pingora gives a client 60 s to finish its handshake,
counted nowhere and before any connection limit applies: a client that opens connections and
sends nothing, or half a ClientHello, would hold a socket each for a minute. The head deadline
(`limits.header_timeout_ms`) counts from the connection's start, so it covers the handshake too.

[`Handshakes`] is the listener's pre-TLS step: for each accepted connection it notes the
socket (by its kernel cookie, `SO_COOKIE`, which is never reused) and starts a watchdog. When
the handshake completes, [`Handshakes::completed`] takes the note back (the watchdog ends, and
the connection's first head deadline counts from its accept). A watchdog that reaches the
deadline with the note still there shuts the socket down (both ways: the handshake's read
ends, pingora drops the connection) and counts it as `header_timeout`. It shuts down only the
socket it noted: the descriptor number is checked to still hold that cookie first (a failed
handshake closes its descriptor, whose number a later connection may reuse).
*/
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::gateway::Gateway;
use crate::metrics::ConnectionClosed;

/// Per socket cookie: when the connection was accepted, and its watchdog's stop signal.
type Pending = Arc<Mutex<HashMap<u64, (Instant, oneshot::Sender<()>)>>>;

/// The handshakes under way on one TLS listener; see the module docs.
pub struct Handshakes {
    gateway: Arc<Gateway>,
    pending: Pending,
}

impl Handshakes {
    pub fn new(gateway: Arc<Gateway>) -> Arc<Handshakes> {
        Arc::new(Handshakes {
            gateway,
            pending: Arc::default(),
        })
    }

    /// The handshake of `stream` completed: its watchdog stops. Returns when the connection
    /// was accepted (`None` for a connection no watchdog noted, such as plain TCP).
    pub fn completed(&self, stream: &Stream) -> Option<Instant> {
        let cookie = cookie(&*stream.get_socket_digest()?)?;
        let (accepted, stop) = lock(&self.pending).remove(&cookie)?;
        let _ = stop.send(());
        Some(accepted)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cookie(digest: &SocketDigest) -> Option<u64> {
    digest.socket_cookie().ok().filter(|&c| c != 0)
}

#[async_trait]
impl PreTlsProcess for Handshakes {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let Some(digest) = stream.get_socket_digest() else {
            return Ok(());
        };
        let Some(cookie) = cookie(&digest) else {
            return Ok(());
        };
        let accepted = Instant::now();
        let deadline = accepted + self.gateway.active().policy.gateway.limits.header_timeout;
        let (stop, stopped) = oneshot::channel();
        lock(&self.pending).insert(cookie, (accepted, stop));
        let watchdog = Watchdog {
            pending: self.pending.clone(),
            gateway: self.gateway.clone(),
            digest,
            fd: stream.as_raw_fd(),
            cookie,
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => watchdog.expire(),
                _ = stopped => {}
            }
        });
        Ok(())
    }
}

/// What a watchdog needs to end one handshake that ran out of time.
struct Watchdog {
    pending: Pending,
    gateway: Arc<Gateway>,
    digest: Arc<SocketDigest>,
    fd: RawFd,
    cookie: u64,
}

impl Watchdog {
    fn expire(self) {
        if lock(&self.pending).remove(&self.cookie).is_none() {
            return; // completed just now
        }
        // The descriptor still holds the noted socket (its handshake is still under way).
        if cookie(&self.digest) == Some(self.cookie) {
            let _ = nix::sys::socket::shutdown(self.fd, nix::sys::socket::Shutdown::Both);
            self.gateway
                .metrics
                .connection_closed(ConnectionClosed::HeaderTimeout);
        }
    }
}
