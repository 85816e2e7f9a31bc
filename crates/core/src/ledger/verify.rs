//! Checking a ledger: the chain across files and the checkpoint signatures.
//!
//! [`ChainVerifier`] is fed every line in chain order and stops at the first break, naming the
//! line to blame. When a line's `prev` does not match the line before it, either that earlier
//! line was edited or this one was: the verifier looks one line further to tell which (an
//! edited line breaks both of its links, an edited predecessor only one). A signed checkpoint
//! written byte for byte as the gateway writes it vouches for itself: the line after it is
//! named at once.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Validation;

use super::line::{CheckpointClaims, CheckpointLine, LedgerLine, SubjectsLine, CHECKPOINT_TYP};
use super::{line_hash, CHECKPOINT_EVERY, ZERO_HASH};
use crate::jose::{self, PublicKey, DATA_USE_ALGORITHMS};

/// Where the chain breaks, printed as `FILE:LINE: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct Break {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

/// What a verified ledger holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub records: u64,
    pub outcomes: u64,
    pub checkpoints: u64,
    /// Subjects lines of streams under way.
    pub subject_lines: u64,
    /// Checkpoints whose signature was checked against the key set.
    pub signatures_verified: u64,
    /// The last verified checkpoint's seq (0: none): it and every line before it are covered
    /// by its signature. Lines after it are hash-chained only: whoever can write the files can
    /// rewrite them without a key.
    pub signed_through: u64,
    /// The seq and hash of the last line.
    pub last_seq: u64,
    pub head: String,
    /// Whether the last line is a checkpoint (a clean shutdown).
    pub ends_with_checkpoint: bool,
    /// Records no outcome line names (yet): requests under way, partners no byte reached, or
    /// an outcome the ledger could not write (a full disk between record and outcome).
    pub without_outcome: u64,
}

#[derive(Debug, Clone)]
struct Loc {
    file: String,
    line: u64,
}

/// A `prev` mismatch between `earlier` and `later`, waiting for the next line to tell which
/// of the two was edited.
#[derive(Debug)]
struct Pending {
    earlier: Loc,
    later: Loc,
}

/// Verifies a chain fed line by line (see the module docs).
pub struct ChainVerifier {
    keys: Option<Vec<PublicKey>>,
    expected_seq: u64,
    prev_hash: String,
    last: Option<Loc>,
    /// Whether the last line is a checkpoint whose signature verified, written byte for byte
    /// as the gateway writes it: every byte of it is then bound by the signature (`seq` and
    /// `prev` by the signed `through` and `hash`), so a broken link after it is the later
    /// line's.
    last_vouched: bool,
    pending: Option<Pending>,
    summary: Summary,
    /// Every record whose outcome line has not come yet, and whether it is a stream's (what a
    /// subjects line may name).
    awaiting: std::collections::HashMap<u64, bool>,
    /// Records since the last checkpoint.
    unchecked: u64,
}

impl ChainVerifier {
    /// With `jwks_json`, every checkpoint signature is checked against it, and a checkpoint
    /// without one is a break.
    pub fn new(jwks_json: Option<&str>) -> Result<ChainVerifier, String> {
        let keys = match jwks_json {
            Some(json) => Some(
                jose::parse_jwks(json, DATA_USE_ALGORITHMS).map_err(|e| format!("key set: {e}"))?,
            ),
            None => None,
        };
        Ok(ChainVerifier {
            keys,
            expected_seq: 1,
            prev_hash: ZERO_HASH.to_string(),
            last: None,
            last_vouched: false,
            pending: None,
            summary: Summary::default(),
            awaiting: std::collections::HashMap::new(),
            unchecked: 0,
        })
    }

    /// Checks the next line (`bytes` without its newline), line `line` of `file`.
    pub fn line(&mut self, file: &str, line: u64, bytes: &[u8]) -> Result<(), Break> {
        let here = Loc {
            file: file.to_string(),
            line,
        };
        self.check_file_end(&here)?;
        if bytes.ends_with(b"\r") {
            // The gateway ends lines with `\n` alone: a file converted to CRLF is named at its
            // first line, not where the hashes first disagree.
            return Err(at(
                &here,
                "edited: it ends with a carriage return (CRLF line ends), which the gateway never writes",
            ));
        }
        let parsed = LedgerLine::parse(bytes).map_err(|reason| self.blame(&here, reason))?;
        let seq = parsed.seq();
        if seq != self.expected_seq {
            let reason = format!(
                "seq {seq} where {} was expected: a line was removed, inserted or moved here",
                self.expected_seq
            );
            return Err(self.blame(&here, reason));
        }
        let hash = line_hash(bytes);
        if parsed.prev() != self.prev_hash {
            // A signed checkpoint that vouches for itself records the true hash of the line
            // before it: that line is the edited one.
            if let (LedgerLine::Checkpoint(c), None, Some(earlier)) =
                (&parsed, &self.pending, &self.last)
            {
                if self.vouches(c, bytes) {
                    return Err(at(
                        earlier,
                        format!(
                            "edited: its hash is not the one the signed checkpoint {}:{} records",
                            here.file, here.line
                        ),
                    ));
                }
            }
            if let Some(p) = self.pending.take() {
                return Err(at(&p.later, format!(
                    "edited: its prev does not match {}:{} and its hash does not match the prev of {}:{}",
                    p.earlier.file, p.earlier.line, here.file, here.line
                )));
            }
            match self.last.take() {
                None => {
                    return Err(at(
                        &here,
                        "the first line's prev is not 64 zeros: the chain does not start here",
                    ))
                }
                // A signed checkpoint written as the gateway writes it cannot have been
                // edited: this line is the one that does not belong.
                Some(earlier) if self.last_vouched => {
                    return Err(at(
                        &here,
                        format!(
                            "its prev is not the hash of {}:{}, a signed checkpoint: this line does not follow it (a line from another chain, or its prev edited)",
                            earlier.file, earlier.line
                        ),
                    ))
                }
                Some(earlier) => {
                    self.pending = Some(Pending {
                        earlier,
                        later: here.clone(),
                    })
                }
            }
        } else if let Some(p) = self.pending.take() {
            return Err(edited(&p));
        }
        self.check_kind(&parsed, &here)?;
        self.last_vouched = matches!(&parsed, LedgerLine::Checkpoint(c)
            if self.summary.signed_through == seq
                && serde_json::to_vec(c).is_ok_and(|canonical| canonical == bytes));
        self.expected_seq = seq + 1;
        self.prev_hash = hash;
        self.last = Some(here);
        let s = &mut self.summary;
        s.lines += 1;
        s.last_seq = seq;
        s.ends_with_checkpoint = matches!(parsed, LedgerLine::Checkpoint(_));
        match parsed {
            LedgerLine::Record(_) => s.records += 1,
            LedgerLine::Outcome(_) => s.outcomes += 1,
            LedgerLine::Checkpoint(_) => s.checkpoints += 1,
            LedgerLine::Subjects(_) => s.subject_lines += 1,
        }
        Ok(())
    }

    /// A last line without its newline: cut off by a crash (the gateway removes it at start)
    /// or by truncation.
    pub fn torn(&mut self, file: &str, line: u64) -> Break {
        let here = Loc {
            file: file.to_string(),
            line,
        };
        self.blame(
            &here,
            "incomplete line (no newline): the file was cut here (a gateway restart removes a line a crash cut off)".into(),
        )
    }

    /// Ends the chain: a mismatch still pending blames the earlier line.
    pub fn finish(mut self) -> Result<Summary, Break> {
        if let Some(p) = self.pending.take() {
            return Err(edited(&p));
        }
        self.summary.head = self.prev_hash;
        self.summary.without_outcome = self.awaiting.len() as u64;
        Ok(self.summary)
    }

    /// A break at `here`, unless an earlier mismatch is pending (then that one, which comes first).
    fn blame(&mut self, here: &Loc, reason: String) -> Break {
        match self.pending.take() {
            Some(p) => edited(&p),
            None => at(here, reason),
        }
    }

    fn check_kind(&mut self, parsed: &LedgerLine, here: &Loc) -> Result<(), Break> {
        match parsed {
            LedgerLine::Outcome(o) if o.outcome_of >= o.seq || o.outcome_of == 0 => Err(at(
                here,
                format!(
                    "outcome of record {} which does not precede it",
                    o.outcome_of
                ),
            )),
            LedgerLine::Subjects(l) => self.check_subjects(l, here),
            LedgerLine::Record(r) => {
                self.awaiting.insert(r.seq, r.disclosure.stream);
                self.unchecked += 1;
                if self.keys.is_some() && self.unchecked > CHECKPOINT_EVERY {
                    return Err(at(
                        here,
                        format!("more than {CHECKPOINT_EVERY} records since the last checkpoint: the gateway signs one every {CHECKPOINT_EVERY} (were checkpoints removed?)"),
                    ));
                }
                Ok(())
            }
            LedgerLine::Outcome(o) => match self.awaiting.remove(&o.outcome_of) {
                Some(_) => Ok(()),
                None => Err(at(
                    here,
                    format!(
                        "outcome of line {}, which is no record awaiting its outcome (not a record, or its outcome came already)",
                        o.outcome_of
                    ),
                )),
            },
            LedgerLine::Checkpoint(c) => {
                self.check_checkpoint(c, here)?;
                self.unchecked = 0;
                Ok(())
            }
        }
    }

    /// With the key set, a file the chain goes on from (to `here`, in another file) must end
    /// with a checkpoint: the gateway ends every file it rotates with one, so a file ending
    /// without one had its checkpoint removed (and the chain recomputed), which only the
    /// signature could have shown.
    fn check_file_end(&mut self, here: &Loc) -> Result<(), Break> {
        let Some(last) = self.last.as_ref().filter(|l| l.file != here.file) else {
            return Ok(());
        };
        if self.keys.is_none() || self.summary.ends_with_checkpoint {
            return Ok(());
        }
        let last = last.clone();
        Err(self.blame(
            &last,
            format!(
                "the file ends without a checkpoint, but the chain goes on in {}: the gateway ends every file it rotates with one (was it removed?)",
                here.file
            ),
        ))
    }

    /// A subjects line names a stream under way (recorded before it, its outcome not yet
    /// written) and lists keyed ids as the gateway writes them: sorted, each once, lowercase
    /// hex SHA-256 size.
    fn check_subjects(&self, l: &SubjectsLine, here: &Loc) -> Result<(), Break> {
        if self.awaiting.get(&l.subjects_of) != Some(&true) {
            return Err(at(
                here,
                format!(
                    "subjects of record {}, which is not a stream under way before it",
                    l.subjects_of
                ),
            ));
        }
        let keyed =
            |s: &String| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if l.subjects.is_empty() || !l.subjects.iter().all(keyed) {
            return Err(at(here, "subjects line without keyed customer ids"));
        }
        if !l.subjects.windows(2).all(|w| w[0] < w[1]) {
            return Err(at(here, "subjects not sorted or not each once"));
        }
        Ok(())
    }

    fn check_checkpoint(&mut self, c: &CheckpointLine, here: &Loc) -> Result<(), Break> {
        if c.checkpoint.through + 1 != c.seq || c.checkpoint.hash != c.prev {
            return Err(at(
                here,
                "checkpoint does not cover the line before it (through/hash)",
            ));
        }
        let claims = match (&self.keys, &c.sig) {
            (Some(keys), Some(sig)) => {
                let claims = verify_checkpoint_sig(keys, sig).map_err(|e| at(here, e))?;
                self.summary.signatures_verified += 1;
                self.summary.signed_through = c.seq;
                claims
            }
            (Some(_), None) => return Err(at(here, "checkpoint is not signed")),
            (None, Some(sig)) => unverified_claims(sig).map_err(|e| at(here, e))?,
            (None, None) => return Ok(()),
        };
        if claims.through != c.checkpoint.through || claims.hash != c.checkpoint.hash {
            return Err(at(
                here,
                "the signed checkpoint names another line than this line says",
            ));
        }
        Ok(())
    }
}

impl ChainVerifier {
    /// Whether a checkpoint line vouches for itself: its signature verifies with the key set,
    /// it names the line before it, and its bytes are exactly as the gateway writes them.
    fn vouches(&self, c: &CheckpointLine, bytes: &[u8]) -> bool {
        let (Some(keys), Some(sig)) = (&self.keys, &c.sig) else {
            return false;
        };
        let covers = c.checkpoint.through + 1 == c.seq && c.checkpoint.hash == c.prev;
        covers
            && serde_json::to_vec(c).is_ok_and(|canonical| canonical == bytes)
            && verify_checkpoint_sig(keys, sig).is_ok_and(|claims| {
                claims.through == c.checkpoint.through && claims.hash == c.checkpoint.hash
            })
    }
}

fn at(loc: &Loc, reason: impl Into<String>) -> Break {
    Break {
        file: loc.file.clone(),
        line: loc.line,
        reason: reason.into(),
    }
}

fn edited(p: &Pending) -> Break {
    at(
        &p.earlier,
        format!(
            "edited: its hash is not the prev recorded by {}:{}",
            p.later.file, p.later.line
        ),
    )
}

/// Checks a checkpoint signature with the key its `kid` names and returns its claims.
pub fn verify_checkpoint_sig(keys: &[PublicKey], sig: &str) -> Result<CheckpointClaims, String> {
    let header = jsonwebtoken::decode_header(sig)
        .map_err(|e| format!("checkpoint signature is malformed: {e}"))?;
    if header.typ.as_deref() != Some(CHECKPOINT_TYP) || header.crit.is_some() {
        return Err(format!(
            "checkpoint signature is not of type {CHECKPOINT_TYP}"
        ));
    }
    let kid = header
        .kid
        .as_deref()
        .ok_or("checkpoint signature has no kid")?;
    let key = keys.iter().find(|k| k.kid() == Some(kid)).ok_or_else(|| {
        format!("checkpoint signed by key {kid:?}, which the key set does not hold")
    })?;
    if header.alg != key.algorithm() {
        return Err("checkpoint signature algorithm does not match its key".into());
    }
    let mut validation = Validation::new(key.algorithm());
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<CheckpointClaims>(sig, key.decoding_key(), &validation)
        .map(|d| d.claims)
        .map_err(|e| format!("checkpoint signature does not verify: {e}"))
}

/// The claims of a checkpoint signature, unchecked (no key set given).
fn unverified_claims(sig: &str) -> Result<CheckpointClaims, String> {
    let payload = sig
        .split('.')
        .nth(1)
        .ok_or("checkpoint signature is not a compact JWS")?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "checkpoint signature payload is not base64url")?;
    serde_json::from_slice(&json).map_err(|e| format!("checkpoint signature payload: {e}"))
}
