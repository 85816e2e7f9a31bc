//! The proxy's side of the disclosure ledger: the record of a request about to be forwarded
//! (written before any byte goes to the partner) and its outcome. A streamed request's record
//! says `"stream": true` and leaves what was forwarded (digest, counts, fields, subjects) to
//! its outcome line, written once the stream ended.
use gateway_core::ledger::{subject_hashes, Disclosure, StreamForwarded};
use gateway_core::plan::stream::StreamHead;
use gateway_core::plan::{Outgoing, Target};
use gateway_core::{Refusal, RefusalKind};

use crate::gateway::{Active, Gateway};
use crate::ledger::{now_text, LedgerError, RecordRef};

/// What the request discloses, as its ledger record says it.
pub fn disclosure(
    active: &Active,
    target: &Target,
    request: (&str, &str, &str),
    outgoing: &Outgoing,
    subject_key: &[u8],
) -> Disclosure {
    let report = &outgoing.report;
    let (fields, categories) = target.route().disclosed(&report.matched);
    Disclosure {
        body_sha256: Some(outgoing.body_sha256().to_string()),
        records_forwarded: report.records_forwarded,
        records_dropped: report.records_dropped,
        fields,
        categories,
        subjects: subject_hashes(
            subject_key,
            report.subjects.iter().chain(&outgoing.url_subjects),
        ),
        ..who_and_why(active, target, request, outgoing.legal_basis.as_deref())
    }
}

/// Who sends to whom, why, under which policy: a record with nothing forwarded yet.
fn who_and_why(
    active: &Active,
    target: &Target,
    request: (&str, &str, &str),
    legal_basis: Option<&str>,
) -> Disclosure {
    let (request_id, caller, method) = request;
    let partner = &target.partner;
    Disclosure {
        time: now_text().0,
        request_id: request_id.to_string(),
        caller: caller.to_string(),
        partner: partner.id.clone(),
        kind: partner.kind.as_str().to_string(),
        route: target.route().template.clone(),
        method: method.to_string(),
        use_: partner.kind.data_use().to_string(),
        purpose: partner.purpose.clone(),
        legal_basis: legal_basis.map(str::to_string),
        policy_version: active.policy.version.clone(),
        token_jti: None,
        body_sha256: None,
        records_forwarded: 0,
        records_dropped: 0,
        fields: Vec::new(),
        categories: Vec::new(),
        subjects: Vec::new(),
        stream: false,
    }
}

/// Records the request in the ledger, when there is one: `Ok(Some(seq))` once the record is
/// written, `Ok(None)` without a ledger, and a 503 `not_ready` refusal (counted) when it
/// cannot be written — the request must then not be forwarded.
pub fn record(
    gateway: &Gateway,
    active: &Active,
    target: &Target,
    request: (&str, &str, &str),
    outgoing: &Outgoing,
    jti: &str,
) -> Result<Option<RecordRef>, Refusal> {
    let Some(ledger) = gateway.ledger() else {
        return Ok(None);
    };
    let d = disclosure(active, target, request, outgoing, ledger.subject_key());
    append(gateway, active, d, jti)
}

/// Records a streamed request before its head goes to the partner (see [`record`]). Its
/// `subjects` are the customer ids its URL names, known before any line: the records' own
/// come in subjects lines and the outcome.
pub fn record_stream(
    gateway: &Gateway,
    active: &Active,
    target: &Target,
    request: (&str, &str, &str),
    head: &StreamHead,
    jti: &str,
) -> Result<Option<RecordRef>, Refusal> {
    let Some(ledger) = gateway.ledger() else {
        return Ok(None);
    };
    let d = Disclosure {
        stream: true,
        subjects: subject_hashes(ledger.subject_key(), &head.url_subjects),
        ..who_and_why(active, target, request, head.legal_basis.as_deref())
    };
    append(gateway, active, d, jti)
}

fn append(
    gateway: &Gateway,
    active: &Active,
    mut d: Disclosure,
    jti: &str,
) -> Result<Option<RecordRef>, Refusal> {
    let Some(ledger) = gateway.ledger() else {
        return Ok(None);
    };
    d.token_jti = active.signer().map(|_| jti.to_string());
    match ledger.record(&d, active.signer()) {
        Ok(seq) => {
            gateway.metrics.ledger_record();
            Ok(Some(seq))
        }
        Err(e) => {
            gateway.metrics.ledger_error();
            Err(Refusal::new(RefusalKind::NotReady, e.to_string()))
        }
    }
}

/// Writes the outcome line of record `seq`. The request has left already, so a failure is
/// only counted and logged (the ledger is then broken and refuses the next requests).
pub fn outcome(gateway: &Gateway, active: &Active, seq: Option<RecordRef>, status: u16) {
    write_outcome(gateway, active, seq, status, None);
}

/// The outcome of a streamed request: the status (the partner's, or the refusal that stopped
/// the stream) and what was actually sent.
pub fn outcome_stream(
    gateway: &Gateway,
    active: &Active,
    seq: Option<RecordRef>,
    status: u16,
    forwarded: StreamForwarded,
) {
    write_outcome(gateway, active, seq, status, Some(&forwarded));
}

fn write_outcome(
    gateway: &Gateway,
    active: &Active,
    seq: Option<RecordRef>,
    status: u16,
    stream: Option<&StreamForwarded>,
) {
    let (Some(seq), Some(ledger)) = (seq, gateway.ledger()) else {
        return;
    };
    match ledger.outcome(seq, status, stream, active.signer()) {
        Ok(()) => {}
        // Its record stays in the chain this gateway wrote before its directory was replaced.
        Err(LedgerError::OtherChain) => log::warn!(
            "outcome of ledger record {} not written: the record is in the chain of the ledger directory that was replaced",
            seq.seq
        ),
        Err(e) => {
            gateway.metrics.ledger_error();
            log::debug!("outcome of ledger record {} not written: {e}", seq.seq);
        }
    }
}
