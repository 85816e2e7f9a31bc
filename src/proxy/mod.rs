/*!
The pingora shell around the core. One phase does all the deciding: `request_filter` resolves
the target, authenticates the caller, reads the whole body (up to the limit), asks the core for
exactly what the partner may receive, and only then connects to the partner and sends it
(see [`upstream`]). A refusal is answered from here and opens no connection. `logging` counts.
Streaming routes decide their head the same way, then stream the body line by line
(see [`stream`]).

Why not pingora's own upstream phases: they send the request headers before
`request_body_filter` sees the body, so a body that fails the filter would already have a
connection and headers at the partner, and the data-use token's body digest could not be known.
*/
mod answer;
mod ctx;
mod disclose;
mod stream;
mod upstream;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use gateway_core::headers::RECORDS_DROPPED;
use gateway_core::plan::{self, Incoming};
use gateway_core::{Refusal, RefusalKind};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

pub use ctx::RequestCtx;

use crate::gateway::{optouts_view, Active, Gateway};
use crate::metrics::UpstreamErrorKind;
use crate::shadow::{self, Shadow};
use upstream::{RelayError, UpstreamAnswer, UpstreamClient};

/// Longest wait for the next request on a kept-alive connection, in seconds.
const KEEPALIVE_IDLE_S: u64 = 60;

pub struct PartnerProxy {
    gateway: Arc<Gateway>,
    upstream: UpstreamClient,
}

/// What `handle` reads from a request's head for the steps after admission.
struct HeadParts {
    method: String,
    raw_path: String,
    query: Option<String>,
    peer: Option<crate::tls::PeerIdentity>,
}

impl HeadParts {
    /// The head as the shadow policy gets it, with the caller's headers copied.
    fn shadow(self, headers: &[(&str, &str)]) -> ShadowHead {
        ShadowHead {
            method: self.method,
            raw_path: self.raw_path,
            query: self.query,
            headers: owned_headers(headers),
            peer: self.peer,
        }
    }
}

/// What a request's head tells the shadow policy (moved there after the real decision).
struct ShadowHead {
    method: String,
    raw_path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    peer: Option<crate::tls::PeerIdentity>,
}

impl PartnerProxy {
    pub fn new(gateway: Arc<Gateway>) -> PartnerProxy {
        PartnerProxy {
            gateway,
            upstream: UpstreamClient::new(),
        }
    }

    /// Decides and, if allowed, forwards. Every `Err` is a refusal still to be answered.
    async fn handle(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(ResponseHeader, UpstreamAnswer), Refusal> {
        let active = self.gateway.active();
        let req = session.req_header();
        ctx.method = ctx::method_label(&req.method);
        if self.gateway.drain.draining() {
            // Counted on the partner and route asked for, like any refusal.
            let _ = target_labelled(ctx, &active, (req.method.as_str(), req.uri.path()));
            return Err(Refusal::new(
                RefusalKind::NotReady,
                "the gateway is shutting down: send the request to another replica",
            ));
        }
        absolute_form(req)?;
        let head = HeadParts {
            method: req.method.as_str().to_string(),
            raw_path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            peer: crate::tls::peer_identity(session.as_downstream().digest()),
        };
        let held = hold_headers(req);
        let headers = request_headers(&held);

        let path = (head.method.as_str(), head.raw_path.as_str());
        let admitted = self.admit(session, ctx, &active, path, &headers, &head.peer);
        let (target, caller) = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => {
                if let (Some(_), Ok(headers)) = (&active.shadow, &headers) {
                    // The shadow policy decides the head too; the body was never read.
                    let body = (None, body_announced(session.req_header()));
                    let optouts = (self.gateway.optout_source(), None);
                    self.shadow(&active, ctx, head.shadow(headers), body, optouts);
                }
                return Err(refusal);
            }
        };
        let headers = headers?;
        let answer = if target.route().stream.is_some() {
            // A shadow policy decides the stream's first lines (its body is never held whole).
            let request = stream::StreamRequest {
                active: &active,
                target: &target,
                caller: &caller,
                method: &head.method,
                raw_path: &head.raw_path,
                query: head.query.as_deref(),
                headers: &headers,
                peer: &head.peer,
            };
            self.stream(session, ctx, request).await?
        } else {
            let admitted = (&active, &target, caller.as_str());
            self.buffered(session, ctx, admitted, head, &headers)
                .await?
        };
        self.caller_answer(session, ctx, &target, answer)
    }

    /// A route that is not streamed: reads the whole body, decides it, hands it to the shadow
    /// policy (when one is configured) and forwards what the decision allows.
    async fn buffered(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        (active, target, caller): (&Arc<Active>, &plan::Target, &str),
        head: HeadParts,
        headers: &[(&str, &str)],
    ) -> Result<UpstreamAnswer, Refusal> {
        let limits = &active.policy.gateway.limits;
        let announced = announced_length(session, limits.max_body_bytes)?;
        if expects_continue(session, headers) {
            let _ = session.as_downstream_mut().write_continue_response().await;
        }
        let body = read_body(session, limits, announced, ctx).await?;

        let optout_source = self.gateway.optout_source();
        let incoming = Incoming {
            query: head.query.as_deref(),
            headers,
            body: &body,
        };
        let shadowed = active.shadow.is_some();
        let collect = plan::Collect {
            detail: false,
            forwarded: shadowed,
            // The ledger records them; a shadow decision tells records apart by them.
            subjects: shadowed || self.gateway.ledger().is_some(),
        };
        let mut outcome = decide(ctx, target, limits, &incoming, (&optout_source, collect));
        let method = if collect.forwarded {
            // After the real decision and off its path: the body moves, it is not copied, and
            // the decision goes along so the shadow thread need not make it again. Only then is
            // the method copied (the request still needs it).
            let method = head.method.clone();
            let live = shadow::Live::take(target, &mut outcome);
            let body = (Some(body), true);
            let optouts = (optout_source, Some(live));
            self.shadow(active, ctx, head.shadow(headers), body, optouts);
            method
        } else {
            head.method
        };
        let outgoing = outcome?;
        self.forward(ctx, active, target, (caller, &method), outgoing)
            .await
    }

    /// Hands the request to the shadow policy (when one is configured), after the real
    /// decision: `body` is `None` when the head alone was refused and the body never read;
    /// `live` is that decision when the body was read.
    fn shadow(
        &self,
        active: &Arc<Active>,
        ctx: &RequestCtx,
        head: ShadowHead,
        (body, body_announced): (Option<Vec<u8>>, bool),
        (optouts, live): (
            Option<Arc<dyn gateway_core::optout::OptOutSource>>,
            Option<shadow::Live>,
        ),
    ) {
        if active.shadow.is_none() {
            return;
        }
        let job = shadow::Job {
            active: active.clone(),
            method: head.method,
            method_label: ctx.method,
            raw_path: head.raw_path,
            query: head.query,
            headers: head.headers,
            peer: head.peer,
            body,
            body_announced,
            optouts,
            live,
            generation: 0,
        };
        Shadow::submit(&self.gateway, job);
    }

    /// Sends an allowed request: the ledger record first (no forwarding without a record),
    /// then the partner, then the record's outcome.
    async fn forward(
        &self,
        ctx: &mut RequestCtx,
        active: &Active,
        target: &plan::Target,
        (caller, method): (&str, &str),
        mut outgoing: plan::Outgoing,
    ) -> Result<UpstreamAnswer, Refusal> {
        let jti = crate::gateway::new_jti();
        let request = (ctx.request_id.as_str(), caller, method);
        let seq = disclose::record(&self.gateway, active, target, request, &outgoing, &jti);
        // Moved, not copied: the partner's request needs the body, not the report.
        ctx.report = Some(std::mem::take(&mut outgoing.report));
        let seq = seq?;
        // Until `send` says otherwise the partner may have it (a request dropped mid-send).
        ctx.disclosed = true;

        let body_len = outgoing.body.len() as u64;
        let upstream_started = Instant::now();
        // Set once the request's head is written: a partner that could not be reached, whose
        // TLS handshake failed or that did not connect in time got no byte of the body.
        let sent = std::sync::atomic::AtomicBool::new(false);
        let answer = self
            .upstream
            .send(active, target, method, caller, outgoing, (&jti, &sent))
            .await;
        ctx.upstream_time = Some(upstream_started.elapsed());
        let sent = answer.is_ok() || sent.load(std::sync::atomic::Ordering::Relaxed);
        ctx.bytes_out = if sent { body_len } else { 0 };
        ctx.disclosed = sent;
        let status = match &answer {
            Ok(answer) => answer.status(),
            Err(failure) => failure.refusal.status(),
        };
        disclose::outcome(&self.gateway, active, seq, status);
        answer.map_err(|failure| {
            ctx.upstream_error = Some(failure.kind);
            failure.refusal
        })
    }

    /// The header the caller gets for the partner's answer (its body is relayed later).
    fn caller_answer(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        target: &plan::Target,
        answer: UpstreamAnswer,
    ) -> Result<(ResponseHeader, UpstreamAnswer), Refusal> {
        let caller_http10 = session.req_header().version == http::Version::HTTP_10;
        let credential = target
            .partner
            .upstream_auth
            .as_ref()
            .map(|a| a.secret.as_str());
        let unrelayable = |ctx: &mut RequestCtx, why: String| {
            ctx.upstream_error = Some(UpstreamErrorKind::Protocol);
            Refusal::new(
                RefusalKind::UpstreamError,
                format!("the partner's answer cannot be relayed: {why}"),
            )
        };
        let Some(partner_header) = answer.header() else {
            return Err(unrelayable(ctx, "no answer header".into()));
        };
        let mut header = answer::caller_header(
            partner_header,
            &target.route().response_headers,
            credential,
            answer::framing(partner_header, caller_http10, answer.arrived()),
        )
        .map_err(|e| unrelayable(ctx, e.to_string()))?;
        if let Some(dropped) = ctx
            .report
            .as_ref()
            .map(|r| r.records_dropped)
            .filter(|n| *n > 0)
        {
            // Tells the caller why the partner saw fewer records than it sent.
            let _ = header.insert_header(RECORDS_DROPPED, dropped.to_string());
        }
        Ok((header, answer))
    }

    /// What the head alone decides, before the body is asked for: the target, the caller
    /// (authenticated and allowed to use the partner) and the head checks.
    fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        active: &Active,
        (method, raw_path): (&str, &str),
        headers: &Result<Vec<(&str, &str)>, Refusal>,
        peer: &Option<crate::tls::PeerIdentity>,
    ) -> Result<(plan::Target, String), Refusal> {
        let target = target_labelled(ctx, active, (method, raw_path))?;
        let headers = headers.as_ref().map_err(Clone::clone)?;

        let caller = active
            .authenticate(&target.partner, headers, peer.as_ref())
            .map_err(|(refusal, challenge)| {
                ctx.www_authenticate = challenge;
                refusal
            })?;
        // Chunked framing may carry no byte at all (`0\r\n\r\n`): on a route that takes no body
        // it is judged once read, like any request without body bytes.
        let req = session.req_header();
        let announced = match target.route().filter {
            Some(_) => body_announced(req),
            None => length_announced(req),
        };
        plan::check_head(&target, headers, announced)?;
        Ok((target, caller))
    }

    /// Relays the partner's answer to the caller as it arrives. `Err` when the answer broke
    /// off after its header went out: the caller's connection must be closed unfinished.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        header: ResponseHeader,
        answer: UpstreamAnswer,
    ) -> Result<()> {
        ctx.status = header.status.as_u16();
        let caller_http10 = session.req_header().version == http::Version::HTTP_10;
        if answer.header().is_some_and(|h| {
            answer::framing(h, caller_http10, answer.arrived()) == answer::Framing::Close
        }) {
            session.set_keepalive(None); // close-delimited toward an HTTP/1.0 caller
        }
        // Counted before the answer goes out, so a caller that reads /metrics right after its
        // answer sees it; a partner breaking off later is counted on its own below.
        self.record(ctx);
        if session
            .write_response_header(Box::new(header), false)
            .await
            .is_err()
        {
            return Error::e_explain(WriteError, "the caller went away");
        }
        match self.upstream.relay(answer, session).await {
            Ok(()) => Ok(()),
            Err(RelayError::Partner(kind)) => {
                ctx.upstream_error = Some(kind);
                self.gateway.metrics.upstream_error(ctx.series(), kind);
                Error::e_explain(ReadError, "the partner broke off its answer")
            }
            Err(RelayError::Caller) => Error::e_explain(WriteError, "the caller went away"),
        }
    }

    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, refusal: &Refusal) {
        ctx.status = refusal.status();
        ctx.refused = Some(refusal.kind);
        self.record(ctx);
        let body = refusal.to_json();
        let mut resp = match ResponseHeader::build(refusal.status(), Some(4)) {
            Ok(resp) => resp,
            Err(_) => return,
        };
        let _ = resp.insert_header("content-type", "application/json");
        let _ = resp.insert_header("content-length", body.len().to_string());
        if let Refusal {
            kind: RefusalKind::Unauthenticated,
            ..
        } = refusal
        {
            let challenge = ctx.www_authenticate.take();
            let challenge = challenge
                .as_deref()
                .unwrap_or(gateway_core::callers::BEARER_CHALLENGE);
            let _ = resp.insert_header("www-authenticate", challenge);
        }
        if refusal.kind == RefusalKind::MethodNotAllowed {
            // RFC 9110: a 405 lists the methods the target takes (empty when it takes none).
            let allow = ctx.allowed_methods(session.req_header().uri.path());
            let _ = resp.insert_header("allow", allow);
        }
        // An answer to HEAD has no body (HTTP/1 drops it itself, HTTP/2 would send it).
        let body = if session.req_header().method == http::Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        // write_error_response also turns keep-alive off: an unread request body must not be
        // taken for the next request on this connection.
        let _ = session
            .as_downstream_mut()
            .write_error_response(resp, body)
            .await;
        drain_h2_body(session).await;
    }
}

/// Most of an unread HTTP/2 request body read (and thrown away) after a refusal, and for how
/// long at most.
const H2_DRAIN_BYTES: usize = 1 << 20;
const H2_DRAIN_TIME: std::time::Duration = std::time::Duration::from_millis(200);

/// After a refusal on HTTP/2, reads what is left of the request body for a moment before the
/// stream is dropped: an unread body makes the stream end with `RST_STREAM(NO_ERROR)`, which
/// the protocol allows after a complete answer but which some clients (curl 7.x) take for a
/// failed request and then drop the refusal they already received. Nothing read here goes
/// anywhere; HTTP/1.1 closes the connection instead.
async fn drain_h2_body(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    if !downstream.is_http2() || downstream.is_body_done() {
        return;
    }
    let drain = async {
        let mut read = 0;
        while read < H2_DRAIN_BYTES {
            match downstream.read_request_body().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(H2_DRAIN_TIME, drain).await;
}

/// The real decision on the whole request ([`plan::plan_noting`]), timed as filtering. With a
/// shadow policy the filter also notes what it forwards, for the shadow thread to compare;
/// with a ledger, whose records it forwards. The outcome is the same.
fn decide(
    ctx: &mut RequestCtx,
    target: &plan::Target,
    limits: &gateway_core::policy::Limits,
    incoming: &Incoming<'_>,
    (optouts, collect): (
        &Option<Arc<dyn gateway_core::optout::OptOutSource>>,
        plan::Collect,
    ),
) -> Result<plan::Outgoing, Refusal> {
    let started = Instant::now();
    let optouts = optouts_view(optouts);
    let outcome = plan::plan_noting(target, incoming, limits, optouts, collect);
    ctx.filter_time = Some(started.elapsed());
    outcome
}

/// The first path segment, as received (only used to label metrics with a known partner id).
fn partner_in_path(raw_path: &str) -> Option<&str> {
    raw_path.strip_prefix('/')?.split('/').next()
}

/// The caller's request headers, every one of them, held apart from the session so its body
/// can be read while the decision reads them: each name and value shares the bytes the HTTP
/// layer parsed (a reference count, not a copy).
type HeldHeaders = Vec<(http::HeaderName, http::HeaderValue)>;

fn hold_headers(req: &pingora::http::RequestHeader) -> HeldHeaders {
    req.headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// The held headers as the core reads them, borrowed: names lowercase (as the HTTP layer keeps
/// them), in arrival order. A header the gateway decides on (`upgrade`, `content-encoding`, a
/// second `content-type`, the legal basis) must never drop out of the decision because its
/// value is not plain ASCII: values that are not UTF-8 at all are refused (400), so no header
/// is ever silently ignored.
fn request_headers(held: &HeldHeaders) -> Result<Vec<(&str, &str)>, Refusal> {
    held.iter()
        .map(|(name, value)| {
            let text = std::str::from_utf8(value.as_bytes()).map_err(|_| {
                Refusal::new(
                    RefusalKind::BadRequest,
                    format!("the value of header {:?} is not valid UTF-8", name.as_str()),
                )
            })?;
            Ok((name.as_str(), text))
        })
        .collect()
}

/// Owned copies for the shadow thread (only when a shadow policy is configured).
fn owned_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// An HTTP/1 request target in absolute form (`GET http://host/path`) is for forward proxies:
/// refused, whatever its scheme or host, as pingora refuses one whose host differs from `Host`.
/// pingora keeps only the path in `uri`, so the target as sent is read. (HTTP/2 heads carry
/// scheme and authority as pseudo-headers, and their target is the path.)
fn absolute_form(req: &pingora::http::RequestHeader) -> Result<(), Refusal> {
    let http1 = req.version < http::Version::HTTP_2;
    if http1 && !req.raw_path().starts_with(b"/") {
        let absolute = req.raw_path().windows(3).any(|w| w == b"://");
        return Err(Refusal::new(
            RefusalKind::BadRequest,
            if absolute {
                "an absolute-form request target (scheme://host/path) is for forward proxies: send the path alone, with a Host header"
            } else {
                "the request target must be a path starting with `/` (no `*` or authority form)"
            },
        ));
    }
    Ok(())
}

/// Whether the head announces a non-empty body: a `content-length` other than 0, or any
/// transfer coding (chunked).
fn body_announced(req: &pingora::http::RequestHeader) -> bool {
    req.headers.contains_key("transfer-encoding") || length_announced(req)
}

/// Whether the head announces a `content-length` other than 0.
fn length_announced(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get_all("content-length")
        .iter()
        .any(|v| v.as_bytes().iter().any(|b| *b != b'0' && *b != b' '))
}

/// `Expect: 100-continue`: the caller waits for a go-ahead before sending the body. HTTP/1.0
/// has no 100 (Continue): there the expectation is ignored.
fn expects_continue(session: &Session, headers: &[(&str, &str)]) -> bool {
    session.req_header().version != http::Version::HTTP_10
        && headers
            .iter()
            .any(|(n, v)| *n == "expect" && v.trim().eq_ignore_ascii_case("100-continue"))
}

/// The body's `content-length`, refused when over `limit` before any of the body is read.
fn announced_length(session: &Session, limit: usize) -> Result<Option<usize>, Refusal> {
    let Some(length) = session.req_header().headers.get("content-length") else {
        return Ok(None);
    };
    let length: usize = length
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Refusal::new(RefusalKind::BadRequest, "content-length is not a number"))?;
    if length > limit {
        return Err(Refusal::new(
            RefusalKind::BodyTooLarge,
            format!("body of {length} bytes is over the limit of {limit} bytes"),
        ));
    }
    Ok(Some(length))
}

/// Reads the whole request body, refusing as soon as it is known to exceed the body limit,
/// whether announced by `content-length` or arriving chunked, and when it has not all arrived
/// within the body deadline (a slow body, or framing pingora waits on). An announced length
/// (already checked against the limit) is reserved at once, so the body is copied once; the
/// reservation is address space, its pages are touched only as bytes arrive.
async fn read_body(
    session: &mut Session,
    limits: &gateway_core::policy::Limits,
    announced: Option<usize>,
    ctx: &mut RequestCtx,
) -> Result<Vec<u8>, Refusal> {
    let limit = limits.max_body_bytes;
    let deadline = crate::conn_limits::body_deadline(limits);
    let too_large = |n: usize| {
        Refusal::new(
            RefusalKind::BodyTooLarge,
            format!("body of at least {n} bytes is over the limit of {limit} bytes"),
        )
    };
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    loop {
        let chunk = tokio::time::timeout_at(deadline, session.read_request_body()).await;
        match chunk {
            Ok(Ok(Some(chunk))) => {
                ctx.bytes_in += chunk.len() as u64;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(body.len() + chunk.len()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Ok(None)) => return Ok(body),
            Ok(Err(e)) => return Err(unreadable_body(&e)),
            Err(_) => return Err(crate::conn_limits::body_timed_out(limits)),
        }
    }
}

/// The partner and route `(method, raw_path)` asks for, which also label the request's metrics
/// and access line. Labels come from the policy: an id the policy does not know stays
/// `unknown`; a route that owns the path but not the method counts the refusal on that route.
fn target_labelled(
    ctx: &mut RequestCtx,
    active: &Active,
    (method, raw_path): (&str, &str),
) -> Result<plan::Target, Refusal> {
    let partners = &active.policy.partners;
    let target = plan::resolve(partners, method, raw_path).inspect_err(|refusal| {
        if let Some(p) = partner_in_path(raw_path).and_then(|id| partners.get(id)) {
            ctx.set_partner(p, active.series.partner(&p.id));
            if refusal.kind == RefusalKind::MethodNotAllowed {
                if let Some(index) = plan::path_owner(p, raw_path) {
                    ctx.set_path_owner(index);
                }
            }
        }
    })?;
    ctx.set_target(&target, active.series.partner(&target.partner.id));
    Ok(target)
}

/// The caller's body could not be read (broken framing, a connection that dropped). Only the
/// kind of failure is named: pingora's own description can quote bytes of the body.
fn unreadable_body(e: &pingora::Error) -> Refusal {
    Refusal::new(
        RefusalKind::BadRequest,
        format!("cannot read the request body: {}", e.etype().as_str()),
    )
}

#[async_trait]
impl ProxyHttp for PartnerProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        let mut ctx = RequestCtx::new();
        ctx.in_flight = Some(self.gateway.drain.begin());
        ctx
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        crate::conn_limits::head_done(session.as_downstream());
        // pingora waits for ever for a caller to take the answer: one that stops reading would
        // hold its `max_connections` slot (and its partner connection) for good.
        let limits = self.gateway.active().policy.gateway.limits;
        session
            .as_downstream_mut()
            .set_write_timeout(Some(limits.body_timeout));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        // pingora waits for the next request on a kept-alive HTTP/1.1 connection for ever (or
        // as long as the caller's `Keep-Alive: timeout` asks): bounded, so idle connections
        // cannot hold `max_connections` slots.
        let idle = session.as_downstream().get_keepalive();
        if idle.is_some_and(|s| s == 0 || s > KEEPALIVE_IDLE_S) {
            session.set_keepalive(Some(KEEPALIVE_IDLE_S));
        }
        match self.handle(session, ctx).await {
            Ok((header, answer)) => self.respond(session, ctx, header, answer).await?,
            Err(refusal) => self.refuse(session, ctx, &refusal).await,
        }
        // Always answered here: pingora's own upstream phases are never used.
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            InternalError,
            "partner-gateway forwards from request_filter only",
        )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> pingora::proxy::FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        if session
            .response_written()
            .is_some_and(|h| !h.status.is_informational())
        {
            // The answer was under way: nothing more can be said, the connection just closes
            // (the caller sees a truncated body, never a finished one).
            self.record(ctx);
            return pingora::proxy::FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let refusal = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Refusal::new(
                    RefusalKind::UpstreamTimeout,
                    "the partner did not answer in time",
                )
            }
            ErrorType::HTTPStatus(code) if *code < 500 => {
                Refusal::new(RefusalKind::BadRequest, format!("bad request: {e}"))
            }
            ErrorType::InvalidHTTPHeader | ErrorType::ReadError => {
                Refusal::new(RefusalKind::BadRequest, format!("bad request: {e}"))
            }
            _ => Refusal::new(
                RefusalKind::UpstreamError,
                format!("the request could not be proxied: {}", e.etype().as_str()),
            ),
        };
        self.refuse(session, ctx, &refusal).await;
        pingora::proxy::FailToProxy {
            error_code: refusal.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        crate::conn_limits::request_done(session.as_downstream());
        crate::memory::request_done();
        // Requests answered by this proxy were counted before the answer went out (so a caller
        // that reads /metrics right after its answer sees them); this catches the rest.
        self.record(ctx);
        access_line(ctx);
    }

    /// Names the request in pingora's own error lines: never its path, query or headers.
    fn request_summary(&self, _session: &Session, ctx: &Self::CTX) -> String {
        format!(
            "request_id {} partner {} route {}",
            ctx.request_id,
            ctx.partner(),
            ctx.route()
        )
    }
}

/// The access line of a request the gateway answered before its head was parsed (too large,
/// too slow, malformed framing): no partner, route or method is known, so they are `unknown`
/// and `other`, like for any request the policy does not know.
pub fn head_refused_access_line(refusal: &Refusal, started: std::time::Instant) {
    let mut ctx = RequestCtx::new();
    ctx.started = started;
    ctx.status = refusal.status();
    ctx.refused = Some(refusal.kind);
    access_line(&ctx);
}

/// The access line: exactly these fields, each from the policy, the gateway or a count; never
/// from request content (see `logs`).
fn access_line(ctx: &RequestCtx) {
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let records = ctx.report.as_ref();
    // Counted like `records_forwarded_total`: what reached the partner, also when its answer
    // then failed.
    let forwarded = match (records, ctx.disclosed) {
        (Some(r), true) => r.records_forwarded,
        _ => 0,
    };
    tracing::info!(
        target: crate::logs::ACCESS_TARGET,
        request_id = ctx.request_id.as_str(),
        partner = ctx.partner(),
        route = ctx.route(),
        method = ctx.method,
        status = ctx.status,
        reason = ctx.refused.map(RefusalKind::code),
        duration_ms = ms(ctx.started.elapsed()),
        upstream_ms = ctx.upstream_time.map(ms),
        bytes_in = ctx.bytes_in,
        bytes_out = ctx.bytes_out,
        records_forwarded = forwarded,
        records_dropped = records.map_or(0, |r| r.records_dropped),
    );
}

impl PartnerProxy {
    /// Counts one answered request, once.
    fn record(&self, ctx: &mut RequestCtx) {
        if std::mem::replace(&mut ctx.counted, true) {
            return;
        }
        let m = &self.gateway.metrics;
        let series = ctx.series();
        m.request(series, ctx.status, ctx.started.elapsed());
        if let Some(t) = ctx.filter_time {
            m.filter_time(series, t);
        }
        if let Some(reason) = ctx.refused {
            m.refused(series, reason);
            if reason == RefusalKind::RequestTimeout {
                // Only a body misses its deadline here (heads are the connection's business).
                m.connection_closed(crate::metrics::ConnectionClosed::BodyTimeout);
            }
        }
        if let Some(kind) = ctx.upstream_error {
            m.upstream_error(series, kind);
        }
        // Whatever became of the request after the filter decided, its unknown fields arrived;
        // listed only while the policy that found them unknown serves (see `Drift::clear`).
        if let Some(report) = &ctx.report {
            let listed =
                report.unknown_fields > 0 && ctx.decided_under(&self.gateway.active().policy);
            self.gateway.drift.record(m, series, report, listed);
        }
        // Counted for bodies that reached the partner, also when its answer then failed
        // (502/504 after the body went, a stream stopped by a bad line): as in the ledger.
        if let (Some(report), true) = (&ctx.report, ctx.disclosed) {
            m.forwarded(series, report);
            if let Some(policy) = ctx.route_policy() {
                m.fields_disclosed(series, policy, &report.matched);
            }
        }
    }
}
