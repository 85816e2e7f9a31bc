/*!
The disclosure ledger's pure half: the exact bytes of every line (records, outcomes, signed
checkpoints, a stream's subjects), the hash chain that links them, file names, the keyed hash of customer ids, and
the verification and audit logic that reads them back. No I/O and no clock: the shell passes
times in as RFC 3339 text and owns the files (`src/ledger/`).

A ledger is a sequence of JSON lines across files `ledger-<UTC date>-<n>.jsonl`. Every line
carries `seq` (1, 2, … across files) and `prev`, the lowercase hex SHA-256 of the previous
line's bytes without its newline ([`ZERO_HASH`] for the first), so that editing, inserting,
removing or reordering any line breaks the chain at a line [`verify::ChainVerifier`] can name.
*/
mod line;
pub mod report;

pub mod verify;
pub mod who;

#[cfg(test)]
mod tests;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use line::{
    Chain, CheckpointClaims, Disclosure, LedgerLine, Outcome, Record, SealedLine, StreamForwarded,
    SubjectsLine, CHECKPOINT_TYP, STREAM_SUBJECTS_PENDING_BYTES, STREAM_SUBJECTS_PER_LINE,
};

/// `prev` of the very first line.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A checkpoint line is appended after this many records (and at rotation and shutdown).
pub const CHECKPOINT_EVERY: u64 = 1000;
pub use crate::policy::DEFAULT_LEDGER_ROTATE_BYTES as DEFAULT_ROTATE_BYTES;
/// The environment variable `ledger.subject_key_env` names by default.
pub const DEFAULT_SUBJECT_KEY_ENV: &str = "PARTNER_GATEWAY_LEDGER_KEY";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The hash a line is chained by: lowercase hex SHA-256 of its bytes without the newline.
pub fn line_hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

/// A customer id as the ledger keeps it: lowercase hex HMAC-SHA256 of its canonical text
/// (an integer id as its digits, so `123` and `"123"` agree) keyed with the ledger key.
pub fn subject_hash(key: &[u8], canonical_id: &str) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(canonical_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The keyed hashes of a request's forwarded customer ids: sorted, each once.
pub fn subject_hashes<'a>(
    key: &[u8],
    canonical_ids: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut out: Vec<String> = canonical_ids
        .into_iter()
        .map(|id| subject_hash(key, id))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The canonical text of a customer id typed by a person (`who-received --customer`): a JSON
/// string literal is unquoted, anything else is taken as written.
pub fn canonical_customer(id: &str) -> String {
    let trimmed = id.trim();
    if trimmed.starts_with('"') {
        if let Ok(serde_json::Value::String(s)) = serde_json::from_str(trimmed) {
            return s;
        }
    }
    trimmed.to_string()
}

/// The name of ledger file number `n` of UTC day `date` (`YYYY-MM-DD`).
pub fn file_name(date: &str, n: u32) -> String {
    format!("ledger-{date}-{n}.jsonl")
}

/// The date and number of a ledger file name, or `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix("ledger-")?.strip_suffix(".jsonl")?;
    let (date, n) = rest.rsplit_once('-')?;
    let valid_date = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !valid_date || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((date.to_string(), n.parse().ok()?))
}

/// Sorts ledger file names into chain order (by date, then number); other names are dropped.
pub fn chain_order(names: Vec<String>) -> Vec<String> {
    let mut keyed: Vec<((String, u32), String)> = names
        .into_iter()
        .filter_map(|n| parse_file_name(&n).map(|k| (k, n)))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, n)| n).collect()
}
