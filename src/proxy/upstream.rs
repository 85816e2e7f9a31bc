//! Talking to a partner: one connection per decided request (pooled for reuse), the filtered
//! body with its exact `content-length`, sent at most once, and the partner's answer read up to
//! its final header and what of its body came with it (the rest is relayed to the caller as it
//! arrives, see [`super::answer`]).
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use gateway_core::plan::{Outgoing, Target};
use gateway_core::{Refusal, RefusalKind};
use pingora::connectors::http::v1::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

use super::answer::Arrival;
use crate::gateway::Active;
use crate::metrics::UpstreamErrorKind;

/// Informational answers (`100`, `103`, ...) consumed before a partner's final answer; more is
/// a broken partner.
const MAX_INFORMATIONAL: usize = 16;
/// How much of an answer's body that has already arrived is gathered to go out with the
/// caller's header (more than one read's worth only when the partner sent several chunks at
/// once).
const START_LIMIT: usize = 64 * 1024;
/// How long the start of a body waits for more of it when nothing more has arrived, as long as
/// more keeps coming (at most [`START_WAIT`] in all): a partner's close (or the rest of a small
/// answer) is usually only a moment behind its bytes, and an answer it cut short is then a 502
/// instead of a 200 whose body breaks off. A partner that streams gets its first bytes to the
/// caller at most [`START_WAIT`] later.
const START_GRACE: Duration = Duration::from_millis(5);
const START_WAIT: Duration = Duration::from_millis(20);
/// Requests up to this size (head and body) go to a plain-TCP partner in one `send` (see
/// [`one_write`]); larger ones gain nothing from it and would be copied once more.
const ONE_WRITE: usize = 16 * 1024;

pub struct UpstreamClient {
    /// HTTP/1.1 only: partner peers never offer h2 by ALPN.
    connector: Connector,
}

/// Builds a partner request's head again (see [`UpstreamClient::exchange`]).
type HeaderBuilder<'a> = dyn Fn() -> Result<Box<RequestHeader>, UpstreamFailure> + Send + Sync + 'a;

/// A partner's final answer header, its body still to be relayed.
pub struct UpstreamAnswer {
    /// Holds the answer header (read, not copied: see [`UpstreamAnswer::header`]).
    pub(super) http: HttpSession,
    pub(super) peer: Box<HttpPeer>,
    pub(super) timeout: Option<std::time::Duration>,
    pub(super) start: AnswerStart,
}

/// The start of an answer's body: its first bytes and what had arrived with them (see
/// [`UpstreamAnswer::read_start`]), sent to the caller right behind the header. When it is the
/// whole body, header and body leave in one write, with the body's length.
#[derive(Default)]
pub(super) struct AnswerStart {
    body: Bytes,
    /// The body ends with these bytes.
    whole: bool,
}

impl UpstreamAnswer {
    /// The partner's final answer header (always read before an answer is made).
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.http.response_header()
    }

    /// The partner's status for the ledger: a missing header counts as a bad gateway.
    pub fn status(&self) -> u16 {
        self.header().map_or(502, |h| h.status.as_u16())
    }

    /// How much of the body came with the header.
    pub fn arrived(&self) -> Arrival {
        if self.start.whole {
            Arrival::Whole(self.start.body.len() as u64)
        } else {
            Arrival::Partial
        }
    }

    /// Reads the start of the body: waits for its first bytes (none for `204`, `304`, `HEAD` or
    /// an empty body), at most the partner timeout like every later read of the body, then
    /// takes what else arrives without a pause of [`START_GRACE`] (at most [`START_WAIT`]), up to [`START_LIMIT`]. A small
    /// answer usually arrives whole. A failure here is the partner's (502, or 504 past the
    /// timeout): nothing of the answer has reached the caller yet.
    pub(super) async fn read_start(&mut self, partner: &str) -> Result<(), UpstreamFailure> {
        let fail = |e: Box<Error>| UpstreamFailure::from_error(partner, &e);
        let http = &mut self.http;
        http.set_read_timeout(self.timeout);
        // A piece can be empty (a chunk-size line that came alone): wait on for bytes.
        let mut body = Bytes::new();
        while body.is_empty() && !http.response_done() {
            match http.read_response_body().await.map_err(fail)? {
                Some(piece) => body = piece,
                None => break,
            }
        }
        let deadline = tokio::time::Instant::now() + START_WAIT;
        let whole = loop {
            if http.response_done() {
                break true;
            }
            if body.len() >= START_LIMIT {
                break false;
            }
            // Polled, not awaited past the grace: pingora's body reads can be dropped
            // unfinished (its own proxy selects over them), so a read that would wait longer
            // is left for the relay.
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(START_GRACE);
            let read = match http.read_response_body().now_or_never() {
                Some(read) => read,
                None if wait.is_zero() => break false,
                None => match tokio::time::timeout(wait, http.read_response_body()).await {
                    Ok(read) => read,
                    Err(_) => break false,
                },
            };
            match read {
                Ok(None) => break true,
                Ok(Some(piece)) => body = joined(body, piece),
                Err(e) => return Err(fail(e)),
            }
        };
        self.start = AnswerStart { body, whole };
        Ok(())
    }
}

/// What the head of a partner request is built from.
pub(super) struct PartnerHead<'a> {
    pub method: &'a str,
    pub caller: &'a str,
    pub path_and_query: &'a str,
    /// The allowed caller headers.
    pub headers: &'a [(String, String)],
    pub legal_basis: Option<&'a str>,
    /// The whole body (sent with its `content-length`) and its `body_sha256`, or `None` for a
    /// stream (chunked).
    pub body: Option<(&'a [u8], &'a str)>,
    pub jti: &'a str,
}

pub struct UpstreamFailure {
    /// The `kind` label of `upstream_errors_total`.
    pub kind: UpstreamErrorKind,
    pub refusal: Refusal,
}

/// Why relaying an answer body stopped early.
pub enum RelayError {
    /// The partner broke off (the `kind` label of `upstream_errors_total`).
    Partner(UpstreamErrorKind),
    /// The caller went away.
    Caller,
}

/// A failed attempt, and whether any of the request reached the wire.
enum SendError {
    NothingWritten(Box<Error>),
    Written(Box<Error>),
}

impl SendError {
    /// `nothing` applied to a [`SendError::NothingWritten`].
    fn map_nothing(self, nothing: impl FnOnce(Box<Error>) -> SendError) -> SendError {
        match self {
            SendError::NothingWritten(e) => nothing(e),
            written => written,
        }
    }

    fn into_inner(self) -> Box<Error> {
        match self {
            SendError::NothingWritten(e) | SendError::Written(e) => e,
        }
    }
}

/// Reads answer headers until the final one: informational answers (`1xx` but `101`) are
/// consumed, not relayed; a `101` (nothing asked to switch protocols) and a status past `599`
/// (RFC 9110 defines none; it would be relayed as is and counted as neither success nor error)
/// are broken answers.
pub(super) async fn read_final_header(http: &mut HttpSession) -> Result<()> {
    for _ in 0..=MAX_INFORMATIONAL {
        http.read_response_header().await?;
        let status = http
            .response_header()
            .map(|h| h.status.as_u16())
            .ok_or_else(|| Error::new(ErrorType::InvalidHTTPHeader))?;
        match status {
            101 => {
                return Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    "the partner switched protocols unasked (101)",
                )
            }
            100..=199 => continue,
            200..=599 => return Ok(()),
            _ => {
                return Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    "the partner answered with a status outside 100-599",
                )
            }
        }
    }
    Error::e_explain(
        ErrorType::InvalidHTTPHeader,
        "the partner sent too many informational answers",
    )
}

/// `a` then `b`, copied only when both hold bytes (a partner that sent several chunks at once).
fn joined(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut both = BytesMut::with_capacity(a.len() + b.len());
    both.extend_from_slice(&a);
    both.extend_from_slice(&b);
    both.freeze()
}

/// Runs the exchange `start` makes for at most `timeout`: past it, the partner's timeout (504).
/// The exchange's future is made here, as the timer is set, and all of its work runs inside
/// the timer (`start` must only make the future, not do work): a future passed in made is held
/// once as the argument and again inside the timer, and the exchange's is the largest state of
/// the request (a few KiB, copied on every move).
pub(super) async fn within<T, F>(
    timeout: std::time::Duration,
    partner: &str,
    start: impl FnOnce() -> F,
) -> Result<T, UpstreamFailure>
where
    F: std::future::Future<Output = Result<T, UpstreamFailure>>,
{
    match tokio::time::timeout(timeout, start()).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamFailure {
            kind: UpstreamErrorKind::Timeout,
            refusal: Refusal::new(
                RefusalKind::UpstreamTimeout,
                format!(
                    "partner {partner:?} did not answer within {} ms",
                    timeout.as_millis()
                ),
            ),
        }),
    }
}

impl UpstreamFailure {
    pub(super) fn from_error(partner: &str, e: &Error) -> UpstreamFailure {
        match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout => UpstreamFailure {
                kind: UpstreamErrorKind::Timeout,
                refusal: Refusal::new(
                    RefusalKind::UpstreamTimeout,
                    format!("partner {partner:?} did not answer in time"),
                ),
            },
            // The partner's certificate did not verify (wrong CA, wrong name, expired) or the
            // handshake failed otherwise: nothing of the request was sent.
            // Under TLS 1.3 a partner refuses the gateway's client certificate only after the
            // gateway took the handshake for done: its alert breaks the first write or read.
            // That is a TLS failure too (the partner decrypted nothing of the request).
            etype
                if matches!(etype, ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert)
                    || broke_on_tls(e) =>
            {
                UpstreamFailure {
                kind: UpstreamErrorKind::Tls,
                refusal: Refusal::new(RefusalKind::UpstreamError, format!(
                    "partner {partner:?}: TLS handshake failed (its certificate did not verify, or it refused ours)"
                )),
                }
            }
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError => UpstreamFailure {
                kind: UpstreamErrorKind::Connect,
                refusal: Refusal::new(
                    RefusalKind::UpstreamError,
                    format!("partner {partner:?} is unreachable: {}", e.etype().as_str()),
                ),
            },
            _ => UpstreamFailure {
                kind: UpstreamErrorKind::Protocol,
                refusal: Refusal::new(
                    RefusalKind::UpstreamError,
                    format!("partner {partner:?} failed: {}", broken_exchange(e.etype())),
                ),
            },
        }
    }
}

/// Whether the exchange broke on a TLS error (an alert the partner sent, a record that did not
/// decrypt) rather than on the connection or HTTP.
fn broke_on_tls(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if c.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// What went wrong with an exchange the partner broke, in words (only the error's type: its
/// context may quote what the partner sent).
fn broken_exchange(etype: &ErrorType) -> String {
    match etype {
        ErrorType::WriteError => "the connection broke while the request was being sent".into(),
        ErrorType::ReadError => "the connection broke before a whole answer arrived".into(),
        ErrorType::ConnectionClosed => "it closed the connection".into(),
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error => {
            "its answer is not valid HTTP/1.1".into()
        }
        other => other.as_str().to_string(),
    }
}

impl UpstreamClient {
    pub fn new() -> UpstreamClient {
        UpstreamClient {
            connector: Connector::new(None),
        }
    }

    pub async fn send(
        &self,
        active: &Active,
        target: &Target,
        method: &str,
        caller: &str,
        outgoing: Outgoing,
        (jti, sent): (&str, &AtomicBool),
    ) -> Result<UpstreamAnswer, UpstreamFailure> {
        let partner = &target.partner;
        let timeout = active.policy.gateway.limits.upstream_timeout;
        // Only a signed token binds the body's digest (without a signer none is read), and it
        // is hashed once: a ledger record took the same one already.
        let body_sha256 = match active.signer() {
            Some(_) => outgoing.body_sha256().to_string(),
            None => String::new(),
        };
        let body = Bytes::from(outgoing.body);

        let head = PartnerHead {
            method,
            caller,
            path_and_query: &outgoing.path_and_query,
            headers: &outgoing.headers,
            legal_basis: outgoing.legal_basis.as_deref(),
            body: Some((&body, &body_sha256)),
            jti,
        };
        // Built again (never cloned) for the one retry a closed pooled connection allows.
        let build = || {
            request_header(active, target, &head).map_err(|refusal| UpstreamFailure {
                kind: UpstreamErrorKind::Protocol,
                refusal,
            })
        };
        let header = build()?;
        let (build, body) = (&build, &body);
        let mut answer = within(timeout, &partner.id, move || async move {
            let peer = peer(active, target).await?;
            self.exchange(peer, (header, build), (body.clone(), sent), &partner.id)
                .await
        })
        .await?;
        answer.read_start(&partner.id).await?;
        Ok(answer)
    }

    /// Connects, sends, and reads the partner's final answer header (informational `1xx`
    /// answers are consumed); the body is left for [`UpstreamClient::relay`].
    async fn exchange(
        &self,
        peer: Box<HttpPeer>,
        (header, rebuild): (Box<RequestHeader>, &HeaderBuilder<'_>),
        (body, sent): (Bytes, &AtomicBool),
        partner: &str,
    ) -> Result<UpstreamAnswer, UpstreamFailure> {
        let fail = |e: Box<Error>| UpstreamFailure::from_error(partner, &e);
        let timeout = peer.options.read_timeout;
        // A pooled connection the partner closed while idle may fail before any byte of the
        // request left: only then is one fresh attempt safe. Once the request head was written
        // the partner may have acted on it, so it is never sent again (at most once).
        let http = match self.send_once(&peer, header, (&body, sent)).await {
            Err(SendError::NothingWritten(e)) if e.retry() => {
                // Only the error's type: its context may quote what the partner sent.
                log::debug!(
                    "partner {partner:?}: reused connection failed before the request was written ({}), retrying on a new one",
                    e.etype().as_str()
                );
                self.send_once(&peer, rebuild()?, (&body, sent))
                    .await
                    .map_err(|e| fail(e.into_inner()))?
            }
            result => result.map_err(|e| fail(e.into_inner()))?,
        };
        if http.response_header().is_none() {
            return Err(fail(Error::new(ErrorType::InvalidHTTPHeader)));
        }
        Ok(UpstreamAnswer {
            http,
            peer,
            timeout,
            start: AnswerStart::default(),
        })
    }

    /// Relays the partner's answer body to the caller: its start, then the rest as it arrives.
    /// The caller's header must have been written already (pingora holds a header with a
    /// `content-length` back until the body is written, so a whole small answer leaves in one
    /// write). Returns `Err(kind)` when the partner broke off mid-body: the caller's connection
    /// must then be closed without finishing the body.
    pub async fn relay(
        &self,
        answer: UpstreamAnswer,
        session: &mut Session,
    ) -> Result<(), RelayError> {
        let UpstreamAnswer {
            mut http,
            peer,
            timeout,
            start,
        } = answer;
        let start_body = Some(start.body).filter(|b| !b.is_empty());
        if start.whole {
            self.release(http, &peer, timeout).await;
            return session
                .write_response_body(start_body, true)
                .await
                .map_err(|_| RelayError::Caller);
        }
        if let Some(body) = start_body {
            session
                .write_response_body(Some(body), false)
                .await
                .map_err(|_| RelayError::Caller)?;
        }
        // Each read of the answer's body waits at most the partner timeout.
        http.set_read_timeout(timeout);
        loop {
            match http.read_response_body().await {
                Ok(Some(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if session
                        .write_response_body(Some(chunk), false)
                        .await
                        .is_err()
                    {
                        return Err(RelayError::Caller);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(RelayError::Partner(
                        UpstreamFailure::from_error("", &e).kind,
                    ))
                }
            }
        }
        self.release(http, &peer, timeout).await;
        session
            .write_response_body(None, true)
            .await
            .map_err(|_| RelayError::Caller)
    }

    /// Gives a connection whose answer was read to the end back to the pool.
    async fn release(
        &self,
        mut http: HttpSession,
        peer: &HttpPeer,
        timeout: Option<std::time::Duration>,
    ) {
        if let (true, HttpSession::H1(http)) = (http.response_done(), http) {
            self.connector
                .release_http_session(http, peer, timeout)
                .await;
        }
    }

    /// Sends the request on a (possibly pooled) connection and reads the final answer's
    /// header. Errors say whether any of the request was written (and, when not, whether the
    /// connection was a reused one: only that is retryable).
    async fn send_once(
        &self,
        peer: &HttpPeer,
        header: Box<RequestHeader>,
        (body, sent): (&Bytes, &AtomicBool),
    ) -> Result<HttpSession, SendError> {
        let (mut http, reused) = self.session(peer).await.map_err(|mut e| {
            e.retry.decide_reuse(false); // a new connection that failed: nothing to retry
            SendError::NothingWritten(e)
        })?;
        // No timer per read and write: `send` bounds the whole exchange with one timeout.
        http.set_read_timeout(None);
        http.set_write_timeout(None);
        let nothing_written = |mut e: Box<Error>| {
            // Nothing of the request reached a partner that had closed this idle connection.
            e.retry = reused.into();
            SendError::NothingWritten(e)
        };
        let (mut http, whole) = match one_write(peer, &header, body) {
            Some(wire) => send_whole(http, peer, &wire, sent)
                .await
                .map_err(|e| e.map_nothing(nothing_written))?,
            None => (http, false),
        };
        if !whole {
            if let Err(e) = http.write_request_header(header).await {
                return Err(nothing_written(e));
            }
        }
        // From here the partner may have the request (`bytes_out` counts its body).
        sent.store(true, Ordering::Relaxed);
        let result = async {
            if !whole {
                if !body.is_empty() {
                    http.write_request_body(body.clone(), true).await?;
                }
                http.finish_request_body().await?;
            }
            read_final_header(&mut http).await
        }
        .await;
        match result {
            Ok(()) => Ok(http),
            Err(mut e) => {
                e.retry.decide_reuse(false);
                Err(SendError::Written(e))
            }
        }
    }

    /// A pooled connection to `peer` (`true`), else a new one. Connecting (TCP, TLS) is a
    /// large future that pooled requests never need: it is boxed, so that it does not grow
    /// the state every request allocates and copies.
    async fn session(&self, peer: &HttpPeer) -> Result<(HttpSession, bool)> {
        if let Some(http) = self.connector.reused_http_session(peer).await {
            return Ok((HttpSession::H1(http), true));
        }
        let (http, reused) = Box::pin(self.connector.get_http_session(peer)).await?;
        Ok((HttpSession::H1(http), reused))
    }

    /// Opens a (possibly pooled) connection for a streamed request and writes its head. A
    /// pooled connection that fails before the head is written is replaced once by a new one
    /// (nothing of the request left); after that, the request is never sent again.
    pub(super) async fn open_stream(
        &self,
        peer: &HttpPeer,
        header: &RequestHeader,
        partner: &str,
    ) -> Result<HttpSession, UpstreamFailure> {
        let timeout = peer.options.read_timeout;
        let mut retried = false;
        loop {
            let fail = |e: Box<Error>| UpstreamFailure::from_error(partner, &e);
            let (mut http, reused) = self.session(peer).await.map_err(fail)?;
            http.set_read_timeout(timeout);
            http.set_write_timeout(timeout);
            match http.write_request_header(Box::new(header.clone())).await {
                Ok(()) => return Ok(http),
                Err(_) if reused && !retried => retried = true,
                Err(e) => return Err(fail(e)),
            }
        }
    }
}

/// The wire bytes of a small request (head and body, at most [`ONE_WRITE`]) to a partner over
/// plain TCP, to be sent in one `send` (see [`send_whole`]). `None` for larger bodies, TLS
/// partners (the bytes go through rustls, whose writes cannot say how much reached the socket),
/// `HEAD` (whose answer pingora reads as bodiless only when it wrote the head itself) and heads
/// pingora would refuse to write (they fail there, as before).
fn one_write(peer: &HttpPeer, header: &RequestHeader, body: &Bytes) -> Option<Bytes> {
    if peer.is_tls() || header.method == http::Method::HEAD || body.len() > ONE_WRITE {
        return None;
    }
    let mut wire = pingora::protocols::http::v1::client::http_req_header_to_wire(header)?;
    if wire.len() + body.len() > ONE_WRITE {
        return None;
    }
    wire.extend_from_slice(body);
    Some(wire.freeze())
}

/// Sends a whole small request (see [`one_write`]) with one `send` on the socket of `http`, past
/// pingora's write buffer (empty between requests: pingora flushes every write it makes). The
/// kernel says exactly how much it took: all of it (the usual case), part of it (the rest
/// follows through pingora's stream) or, on an error, nothing. `sent` is set as soon as any
/// byte left. Returns the session to read the answer on and whether the request was written;
/// when the socket could take nothing right now, it was not, and pingora writes it as usual.
async fn send_whole(
    http: HttpSession,
    peer: &HttpPeer,
    wire: &[u8],
    sent: &AtomicBool,
) -> Result<(HttpSession, bool), SendError> {
    use nix::errno::Errno;
    use nix::sys::socket::{send, MsgFlags};
    use pingora::protocols::l4::stream::Stream as TcpStream;
    use std::os::fd::AsRawFd as _;
    use tokio::io::AsyncWriteExt as _;
    let HttpSession::H1(h1) = http else {
        return Ok((http, false));
    };
    // Plain TCP only: any other stream (TLS) has bytes of its own to add.
    let Some(tcp) = h1.stream().as_any().downcast_ref::<TcpStream>() else {
        return Ok((HttpSession::H1(h1), false));
    };
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let taken = match send(tcp.as_raw_fd(), wire, flags) {
        Ok(taken) if taken > 0 => taken,
        Ok(_) | Err(Errno::EAGAIN | Errno::EINTR) => return Ok((HttpSession::H1(h1), false)),
        Err(errno) => {
            let e = Error::because(ErrorType::WriteError, "while writing the request", errno);
            return Err(SendError::NothingWritten(e));
        }
    };
    sent.store(true, Ordering::Relaxed);
    let mut stream = h1.into_inner();
    if taken < wire.len() {
        let rest = async {
            stream.write_all(&wire[taken..]).await?;
            stream.flush().await
        };
        if let Err(e) = rest.await {
            let e = Error::because(ErrorType::WriteError, "while writing the request", e);
            return Err(SendError::Written(e));
        }
    }
    let http = pingora::protocols::http::v1::client::HttpSession::new_with_options(stream, peer);
    Ok((HttpSession::H1(http), true))
}

/// The partner's address (resolved here, asynchronously: pingora's `HttpPeer::new` would block
/// on DNS and panic when a name does not resolve), TLS settings and timeouts.
pub(super) async fn peer(
    active: &Active,
    target: &Target,
) -> Result<Box<HttpPeer>, UpstreamFailure> {
    let partner = &target.partner;
    let upstream = &partner.upstream;
    let timeout = active.policy.gateway.limits.upstream_timeout;
    let unreachable = |why: String| UpstreamFailure {
        kind: UpstreamErrorKind::Connect,
        refusal: Refusal::new(
            RefusalKind::UpstreamError,
            format!("partner {:?} is unreachable: {why}", partner.id),
        ),
    };
    let address = match upstream.host.parse::<std::net::IpAddr>() {
        // An address needs no resolver (nor the authority string it would parse).
        Ok(ip) => std::net::SocketAddr::new(ip, upstream.port),
        Err(_) => tokio::net::lookup_host(upstream.authority())
            .await
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", upstream.host)))?
            .next()
            .ok_or_else(|| unreachable(format!("{} has no address", upstream.host)))?,
    };
    // SNI and the name verified: never empty (pingora skips verification for an empty
    // SNI); an IP address is verified against the certificate's IP SANs.
    let mut peer = Box::new(HttpPeer::new(
        address,
        upstream.tls,
        partner.server_name().to_string(),
    ));
    if upstream.tls {
        let Some(tls) = active.tls.partners.get(&partner.id) else {
            return Err(UpstreamFailure {
                kind: UpstreamErrorKind::Tls,
                refusal: Refusal::new(
                    RefusalKind::UpstreamError,
                    format!("partner {:?}: no TLS settings loaded", partner.id),
                ),
            });
        };
        tls.apply(&mut peer);
    }
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    Ok(peer)
}

/// The request line and headers the partner receives: the allowed caller headers, then the
/// gateway's own (added last, so nothing the caller sent can remove or shadow them), and the
/// framing: the body's exact `content-length`, or `transfer-encoding: chunked` for a stream.
pub(super) fn request_header(
    active: &Active,
    target: &Target,
    head: &PartnerHead<'_>,
) -> Result<Box<RequestHeader>, Refusal> {
    let internal = |e: Box<Error>| {
        Refusal::new(
            RefusalKind::UpstreamError,
            format!("cannot build the partner request: {e}"),
        )
    };
    let mut header = Box::new(
        RequestHeader::build(head.method, head.path_and_query.as_bytes(), None)
            .map_err(internal)?,
    );
    header
        .insert_header("host", target.partner.upstream.authority())
        .map_err(internal)?;
    for (name, value) in head.headers {
        header
            .append_header(name.clone(), value.clone())
            .map_err(internal)?;
    }
    let tags = match head.body {
        Some((_, body_sha256)) => {
            active.data_use_headers(target, head.caller, body_sha256, head.legal_basis, head.jti)
        }
        None => active.stream_data_use_headers(target, head.caller, head.legal_basis, head.jti),
    };
    for (name, value) in tags? {
        header.insert_header(name, value).map_err(internal)?;
    }
    if let Some(auth) = &target.partner.upstream_auth {
        header
            .insert_header(auth.header.clone(), auth.value.clone())
            .map_err(internal)?;
    }
    match head.body {
        Some((body, _)) => header.insert_header("content-length", body.len().to_string()),
        None => header.insert_header("transfer-encoding", "chunked"),
    }
    .map_err(internal)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partner's TLS alert after the handshake reaches us as an I/O error wrapping the
    /// rustls error: it is a TLS failure, not a protocol one.
    #[test]
    fn an_alert_after_the_handshake_is_a_tls_failure() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        for etype in [ErrorType::ReadError, ErrorType::WriteError] {
            let e = Error::because(etype, "reading the answer", std::io::Error::from(io.kind()));
            assert_eq!(
                UpstreamFailure::from_error("p", &e).kind,
                UpstreamErrorKind::Protocol
            );
        }
        let e = Error::because(ErrorType::ReadError, "reading the answer", io);
        assert_eq!(
            UpstreamFailure::from_error("p", &e).kind,
            UpstreamErrorKind::Tls
        );
    }
}
