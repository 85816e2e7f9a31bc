/*!
TLS handshakes under the head deadline. pingora gives a client 60 s to finish its handshake,
counted nowhere and before any connection limit applies: a client that opens connections and
sends nothing, or half a ClientHello, would hold a socket each for a minute. The head deadline
(`limits.header_timeout_ms`) counts from the connection's start, so it covers the handshake too.

[`Handshakes`] is the listener's pre-TLS step: it notes each accepted socket (by its kernel
cookie, `SO_COOKIE`, which is never reused) with its deadline. When the handshake completes,
[`Handshakes::completed`] takes the note back (the connection's first head deadline then counts
from its accept). One sweeper task per listener looks at the notes every [`SWEEP`]: a socket
that is gone (its handshake failed and pingora closed it) is forgotten; one still there past its
deadline is shut down (both ways: the handshake's read ends, pingora drops the connection) and
counted as `header_timeout`. It shuts down only the socket it noted: the descriptor number must
still hold that cookie (a closed descriptor's number may be reused by a later connection).

At most `limits.max_connections` handshakes are noted at once; past that a new connection is
refused before its handshake (counted as `too_many_connections`), so a flood of connections
that never finish, or are reset at once, holds a bounded amount of memory.
*/
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use tokio::time::Instant;

use crate::gateway::Gateway;
use crate::lock;
use crate::metrics::ConnectionClosed;

/// How often the sweeper looks at the handshakes under way: how late past its deadline a
/// handshake may be ended.
const SWEEP: Duration = Duration::from_millis(100);
/// How often, at most, a full table drops the notes of gone sockets before refusing a
/// connection (a reset flood fills it between sweeps with sockets that are gone already).
const FORGET_WHEN_FULL: Duration = Duration::from_millis(5);
/// A full table this small drops its gone notes on every refusal.
const SMALL_TABLE: usize = 256;

/// One handshake under way.
struct Noted {
    accepted: Instant,
    deadline: Instant,
    digest: Arc<SocketDigest>,
    fd: RawFd,
}

impl Noted {
    /// Whether the noted socket, whose cookie is `noted_cookie`, is still open (a closed one's
    /// descriptor number may hold another socket by now).
    fn open(&self, noted_cookie: u64) -> bool {
        cookie(&self.digest) == Some(noted_cookie)
    }
}

/// The handshakes under way on one TLS listener; see the module docs.
pub struct Handshakes {
    gateway: Arc<Gateway>,
    pending: Mutex<HashMap<u64, Noted>>,
    sweeping: AtomicBool,
    /// When the notes of gone sockets were last dropped on a full table (see `note`).
    forgot_at: Mutex<Instant>,
}

impl Handshakes {
    pub fn new(gateway: Arc<Gateway>) -> Arc<Handshakes> {
        Arc::new(Handshakes {
            gateway,
            pending: Mutex::default(),
            sweeping: AtomicBool::new(false),
            forgot_at: Mutex::new(Instant::now()),
        })
    }

    /// The handshake of `stream` completed. Returns when the connection was accepted (`None`
    /// for a connection no note was made of, such as plain TCP).
    pub fn completed(&self, stream: &Stream) -> Option<Instant> {
        let cookie = cookie(&*stream.get_socket_digest()?)?;
        lock(&self.pending).remove(&cookie).map(|n| n.accepted)
    }

    /// Forgets the sockets that are gone and ends those past their deadline.
    fn sweep(&self) {
        let now = Instant::now();
        let metrics = &self.gateway.metrics;
        lock(&self.pending).retain(|&noted_cookie, noted| {
            if !noted.open(noted_cookie) {
                return false;
            }
            if now < noted.deadline {
                return true;
            }
            // Counted first: the client sees the close at once.
            metrics.connection_closed(ConnectionClosed::HeaderTimeout);
            let _ = nix::sys::socket::shutdown(noted.fd, nix::sys::socket::Shutdown::Both);
            false
        });
    }
}

fn cookie(digest: &SocketDigest) -> Option<u64> {
    digest.socket_cookie().ok().filter(|&c| c != 0)
}

/// Sweeps for as long as the listener's handshakes are referenced.
fn spawn_sweeper(handshakes: std::sync::Weak<Handshakes>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP).await;
            let Some(handshakes) = handshakes.upgrade() else {
                return;
            };
            handshakes.sweep();
        }
    });
}

/// The pre-TLS step pingora runs for each accepted connection.
pub struct HandshakeStep(pub Arc<Handshakes>);

#[async_trait]
impl PreTlsProcess for HandshakeStep {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let handshakes = &self.0;
        let Some(digest) = stream.get_socket_digest() else {
            return Ok(());
        };
        let Some(noted_cookie) = cookie(&digest) else {
            return Ok(());
        };
        if !handshakes.sweeping.swap(true, Ordering::AcqRel) {
            spawn_sweeper(Arc::downgrade(handshakes));
        }
        let limits = handshakes.gateway.active().policy.gateway.limits;
        let accepted = Instant::now();
        let noted = Noted {
            accepted,
            deadline: accepted + limits.header_timeout,
            digest,
            fd: stream.as_raw_fd(),
        };
        let mut pending = lock(&handshakes.pending);
        if pending.len() >= limits.max_connections {
            let mut forgot_at = lock(&handshakes.forgot_at);
            // A small table is cheap to look through on every refusal; a large one at most
            // every FORGET_WHEN_FULL (one system call per note, under the lock).
            if pending.len() <= SMALL_TABLE || forgot_at.elapsed() >= FORGET_WHEN_FULL {
                pending.retain(|&noted_cookie, noted| noted.open(noted_cookie));
                *forgot_at = Instant::now();
            }
        }
        if pending.len() >= limits.max_connections {
            drop(pending);
            let closed = ConnectionClosed::TooManyConnections;
            handshakes.gateway.metrics.connection_closed(closed);
            return pingora::Error::e_explain(
                pingora::ErrorType::AcceptError,
                "too many TLS handshakes under way",
            );
        }
        pending.insert(noted_cookie, noted);
        Ok(())
    }
}
