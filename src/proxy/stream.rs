/*!
Streaming routes (`stream: ndjson`): the one exception to deciding the whole body before
connecting. Everything the head decides (partner, route, method, caller, content type, legal
basis, opt-outs loaded) is decided first, and a refusal there opens no connection. Then the
ledger record is written, the partner gets the head (`transfer-encoding: chunked`, a data-use
token with `"stream": true` and no `body_sha256`), and the body follows one input chunk at a
time: its complete lines are decided by the core ([`gateway_core::plan::stream`]) and what
passes is written as one chunk, so memory holds one line plus one chunk whatever the body size
(with a ledger, also the customer ids not yet written out: fewer than
[`STREAM_SUBJECTS_PER_LINE`] and [`STREAM_SUBJECTS_PENDING_BYTES`], see
[`PartnerProxy::write_subjects`]).

A line that fails stops everything: the partner connection is dropped without the last chunk
(`0\r\n\r\n`), so the partner sees an incomplete body; nothing of that line or any later one is
written; the caller gets the refusal. pingora's own body pipe is not used for this: when its
sender side goes away it finishes the body (`send_body_to1` in pingora-proxy 0.9.1 treats a
dropped sender as the end and calls `finish_body`), which would make a cut-off stream look
complete.
*/
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_core::ledger::{
    subject_hashes, StreamForwarded, STREAM_SUBJECTS_PENDING_BYTES, STREAM_SUBJECTS_PER_LINE,
};
use gateway_core::plan::stream::{plan_stream_head, LineSplitter, NdjsonStream, StreamHead};
use gateway_core::plan::Target;
use gateway_core::{Refusal, RefusalKind};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use sha2::{Digest, Sha256};

use super::upstream::{self, PartnerHead, UpstreamAnswer, UpstreamFailure};
use super::{disclose, PartnerProxy, RequestCtx};
use crate::gateway::{optouts_view, Active};
use crate::ledger::{LedgerError, RecordRef};

/// Who sends what to whom: the parts of a request decided before the stream starts.
pub(super) struct StreamRequest<'a> {
    pub active: &'a Arc<Active>,
    pub target: &'a Target,
    pub caller: &'a str,
    pub method: &'a str,
    pub raw_path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub peer: &'a Option<crate::tls::PeerIdentity>,
}

/// The most bytes of a stream's first lines a shadow policy decides again (whole lines only):
/// a stream is never held whole, so the candidate judges this sample of it.
pub const SHADOW_SAMPLE_BYTES: usize = 1 << 20;

/// What went through so far: the bytes written to the partner and their digest, the lines'
/// counts, and (with a ledger) the distinct subject ids of forwarded records not yet written.
struct Progress<'a> {
    splitter: LineSplitter,
    lines: NdjsonStream<'a>,
    sent: Sha256,
    subjects: Option<Subjects>,
    filter_time: Duration,
    /// With a shadow policy: the first lines as received (up to [`SHADOW_SAMPLE_BYTES`]).
    sample: Option<Vec<u8>>,
}

/// With a ledger: the seq of the stream's record, and the distinct customer ids forwarded since
/// the record or the stream's last subjects line.
struct Subjects {
    record: RecordRef,
    pending: HashSet<String>,
    /// The bytes of the ids in `pending`.
    bytes: usize,
}

impl PartnerProxy {
    /// Decides the head, then streams the body line by line to the partner and reads its
    /// answer header. `Err` is a refusal still to be answered (the partner, if contacted, got
    /// an incomplete body).
    pub(super) async fn stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        req: StreamRequest<'_>,
    ) -> Result<UpstreamAnswer, Refusal> {
        let (active, target) = (req.active, req.target);
        let optout_source = self.gateway.optout_source();
        let head = plan_stream_head(target, req.query, req.headers, optouts_view(&optout_source))?;
        if super::expects_continue(session, req.headers) {
            let _ = session.as_downstream_mut().write_continue_response().await;
        }
        let jti = crate::gateway::new_jti();
        let seq = disclose::record_stream(
            &self.gateway,
            active,
            target,
            (ctx.request_id.as_str(), req.caller, req.method),
            &head,
            &jti,
        )?;
        let mut progress = Progress {
            splitter: LineSplitter::new(active.policy.gateway.limits.max_body_bytes),
            lines: NdjsonStream::new(target, &active.policy.gateway.limits, seq.is_some()),
            sent: Sha256::new(),
            subjects: seq.map(|record| Subjects {
                record,
                pending: HashSet::new(),
                bytes: 0,
            }),
            filter_time: Duration::ZERO,
            sample: active.shadow.as_ref().map(|_| Vec::new()),
        };
        let started = Instant::now();
        let result = self
            .stream_body(session, ctx, &req, &head, &jti, &mut progress)
            .await;
        ctx.upstream_time = Some(started.elapsed());
        ctx.filter_time = Some(progress.filter_time);
        let status = match &result {
            Ok(answer) => answer.status(),
            Err(refusal) => refusal.status(),
        };
        let report = &progress.lines.report;
        let (fields, categories) = target.route().disclosed(&report.matched);
        let forwarded = StreamForwarded {
            body_sha256: gateway_core::tagging::body_sha256_of(progress.sent),
            records_forwarded: report.records_forwarded,
            records_dropped: report.records_dropped,
            fields,
            categories,
            subjects: self.subject_hashes(progress.subjects.map(|s| s.pending)),
        };
        disclose::outcome_stream(&self.gateway, active, seq, status, forwarded);
        // What went before a bad line or a failed answer was disclosed all the same.
        ctx.disclosed = result.is_ok() || ctx.bytes_out > 0;
        ctx.report = Some(progress.lines.report);
        if let Some(sample) = progress.sample {
            self.shadow_stream(ctx, &req, sample);
        }
        result
    }

    /// Hands the stream's first lines to the shadow policy, decided there again under both
    /// policies as one body (after the real decision; nothing of it is sent anywhere).
    fn shadow_stream(&self, ctx: &RequestCtx, req: &StreamRequest<'_>, sample: Vec<u8>) {
        let head = super::ShadowHead {
            method: req.method.to_string(),
            raw_path: req.raw_path.to_string(),
            query: req.query.map(str::to_string),
            headers: super::owned_headers(req.headers),
            peer: req.peer.clone(),
        };
        let optouts = self.gateway.optout_source();
        self.shadow(req.active, ctx, head, (Some(sample), true), (optouts, None));
    }

    /// Writes the pending customers of a stream under way and those of the line that filled the
    /// set (`added`) as a subjects line of its record, so that they never pile up in memory; a
    /// failure is a 503 that stops the stream (the pending ones are kept for its outcome line,
    /// the line's own never left).
    fn write_subjects(
        &self,
        active: &Active,
        subjects: &mut Subjects,
        added: &[String],
    ) -> Result<(), Refusal> {
        let Some(ledger) = self.gateway.ledger() else {
            return Ok(());
        };
        let hashes = subject_hashes(ledger.subject_key(), subjects.pending.iter().chain(added));
        // A subjects line that cannot be written stops the stream: no customer leaves unrecorded.
        // That includes a stream whose record is in the chain of a ledger directory that was
        // replaced meanwhile: its subjects have no place in the new chain.
        if let Err(e) = ledger.subjects(subjects.record, &hashes, active.signer()) {
            self.gateway.metrics.ledger_error();
            if matches!(e, LedgerError::OtherChain) {
                log::warn!(
                    "stream of ledger record {} stopped: its record is in the chain of the ledger directory that was replaced",
                    subjects.record.seq
                );
            }
            return Err(Refusal::new(RefusalKind::NotReady, e.to_string()));
        }
        subjects.pending.clear();
        subjects.bytes = 0;
        Ok(())
    }

    fn subject_hashes(&self, ids: Option<HashSet<String>>) -> Vec<String> {
        let (Some(ids), Some(ledger)) = (ids, self.gateway.ledger()) else {
            return Vec::new();
        };
        subject_hashes(ledger.subject_key(), &ids)
    }

    /// Connects, sends the head, then the body as it is decided; on the caller's last byte,
    /// the last chunk, and the partner's answer header.
    async fn stream_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        req: &StreamRequest<'_>,
        head: &StreamHead,
        jti: &str,
        progress: &mut Progress<'_>,
    ) -> Result<UpstreamAnswer, Refusal> {
        let (active, target) = (req.active, req.target);
        let partner = target.partner.id.as_str();
        let partner_head = PartnerHead {
            method: req.method,
            caller: req.caller,
            path_and_query: &head.path_and_query,
            headers: &head.headers,
            legal_basis: head.legal_basis.as_deref(),
            body: None,
            jti,
        };
        let header = upstream::request_header(active, target, &partner_head)?;
        // Resolving the partner's name is bounded like a whole body's exchange (504 past it);
        // connecting and each write after it have the peer's own timeouts.
        let timeout = active.policy.gateway.limits.upstream_timeout;
        let peer = upstream::within(timeout, partner, || upstream::peer(active, target))
            .await
            .map_err(|f| failed(ctx, f))?;
        let mut http = self
            .upstream
            .open_stream(&peer, &header, partner)
            .await
            .map_err(|f| failed(ctx, f))?;
        let idle = active.policy.gateway.limits.body_timeout;
        loop {
            let chunk = match tokio::time::timeout(idle, session.read_request_body()).await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(super::unreadable_body(&e)),
                Err(_) => return Err(stalled(idle)),
            };
            let last = chunk.is_none();
            if let Some(chunk) = &chunk {
                ctx.bytes_in += chunk.len() as u64;
            }
            // The lines decided before a bad one are sent (as if the chunk had been cut
            // there), so what the ledger counts is what the partner got. A refusal returns
            // after that: `http` is dropped unfinished, never given back to the pool, so the
            // partner's connection closes without the last chunk.
            let (out, decided) = self.decide(active, progress, chunk.as_deref());
            if !out.is_empty() {
                progress.sent.update(&out);
                ctx.bytes_out += out.len() as u64;
                let written = http.write_request_body(Bytes::from(out), false).await;
                if decided.is_ok() {
                    written.map_err(|e| failed(ctx, UpstreamFailure::from_error(partner, &e)))?;
                }
            }
            decided?;
            if last {
                break;
            }
        }
        // The body took the caller's time; the partner's answer header takes at most its own.
        upstream::within(timeout, partner, || finish(&mut http, partner))
            .await
            .map_err(|f| failed(ctx, f))?;
        if http.response_header().is_none() {
            return Err(Refusal::new(RefusalKind::UpstreamError, "no answer header"));
        }
        let mut answer = UpstreamAnswer {
            http,
            peer,
            timeout: Some(timeout),
            start: Default::default(),
        };
        answer
            .read_start(partner)
            .await
            .map_err(|f| failed(ctx, f))?;
        Ok(answer)
    }

    /// Decides the lines `chunk` completes (`None`: the body ended, so also a last line
    /// without `\n`) and returns the bytes to send for them: with a refusal, those of the
    /// lines decided before the one that failed. A line whose customer fills the pending set
    /// is sent only once the set is written to the ledger (a failed write stops the stream).
    fn decide(
        &self,
        active: &Active,
        progress: &mut Progress<'_>,
        chunk: Option<&[u8]>,
    ) -> (Vec<u8>, Result<(), Refusal>) {
        let started = Instant::now();
        // No customer leaves once the stream's record can no longer be followed by its subjects
        // and outcome (the ledger broke, or its directory was replaced and a new chain began).
        if let (Some(s), Some(ledger)) = (progress.subjects.as_ref(), self.gateway.ledger()) {
            if !ledger.holds(s.record) {
                let refusal = Refusal::new(
                    RefusalKind::NotReady,
                    "the disclosure ledger this stream is recorded in cannot be written now: the stream stops",
                );
                return (Vec::new(), Err(refusal));
            }
        }
        let optout_source = self.gateway.optout_source();
        let optouts = optouts_view(&optout_source);
        let mut out = Vec::with_capacity(chunk.map_or(0, <[u8]>::len));
        let Progress {
            splitter,
            lines,
            subjects,
            sample,
            ..
        } = progress;
        let mut each = |n: u64, line: &[u8]| {
            if let Some(sample) = sample.as_mut() {
                if sample.len() + line.len() < SHADOW_SAMPLE_BYTES {
                    sample.extend_from_slice(line);
                    sample.push(b'\n');
                }
            }
            // The customers this line adds, kept out of the pending set until the line may leave.
            let mut added: Vec<String> = Vec::new();
            let mut keep = |r: &gateway_core::filter::Report| {
                if let Some(s) = subjects.as_ref() {
                    for id in &r.subjects {
                        if !s.pending.contains(id) && !added.contains(id) {
                            added.push(id.clone());
                        }
                    }
                }
            };
            let mark = out.len();
            lines.decide(optouts, n, line, &mut out, &mut keep)?;
            let Some(s) = subjects.as_mut() else {
                return Ok(());
            };
            let bytes = s.bytes + added.iter().map(String::len).sum::<usize>();
            if s.pending.len() + added.len() < STREAM_SUBJECTS_PER_LINE
                && bytes < STREAM_SUBJECTS_PENDING_BYTES
            {
                s.pending.extend(added);
                s.bytes = bytes;
            } else if let Err(refusal) = self.write_subjects(active, s, &added) {
                out.truncate(mark);
                return Err(refusal);
            }
            Ok(())
        };
        let result = match chunk {
            Some(chunk) => splitter.feed(chunk, &mut each),
            None => splitter.finish(&mut each),
        };
        progress.filter_time += started.elapsed();
        (out, result)
    }
}

/// The last chunk, then the partner's answer header.
async fn finish(http: &mut HttpSession, partner: &str) -> Result<(), UpstreamFailure> {
    let fail = |e: Box<pingora::Error>| UpstreamFailure::from_error(partner, &e);
    http.finish_request_body().await.map_err(fail)?;
    upstream::read_final_header(http).await.map_err(fail)
}

/// A partner failure: counted by kind, answered as its refusal (502/504).
fn failed(ctx: &mut RequestCtx, failure: UpstreamFailure) -> Refusal {
    ctx.upstream_error = Some(failure.kind);
    failure.refusal
}

/// A caller body with nothing new for `idle` (`body_timeout_ms`): the stream ends unfinished,
/// 408, counted as a `body_timeout` close like a whole body that misses its deadline.
fn stalled(idle: std::time::Duration) -> Refusal {
    Refusal::new(
        RefusalKind::RequestTimeout,
        format!(
            "the request body stalled: nothing arrived for {} ms",
            idle.as_millis()
        ),
    )
}
