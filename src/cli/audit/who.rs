//! `audit who-received --customer ID [--since DATE] [--format text|json]`: every disclosure
//! that carried this customer's record. The id is hashed with the ledger key from the
//! environment (the ledger never holds it raw) and the files are streamed.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use gateway_core::ledger::who::{Received, Unattributed, WhoReceived};
use gateway_core::ledger::{canonical_customer, subject_hash};

use crate::cli::args::TextOrJson;

pub struct Query<'a> {
    pub customer: &'a str,
    pub since: Option<String>,
    pub until: Option<String>,
    pub format: TextOrJson,
}

/// The ledger key from the environment variable `key_env` (never from a file or argument).
pub fn key_from_env(key_env: &str) -> anyhow::Result<Vec<u8>> {
    std::env::var(key_env)
        .ok()
        .filter(|k| !k.is_empty())
        .map(String::into_bytes)
        .with_context(|| {
            let variable = gateway_core::policy::env_variable_unquoted(key_env);
            format!("the ledger key ({variable}) is not set")
        })
}

/// The forms of an id the ledger may hold: as asked, lowercase and uppercase (`C-7777` and
/// `c-7777` are one customer, as opt-outs compare ids). The ledger keys an id as the body wrote
/// it, so a mixed-case spelling (`Toki`) is found only when asked as written.
fn forms(customer: &str) -> Vec<String> {
    let id = canonical_customer(customer);
    let mut forms = vec![id.to_lowercase(), id.to_uppercase(), id];
    forms.sort();
    forms.dedup();
    forms
}

/// Prints the disclosures found, and the disclosures in the period that name no customer;
/// exit 0 (also when there are none).
pub fn run(
    files: &[PathBuf],
    key: &[u8],
    q: &Query<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let subjects: Vec<String> = forms(q.customer)
        .iter()
        .map(|id| subject_hash(key, id))
        .collect();
    let mut who = WhoReceived::new(&subjects, q.since.clone(), q.until.clone());
    for file in files {
        super::each_line(file, |_, bytes, complete| {
            if complete {
                who.line(bytes);
            }
            Ok(true)
        })?;
    }
    let (found, unattributed) = who.finish();
    if q.format == TextOrJson::Json {
        let doc = serde_json::json!({
            "subject": subject_hash(key, &canonical_customer(q.customer)),
            "subjects": subjects,
            "since": q.since,
            "until": q.until,
            "disclosures": found,
            "unattributed": unattributed,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        text(&found, out)?;
        unattributed_text(&unattributed, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Routes without `subject` name nobody in the ledger, nor does the unwritten rest of a stream
/// cut off before its outcome line: their recipients cannot be told apart by customer. The text
/// answer says how many such disclosures there are (the JSON answer lists them per partner and
/// route), after the customer's own, never among them.
fn unattributed_text(unattributed: &[Unattributed], out: &mut dyn Write) -> anyhow::Result<()> {
    let total: u64 = unattributed.iter().map(|u| u.disclosures).sum();
    if total == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "note: {total} disclosures in the period name no customer (routes without `subject`, requests whose records were all dropped, or streams cut off before their outcome line), so they may have carried anyone's data; `--format json` lists them under `unattributed`"
    )?;
    Ok(())
}

fn text(found: &[Received], out: &mut dyn Write) -> anyhow::Result<()> {
    if found.is_empty() {
        writeln!(
            out,
            "no disclosure in the ledger carried this customer's record"
        )?;
        return Ok(());
    }
    let n = found.len();
    let noun = if n == 1 { "disclosure" } else { "disclosures" };
    writeln!(out, "{n} {noun} carried this customer's record:")?;
    for r in found {
        let d = &r.disclosure;
        writeln!(
            out,
            "{}  {} ({})  {} {}  purpose={} use={} legal_basis={} status={} categories={} fields={} seq={}",
            d.time,
            d.partner,
            d.kind,
            d.method,
            d.route,
            d.purpose,
            d.use_,
            d.legal_basis.as_deref().unwrap_or("-"),
            r.status.map_or("-".to_string(), |s| s.to_string()),
            if d.categories.is_empty() { "-".to_string() } else { d.categories.join(",") },
            if d.fields.is_empty() { "-".to_string() } else { d.fields.join(",") },
            r.seq
        )?;
    }
    Ok(())
}
