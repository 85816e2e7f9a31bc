//! The four kinds of ledger line, byte for byte, and [`Chain`], which numbers and links them.
//!
//! - a record: `{"seq", "time", "request_id", "caller", "partner", "kind", "route", "method",
//!   "use", "purpose", "legal_basis", "policy_version", "token_jti", "body_sha256",
//!   "records_forwarded", "records_dropped", "fields", "categories", "subjects", "prev"}`;
//! - an outcome: `{"seq", "outcome_of", "status", "time", "prev"}`; the outcome of a streamed
//!   request also says what was forwarded, known only once the stream ended: `body_sha256`
//!   (of the bytes actually sent), `records_forwarded`, `records_dropped`, `fields`,
//!   `categories` and `subjects` (its record line, written before the first byte left, has
//!   `"stream": true`, `"body_sha256": null`, zero counts and empty lists);
//! - a stream's subjects line: `{"seq", "subjects_of", "subjects", "prev"}`, written while a
//!   stream is under way each time [`STREAM_SUBJECTS_PER_LINE`] distinct customers (or
//!   [`STREAM_SUBJECTS_PENDING_BYTES`] of their ids) were forwarded since its record or its
//!   last such line, so that a stream's customers never
//!   pile up in memory; its outcome line has the rest (a customer may be in more than one of
//!   a stream's lines);
//! - a checkpoint: `{"seq", "checkpoint": {"through", "hash"}, "sig", "prev"}`, where `through`
//!   is the seq of the line before it, `hash` that line's hash (so also its own `prev`), and
//!   `sig` a compact JWS by the gateway's signing key over [`CheckpointClaims`].
use serde::{Deserialize, Serialize};

use super::{line_hash, ZERO_HASH};
use crate::tagging::{TagError, TokenSigner};

/// A stream's distinct customers are written out in a subjects line each time this many
/// gathered (about 270 KB of line).
pub const STREAM_SUBJECTS_PER_LINE: usize = 4096;

/// ... or as soon as the raw ids gathered take this many bytes: where a route honours no
/// opt-outs its subject ids are only bounded by the line's length, and the ids held for a
/// stream must stay bounded whatever they are.
pub const STREAM_SUBJECTS_PENDING_BYTES: usize = 256 * 1024;

/// The JWS `typ` of checkpoint signatures.
pub const CHECKPOINT_TYP: &str = "ohsoft-ledger-checkpoint+jwt";

/// What one forwarded request discloses: a record without its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    /// The caller's `sub`.
    pub caller: String,
    pub partner: String,
    /// The partner's kind (`contractor`, …).
    pub kind: String,
    /// The route template.
    pub route: String,
    pub method: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub purpose: String,
    pub legal_basis: Option<String>,
    pub policy_version: String,
    /// The data-use token's `jti` (`null` when the gateway signs no tokens).
    pub token_jti: Option<String>,
    /// base64url SHA-256 of the forwarded body, as in the data-use token; `None` on a
    /// stream's record (its outcome line has the digest).
    pub body_sha256: Option<String>,
    pub records_forwarded: u64,
    pub records_dropped: u64,
    /// Sorted policy paths that matched at least one forwarded value.
    pub fields: Vec<String>,
    /// Their categories, sorted.
    pub categories: Vec<String>,
    /// Keyed hashes of the forwarded records' customer ids, sorted.
    pub subjects: Vec<String>,
    /// A streamed request: what it forwarded is in its outcome line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

impl Disclosure {
    /// Whether it happened in `[since, until]`: RFC 3339 UTC bounds in the ledger's own format,
    /// compared as text (`None` leaves that side open). The audits' one period rule.
    pub fn within(&self, since: Option<&String>, until: Option<&String>) -> bool {
        since.is_none_or(|s| self.time >= *s) && until.is_none_or(|u| self.time <= *u)
    }

    /// A stream's record completed with what its outcome line says was forwarded.
    pub fn complete(&mut self, outcome: &Outcome) {
        let Some(s) = &outcome.stream else {
            return;
        };
        self.body_sha256 = Some(s.body_sha256.clone());
        self.records_forwarded = s.records_forwarded;
        self.records_dropped = s.records_dropped;
        self.fields.clone_from(&s.fields);
        self.categories.clone_from(&s.categories);
        self.subjects.clone_from(&s.subjects);
    }
}

/// What a streamed request forwarded, in its outcome line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamForwarded {
    /// base64url SHA-256 of the bytes actually sent (an aborted stream's partial body too).
    pub body_sha256: String,
    pub records_forwarded: u64,
    pub records_dropped: u64,
    /// Sorted policy paths that matched at least one forwarded value.
    pub fields: Vec<String>,
    pub categories: Vec<String>,
    /// Keyed hashes of the forwarded records' customer ids, sorted, each once.
    pub subjects: Vec<String>,
}

/// A record line as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    #[serde(flatten)]
    pub disclosure: Disclosure,
    pub prev: String,
}

/// An outcome line: what became of record `outcome_of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub seq: u64,
    pub outcome_of: u64,
    /// The partner's status, or 502/504 when it failed or timed out (or the gateway's
    /// refusal status when it stopped a stream at a bad line).
    pub status: u16,
    pub time: String,
    /// Only for a streamed request.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamForwarded>,
    pub prev: String,
}

/// Customers a stream under way forwarded, before its outcome line (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectsLine {
    pub seq: u64,
    /// The seq of the stream's record.
    pub subjects_of: u64,
    /// Keyed hashes of customer ids, sorted, each once.
    pub subjects: Vec<String>,
    pub prev: String,
}

/// `checkpoint` of a checkpoint line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    pub through: u64,
    pub hash: String,
}

/// A checkpoint line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    pub seq: u64,
    pub checkpoint: CheckpointRef,
    /// `null` only when the gateway runs without a signing key.
    pub sig: Option<String>,
    pub prev: String,
}

/// The signed payload of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    pub iss: String,
    pub iat: u64,
    pub through: u64,
    pub hash: String,
}

/// Any line, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLine {
    Record(Box<Record>),
    Outcome(Outcome),
    Checkpoint(CheckpointLine),
    Subjects(SubjectsLine),
}

/// The fields every line has, and what tells the kinds apart.
#[derive(Deserialize)]
struct Probe {
    seq: u64,
    prev: String,
    outcome_of: Option<serde::de::IgnoredAny>,
    checkpoint: Option<serde::de::IgnoredAny>,
    subjects_of: Option<serde::de::IgnoredAny>,
}

impl LedgerLine {
    /// Parses one line (without its newline). The error says what is wrong, for `FILE:LINE`.
    pub fn parse(bytes: &[u8]) -> Result<LedgerLine, String> {
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| format!("not a ledger line: {e}"))?;
        let _ = (&probe.seq, &probe.prev);
        let kinds = (
            probe.outcome_of.is_some(),
            probe.checkpoint.is_some(),
            probe.subjects_of.is_some(),
        );
        let line = match kinds {
            (true, false, false) => serde_json::from_slice(bytes).map(LedgerLine::Outcome),
            (false, true, false) => serde_json::from_slice(bytes).map(LedgerLine::Checkpoint),
            (false, false, true) => serde_json::from_slice(bytes).map(LedgerLine::Subjects),
            (false, false, false) => {
                serde_json::from_slice::<Record>(bytes).map(|r| LedgerLine::Record(Box::new(r)))
            }
            _ => return Err(
                "a line can be only one of a record, an outcome, a checkpoint and a subjects line"
                    .into(),
            ),
        };
        line.map_err(|e| format!("malformed ledger line: {e}"))
    }

    pub fn seq(&self) -> u64 {
        match self {
            LedgerLine::Record(r) => r.seq,
            LedgerLine::Outcome(o) => o.seq,
            LedgerLine::Checkpoint(c) => c.seq,
            LedgerLine::Subjects(s) => s.seq,
        }
    }

    pub fn prev(&self) -> &str {
        match self {
            LedgerLine::Record(r) => &r.prev,
            LedgerLine::Outcome(o) => &o.prev,
            LedgerLine::Checkpoint(c) => &c.prev,
            LedgerLine::Subjects(s) => &s.prev,
        }
    }
}

/// A line ready to append: its bytes end with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLine {
    pub seq: u64,
    pub bytes: Vec<u8>,
    hash: String,
    record: bool,
    checkpoint: bool,
}

/// Where the chain stands: the next seq and the hash of the last line. A line is sealed
/// against this state and [`Chain::commit`]ted only once it is on disk, so a failed write
/// leaves the chain as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    prev: String,
    records_since_checkpoint: u64,
    last_is_checkpoint: bool,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

impl Chain {
    /// An empty ledger.
    pub fn new() -> Chain {
        Chain {
            next_seq: 1,
            prev: ZERO_HASH.to_string(),
            records_since_checkpoint: 0,
            last_is_checkpoint: false,
        }
    }

    /// Continues after `last`, the last complete line on disk.
    pub fn resume(last: &[u8]) -> Result<Chain, String> {
        let line = LedgerLine::parse(last)?;
        Ok(Chain {
            next_seq: line.seq() + 1,
            prev: line_hash(last),
            records_since_checkpoint: 0,
            last_is_checkpoint: matches!(line, LedgerLine::Checkpoint(_)),
        })
    }

    /// Continues after the last complete line of `file` (a whole ledger file's bytes, its
    /// last line complete); `None` for a file without lines. A file that a crash left without
    /// its closing checkpoint still counts the records written since its last one, so the next
    /// checkpoint comes after [`super::CHECKPOINT_EVERY`] records in all, not that many more.
    pub fn resume_file(file: &[u8]) -> Result<Option<Chain>, String> {
        let body = file.strip_suffix(b"\n").unwrap_or(file);
        let mut lines = body.rsplit(|b| *b == b'\n').filter(|l| !l.is_empty());
        let Some(last) = lines.next() else {
            return Ok(None);
        };
        let mut chain = Chain::resume(last)?;
        let mut records = 0;
        for line in std::iter::once(last).chain(lines) {
            match LedgerLine::parse(line) {
                Ok(LedgerLine::Checkpoint(_)) => break,
                Ok(LedgerLine::Record(_)) => records += 1,
                Ok(LedgerLine::Outcome(_) | LedgerLine::Subjects(_)) => {}
                // `audit verify` names it; counting stops there.
                Err(_) => break,
            }
        }
        chain.records_since_checkpoint = records;
        Ok(Some(chain))
    }

    /// Whether `tail`, the bytes after a file's last newline, is a whole line that lost only
    /// its newline (an OS crash wrote the line's page but not the next): it parses, and its
    /// `seq` and `prev` follow this chain (resumed from the line before it). Anything else is
    /// a line cut off before it was acknowledged.
    pub fn continues_with(&self, tail: &[u8]) -> bool {
        LedgerLine::parse(tail).is_ok_and(|l| l.seq() == self.next_seq && l.prev() == self.prev)
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last line ([`super::ZERO_HASH`] for an empty ledger).
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Whether a checkpoint is due: [`super::CHECKPOINT_EVERY`] records since the last one.
    pub fn checkpoint_due(&self) -> bool {
        self.records_since_checkpoint >= super::CHECKPOINT_EVERY
    }

    /// Whether anything was written since the last checkpoint (an empty ledger has nothing
    /// to checkpoint).
    pub fn needs_checkpoint(&self) -> bool {
        self.next_seq > 1 && !self.last_is_checkpoint
    }

    /// The record line for `d`.
    pub fn record(&self, d: &Disclosure) -> SealedLine {
        #[derive(Serialize)]
        struct Out<'a> {
            seq: u64,
            #[serde(flatten)]
            d: &'a Disclosure,
            prev: &'a str,
        }
        let out = Out {
            seq: self.next_seq,
            d,
            prev: &self.prev,
        };
        self.seal(to_json(&out), true, false)
    }

    /// The outcome line of record `outcome_of` (with what a stream forwarded).
    pub fn outcome(
        &self,
        outcome_of: u64,
        status: u16,
        time: &str,
        stream: Option<&StreamForwarded>,
    ) -> SealedLine {
        let out = Outcome {
            seq: self.next_seq,
            outcome_of,
            status,
            time: time.to_string(),
            stream: stream.cloned(),
            prev: self.prev.clone(),
        };
        self.seal(to_json(&out), false, false)
    }

    /// A subjects line of the stream recorded at `subjects_of`: `subjects` are keyed hashes,
    /// sorted, each once.
    pub fn subjects(&self, subjects_of: u64, subjects: &[String]) -> SealedLine {
        #[derive(Serialize)]
        struct Out<'a> {
            seq: u64,
            subjects_of: u64,
            subjects: &'a [String],
            prev: &'a str,
        }
        let out = Out {
            seq: self.next_seq,
            subjects_of,
            subjects,
            prev: &self.prev,
        };
        self.seal(to_json(&out), false, false)
    }

    /// A checkpoint over everything so far, signed by `signer` (unsigned, `"sig": null`,
    /// only when the gateway runs without a signing key).
    pub fn checkpoint(
        &self,
        signer: Option<&TokenSigner>,
        iat: u64,
    ) -> Result<SealedLine, TagError> {
        let through = self.next_seq - 1;
        let sig = match signer {
            Some(signer) => Some(signer.sign_claims(
                CHECKPOINT_TYP,
                &CheckpointClaims {
                    iss: signer.issuer().to_string(),
                    iat,
                    through,
                    hash: self.prev.clone(),
                },
            )?),
            None => None,
        };
        let out = CheckpointLine {
            seq: self.next_seq,
            checkpoint: CheckpointRef {
                through,
                hash: self.prev.clone(),
            },
            sig,
            prev: self.prev.clone(),
        };
        Ok(self.seal(to_json(&out), false, true))
    }

    /// Advances past `line`, which is now on disk.
    pub fn commit(&mut self, line: &SealedLine) {
        debug_assert_eq!(line.seq, self.next_seq);
        self.next_seq = line.seq + 1;
        self.prev = line.hash.clone();
        self.last_is_checkpoint = line.checkpoint;
        if line.checkpoint {
            self.records_since_checkpoint = 0;
        } else if line.record {
            self.records_since_checkpoint += 1;
        }
    }

    fn seal(&self, json: Vec<u8>, record: bool, checkpoint: bool) -> SealedLine {
        let hash = line_hash(&json);
        let mut bytes = json;
        bytes.push(b'\n');
        SealedLine {
            seq: self.next_seq,
            bytes,
            hash,
            record,
            checkpoint,
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_vec(value).expect("ledger lines serialize")
}
