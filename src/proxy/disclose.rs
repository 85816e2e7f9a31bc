//! The proxy's side of the disclosure ledger: the record of a request about to be forwarded
//! (written before any byte goes to the partner) and its outcome.
use gateway_core::ledger::{subject_hashes, Disclosure};
use gateway_core::plan::{Outgoing, Target};
use gateway_core::{Refusal, RefusalKind};

use crate::gateway::{Active, Gateway};
use crate::ledger::now_text;

/// What the request discloses, as its ledger record says it.
pub fn disclosure(
    active: &Active,
    target: &Target,
    request: (&str, &str, &str),
    outgoing: &Outgoing,
    subject_key: &[u8],
) -> Disclosure {
    let (request_id, caller, method) = request;
    let partner = &target.partner;
    let route = target.route();
    let report = &outgoing.report;
    let (fields, categories) = route.disclosed(&report.matched);
    Disclosure {
        time: now_text().0,
        request_id: request_id.to_string(),
        caller: caller.to_string(),
        partner: partner.id.clone(),
        kind: partner.kind.as_str().to_string(),
        route: route.template.clone(),
        method: method.to_string(),
        use_: partner.kind.data_use().to_string(),
        purpose: partner.purpose.clone(),
        legal_basis: outgoing.legal_basis.clone(),
        policy_version: active.policy.version.clone(),
        token_jti: None,
        body_sha256: gateway_core::tagging::body_sha256(&outgoing.body),
        records_forwarded: report.records_forwarded,
        records_dropped: report.records_dropped,
        fields,
        categories,
        subjects: subject_hashes(subject_key, &report.subjects),
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
) -> Result<Option<u64>, Refusal> {
    let Some(ledger) = gateway.ledger() else {
        return Ok(None);
    };
    let mut d = disclosure(active, target, request, outgoing, ledger.subject_key());
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
pub fn outcome(gateway: &Gateway, active: &Active, seq: Option<u64>, status: u16) {
    let (Some(seq), Some(ledger)) = (seq, gateway.ledger()) else {
        return;
    };
    if let Err(e) = ledger.outcome(seq, status, active.signer()) {
        gateway.metrics.ledger_error();
        log::debug!("outcome of ledger record {seq} not written: {e}");
    }
}
