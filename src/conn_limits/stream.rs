/*!
[`GuardedStream`]: a client connection's bytes with the head limits applied to its reads.

A connection is in one of these phases:
- `HEAD`: a request head is being read. Reads fail once the head deadline passes or once
  `max_header_bytes` were read without the head being complete (each read is capped so the head
  buffer never grows past the limit). The caller gets a JSON 408 `request_timeout` or 431
  `header_too_large` and the connection closes; a connection that never sent a byte is closed
  silently (there is no request to answer).
- `REQUEST`: the head was parsed (the proxy called `head_done`); the body and the answer run
  under the request's own deadlines.
- `IDLE`: the request was answered; the next byte read starts the next head (and its deadline).
  Waiting here is pingora's keep-alive idle timeout, cut short when a new connection needs the
  slot (see `idle`).
- `CLOSED`: the gateway answered a refused head itself; further reads fail and further writes
  are dropped.
- `UNTRACKED`: HTTP/2, where the bytes are frames rather than heads.

Any answer pingora writes while a head is being read is its own bare answer to a head it
refused before any proxy phase ran (conflicting `content-length`s, `transfer-encoding` on
HTTP/1.0, a malformed request line): it is replaced by the gateway's JSON 400 `bad_request`,
or 431 `header_too_large` when the head had more header fields than pingora reads
([`MAX_HEADER_FIELDS`]; the head's lines are counted as it is read).
*/
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::policy::Limits;
use gateway_core::{Refusal, RefusalKind};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::idle::{IdleConnections, IdleSlot};
use crate::gateway::Gateway;
use crate::metrics::{ConnectionClosed, Series};

/// The most header fields pingora's HTTP/1 parser reads in one head.
const MAX_HEADER_FIELDS: usize = 256;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const REQUEST: u8 = 2;
const CLOSED: u8 = 3;
const UNTRACKED: u8 = 4;

/// A client connection under the head limits; see the module docs.
pub struct GuardedStream {
    inner: Stream,
    /// Atomic so the proxy can move it on through a shared reference to the session's stream.
    phase: AtomicU8,
    header_timeout: Duration,
    max_header_bytes: usize,
    /// Bytes read for the current head.
    head_bytes: usize,
    /// Lines of the current head read so far (its request line included), until its blank
    /// line; and the length of the line being read.
    head_lines: usize,
    line_len: usize,
    head_ended: bool,
    head_started: Instant,
    /// Fires at the current head's deadline.
    timer: Pin<Box<Sleep>>,
    /// The gateway's own answer, still to be written.
    pending: Vec<u8>,
    gateway: Arc<Gateway>,
    /// A proxy connection: its refused heads are counted as requests and refusals and logged
    /// (the admin listener's are not proxy traffic; their closes are counted all the same).
    proxy: bool,
    /// Where this connection waits, idle, between requests.
    idle: Arc<IdleSlot>,
    idle_connections: Arc<IdleConnections>,
}

impl GuardedStream {
    /// `started`: when the connection was accepted (the first head's deadline counts from it).
    pub fn new(
        inner: Stream,
        limits: &Limits,
        started: std::time::Instant,
        tracked: bool,
        gateway: Arc<Gateway>,
        (proxy, idle_connections): (bool, Arc<IdleConnections>),
    ) -> GuardedStream {
        let started = Instant::from_std(started);
        GuardedStream {
            inner,
            phase: AtomicU8::new(if tracked { HEAD } else { UNTRACKED }),
            header_timeout: limits.header_timeout,
            max_header_bytes: limits.max_header_bytes,
            head_bytes: 0,
            head_lines: 0,
            line_len: 0,
            head_ended: false,
            head_started: started,
            timer: Box::pin(tokio::time::sleep_until(started + limits.header_timeout)),
            pending: Vec::new(),
            gateway,
            proxy,
            idle: Arc::default(),
            idle_connections,
        }
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Moves from one of `from` to `to`; any other phase stays.
    fn advance(&self, from: &[u8], to: u8) {
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                from.contains(&p).then_some(to)
            });
    }

    pub(super) fn head_done(&self) {
        // IDLE too: a pipelined head may arrive whole with the previous request's bytes.
        self.advance(&[HEAD, IDLE], REQUEST);
        // Parsed already: served even if the slot was asked for meanwhile (the connection ends
        // after it).
        let _ = self.idle.leave();
    }

    pub(super) fn request_done(&self) {
        let answered =
            self.phase
                .compare_exchange(REQUEST, IDLE, Ordering::AcqRel, Ordering::Acquire);
        if answered.is_ok() {
            self.idle_connections.enter(&self.idle);
        }
    }

    fn start_head(&mut self) {
        self.phase.store(HEAD, Ordering::Release);
        self.head_bytes = 0;
        self.head_lines = 0;
        self.line_len = 0;
        self.head_ended = false;
        self.head_started = Instant::now();
        let deadline = self.head_started + self.header_timeout;
        self.timer.as_mut().reset(deadline);
    }

    fn poll_read_head(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let in_head = self.phase() == HEAD;
        if in_head {
            if self.head_bytes >= self.max_header_bytes {
                return Poll::Ready(Err(self.refuse_head(ConnectionClosed::HeaderTooLarge, cx)));
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(self.refuse_head(ConnectionClosed::HeaderTimeout, cx)));
            }
        }
        let allow = match in_head {
            true => self.max_header_bytes.saturating_sub(self.head_bytes),
            false => self.max_header_bytes,
        };
        let before = buf.filled().len();
        let n = match self.read_at_most(cx, buf, allow) {
            // Idle, and a new connection needs the slot: the end of the stream, as if the
            // caller had closed it.
            Poll::Pending if !in_head && self.idle.poll_shed(cx) => return Poll::Ready(Ok(())),
            read => ready!(read)?,
        };
        if n > 0 && !in_head {
            if !self.idle.leave() {
                // The slot was given away before these bytes came: the same end.
                buf.set_filled(before);
                return Poll::Ready(Ok(()));
            }
            self.start_head();
        }
        self.head_bytes += n;
        let filled = buf.filled();
        self.count_lines(&filled[filled.len() - n..]);
        Poll::Ready(Ok(()))
    }

    /// Counts the head's lines in `bytes`, just read, up to its blank line (a line of at most
    /// one byte, the `\r`).
    fn count_lines(&mut self, bytes: &[u8]) {
        let mut start = 0;
        while !self.head_ended {
            let Some(at) = bytes[start..].iter().position(|&b| b == b'\n') else {
                self.line_len += bytes.len() - start;
                return;
            };
            let blank = self.line_len + at <= 1;
            // Blank lines before the request line are skipped (as the parser does).
            if !blank || self.head_lines > 0 {
                self.head_lines += 1;
                self.head_ended = blank;
            }
            self.line_len = 0;
            start += at + 1;
        }
    }

    /// Reads at most `allow` bytes into `buf`, so a head never grows past the limit.
    fn read_at_most(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        allow: usize,
    ) -> Poll<io::Result<usize>> {
        let before = buf.filled().len();
        if buf.remaining() <= allow {
            ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
            return Poll::Ready(Ok(buf.filled().len() - before));
        }
        let mut bounce = [0u8; 4096];
        let len = allow.min(bounce.len());
        let mut small = ReadBuf::new(&mut bounce[..len]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut small))?;
        buf.put_slice(small.filled());
        Poll::Ready(Ok(small.filled().len()))
    }

    /// Ends the connection for a head that broke a limit: counts it, answers it (when the
    /// caller sent anything), and returns the error that makes pingora drop the connection.
    fn refuse_head(&mut self, reason: ConnectionClosed, cx: &mut Context<'_>) -> io::Error {
        self.phase.store(CLOSED, Ordering::Release);
        self.gateway.metrics.connection_closed(reason);
        let (kind, message) = match reason {
            ConnectionClosed::HeaderTooLarge => (
                RefusalKind::HeaderTooLarge,
                format!(
                    "the request head is over the limit of {} bytes",
                    self.max_header_bytes
                ),
            ),
            _ => (
                RefusalKind::RequestTimeout,
                format!(
                    "the request head did not arrive within {} ms",
                    self.header_timeout.as_millis()
                ),
            ),
        };
        if self.head_bytes > 0 || reason == ConnectionClosed::HeaderTooLarge {
            self.answer(&Refusal::new(kind, message.clone()));
            let _ = self.poll_pending(cx);
        }
        io::Error::new(io::ErrorKind::TimedOut, message)
    }

    /// Replaces pingora's bare answer to a head it refused (written while in `HEAD`).
    fn replace_pingora_answer(&mut self) {
        self.phase.store(CLOSED, Ordering::Release);
        // The request line and the blank line are no header fields.
        let fields = self
            .head_lines
            .saturating_sub(1 + usize::from(self.head_ended));
        let refusal = if fields > MAX_HEADER_FIELDS {
            let closed = ConnectionClosed::HeaderTooLarge;
            self.gateway.metrics.connection_closed(closed);
            Refusal::new(
                RefusalKind::HeaderTooLarge,
                format!("the request head has more than {MAX_HEADER_FIELDS} header fields"),
            )
        } else {
            Refusal::new(
                RefusalKind::BadRequest,
                "the request head or its framing is malformed (for example conflicting \
                 content-length values, or transfer-encoding on HTTP/1.0)",
            )
        };
        self.answer(&refusal);
    }

    /// Queues `refusal` as a complete HTTP/1.1 answer that closes the connection, and counts it.
    fn answer(&mut self, refusal: &Refusal) {
        if self.proxy {
            let metrics = &self.gateway.metrics;
            metrics.refused(Series::UNKNOWN, refusal.kind);
            let took = self.head_started.elapsed();
            metrics.request(Series::UNKNOWN, refusal.status(), took);
            crate::proxy::head_refused_access_line(refusal, self.head_started.into_std());
        }
        let body = refusal.to_json();
        let reason = http::StatusCode::from_u16(refusal.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        self.pending = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            refusal.status(),
            body.len()
        )
        .into_bytes();
        self.pending.extend_from_slice(&body);
    }

    /// Writes what is pending without ever waiting: a caller that does not read its answer
    /// does not get to hold the connection open for it.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.pending.drain(..n);
                }
                _ => self.pending.clear(),
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Ok(()))
    }

    /// Whether writes go to the connection as they are (else they are pingora's own answer to a
    /// refused head, or come after the gateway's answer, and are dropped).
    fn passes_writes(&mut self) -> bool {
        match self.phase() {
            HEAD => {
                self.replace_pingora_answer();
                false
            }
            CLOSED => false,
            _ => true,
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.phase() {
            HEAD | IDLE => this.poll_read_head(cx, buf),
            CLOSED => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the gateway refused this request head",
            ))),
            _ => Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.passes_writes() {
            let _ = this.poll_pending(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.passes_writes() {
            let _ = this.poll_pending(cx);
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let _ = this.poll_pending(cx);
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let _ = this.poll_pending(cx);
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        std::future::poll_fn(|cx| self.poll_pending(cx)).await.ok();
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase())
            .field("head_bytes", &self.head_bytes)
            .finish()
    }
}
