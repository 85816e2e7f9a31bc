/*!
Slow and greedy clients: the limits that hold per connection rather than per request.

[`LimitedApp`] wraps the pingora proxy application. For every accepted connection it

- refuses it when `limits.max_connections` are already open (a plain close: no request was read
  yet, so there is nothing to answer; counted as `too_many_connections`), unless a kept-alive
  connection is idle between requests: the one idle longest is closed instead (`idle`);
- wraps the stream in a [`GuardedStream`], which bounds each request head in time
  (`limits.header_timeout_ms`, from the connection's start for its first request and from the
  first byte of every later one, so idle keep-alive time is not head time) and in size
  (`limits.max_header_bytes`), and turns pingora's own bare answers to malformed heads into the
  gateway's JSON refusals.

On a TLS listener the connection's start is its accept, before the handshake: [`Handshakes`]
holds the handshake to the same deadline.

The proxy marks the end of a head with [`head_done`] and the end of a request with
[`request_done`]; the body deadline (`limits.body_timeout_ms`) is [`body_deadline`], applied
where the proxy reads the body. Limits are read from the policy being served when a
connection starts, so a reload applies to new connections.
*/
mod handshake;
mod idle;
mod stream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use gateway_core::policy::Limits;
use gateway_core::{Refusal, RefusalKind};
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use crate::gateway::Gateway;
use crate::metrics::ConnectionClosed;
pub use handshake::{HandshakeStep, Handshakes};
use idle::IdleConnections;
pub use stream::GuardedStream;

/// A pingora application `A` behind the connection limits of the policy being served.
pub struct LimitedApp<A> {
    inner: Arc<A>,
    gateway: Arc<Gateway>,
    open: Arc<AtomicUsize>,
    /// Kept-alive connections waiting for their next request (closed to make room).
    idle: Arc<IdleConnections>,
    /// A TLS listener's handshakes (when the connection was accepted).
    handshakes: Option<Arc<Handshakes>>,
    /// The proxy listener (else the admin one, whose refused heads are no proxy traffic).
    proxy: bool,
}

impl<A> LimitedApp<A> {
    pub fn new(inner: A, gateway: Arc<Gateway>) -> LimitedApp<A> {
        LimitedApp {
            inner: Arc::new(inner),
            gateway,
            open: Arc::new(AtomicUsize::new(0)),
            idle: Arc::default(),
            handshakes: None,
            proxy: true,
        }
    }

    /// The admin listener: the same limits, but its refused heads are not counted or logged as
    /// proxy requests.
    pub fn admin(mut self) -> LimitedApp<A> {
        self.proxy = false;
        self
    }

    /// Behind a TLS listener whose handshakes `handshakes` bounds.
    pub fn with_handshakes(mut self, handshakes: Arc<Handshakes>) -> LimitedApp<A> {
        self.handshakes = Some(handshakes);
        self
    }
}

/// One open connection, counted until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for LimitedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = self.handshakes.as_ref().and_then(|h| h.completed(&stream));
        let started = accepted.map_or_else(Instant::now, tokio::time::Instant::into_std);
        let limits = self.gateway.active().policy.gateway.limits;
        let already_open = self.open.fetch_add(1, Ordering::AcqRel);
        let open = OpenConnection(self.open.clone());
        // All slots taken: the connection idle longest makes room, if there is one.
        if already_open >= limits.max_connections && !self.idle.shed_oldest() {
            self.gateway
                .metrics
                .connection_closed(ConnectionClosed::TooManyConnections);
            drop(open);
            return None;
        }
        // HTTP/2 multiplexes requests on one connection: heads are not read as bytes here, so
        // only the connection count and the per-request body deadline apply to it.
        let tracked = !matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let stream: Stream = Box::new(GuardedStream::new(
            stream,
            &limits,
            started,
            tracked,
            self.gateway.clone(),
            (self.proxy, self.idle.clone()),
        ));
        let result = self.inner.process_new(stream, shutdown).await;
        drop(open);
        result
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

fn guarded(session: &ServerSession) -> Option<&GuardedStream> {
    session.stream()?.as_any().downcast_ref::<GuardedStream>()
}

/// The request head has been read and parsed: the head deadline and size cap stop applying.
pub fn head_done(session: &ServerSession) {
    if let Some(stream) = guarded(session) {
        stream.head_done();
    }
}

/// The request was answered: the next bytes on this connection start a new head.
pub fn request_done(session: &ServerSession) {
    if let Some(stream) = guarded(session) {
        stream.request_done();
    }
}

/// When the body of a request whose body reading starts now must have arrived.
pub fn body_deadline(limits: &Limits) -> tokio::time::Instant {
    tokio::time::Instant::now() + limits.body_timeout
}

/// The refusal for a body that missed its deadline (408; the answer closes the connection, which
/// is counted as `body_timeout` when the refusal is counted).
pub fn body_timed_out(limits: &Limits) -> Refusal {
    Refusal::new(
        RefusalKind::RequestTimeout,
        format!(
            "the request body did not arrive within {} ms",
            limits.body_timeout.as_millis()
        ),
    )
}
