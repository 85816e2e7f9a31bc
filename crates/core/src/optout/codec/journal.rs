//! The journal's header, frames and change records, and replaying a journal into a set
//! (format in the [parent module](super)).

use super::{put_scope, CodecError, Cursor, FORMAT_VERSION};
use crate::optout::{validate_customer_id, OptOutError, OptOutSet, Scope};

pub const MAGIC: &[u8; 8] = b"PGOPTJNL";
/// Length of the journal's header; frames start here.
pub const HEADER_LEN: usize = 24;
/// Length of a frame's header (`len`, `len ^ check`, CRC-32).
pub const FRAME_HEADER_LEN: usize = 12;
const LEN_CHECK: u32 = 0x5047_4f4a;
/// Largest frame payload: one change to one customer.
pub const MAX_FRAME: usize = 1 << 20;

/// What a change does to one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Adds the scopes.
    Add = 1,
    /// Removes the scopes.
    Remove = 2,
    /// Removes every scope (the change lists none).
    RemoveAll = 3,
}

/// One change, as written in a frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    pub op: Op,
    pub id: &'a str,
    pub scopes: Vec<Scope>,
}

impl Change<'_> {
    /// Applies the change to `set`. Applying it twice gives the same set.
    pub fn apply(&self, set: &mut OptOutSet) -> Result<(), OptOutError> {
        match self.op {
            Op::Add => {
                set.insert(self.id, &self.scopes)?;
            }
            Op::Remove => {
                set.remove(self.id, Some(&self.scopes));
            }
            Op::RemoveAll => {
                set.remove(self.id, None);
            }
        }
        Ok(())
    }
}

/// The header of a new journal that follows snapshot `generation`.
pub fn header(generation: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header[..20]);
    header[20..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The generation of the snapshot the journal `bytes` follows.
pub fn read_header(bytes: &[u8]) -> Result<u64, CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated {
            at: bytes.len(),
            what: "the journal header",
        });
    }
    let mut c = Cursor::new(&bytes[..HEADER_LEN]);
    let magic = c.take(8, "magic")?;
    let version = c.u32("format version")?;
    let generation = c.u64("generation")?;
    let stored = c.u32("header checksum")?;
    if magic != MAGIC || crc32fast::hash(&bytes[..20]) != stored {
        return Err(CodecError::BadHeader);
    }
    if version != FORMAT_VERSION {
        return Err(CodecError::Version {
            file: "journal",
            version,
        });
    }
    Ok(generation)
}

/// `payload` framed for appending.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&(len ^ LEN_CHECK).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The three words of the frame header at `pos`: `(len, len ^ LEN_CHECK, crc)` as stored.
fn header_words(bytes: &[u8], pos: usize) -> Option<(u32, u32, u32)> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER_LEN)?)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    Some((word(0), word(4), word(8)))
}

/// The payload of `len` bytes starting at `start`, if the length is allowed and it is all there.
fn payload_of(bytes: &[u8], start: usize, len: u32) -> Option<&[u8]> {
    if len as usize > MAX_FRAME {
        return None;
    }
    bytes.get(start..start.checked_add(len as usize)?)
}

/// The frame starting at `pos`, if it is complete and checks out: `(payload, end)`.
pub fn frame_at(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let (len, check, crc) = header_words(bytes, pos)?;
    if len ^ LEN_CHECK != check {
        return None;
    }
    let start = pos + FRAME_HEADER_LEN;
    let payload = payload_of(bytes, start, len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + payload.len()))
}

/// Disks write whole sectors of this many bytes (or multiples): what a power loss did not get
/// to disk reads back as whole sectors of zeros (or the zeros beyond the old end of the file).
const SECTOR: usize = 512;

/// Is the frame at `pos` (which [`frame_at`] refused) a record that was written whole and
/// changed afterwards? Its payload is all there, no sector-aligned stretch of the frame reads
/// as zeros, and either its header checks out (only the checksum fails), or the header's two
/// length words disagree yet one of them leads to a payload that matches the checksum and reads
/// as a change. An interrupted append leaves neither: a killed process's write stops short (the
/// payload is not all there), and a power loss leaves whole sectors of zeros where the bytes did
/// not reach the disk. So the change it held may have been acknowledged.
fn damaged_whole(bytes: &[u8], pos: usize) -> bool {
    let Some((len, check, crc)) = header_words(bytes, pos) else {
        return false;
    };
    let start = pos + FRAME_HEADER_LEN;
    let written = |payload: &[u8]| !zeroed_sector(bytes, pos, start + payload.len());
    if len ^ LEN_CHECK == check {
        return payload_of(bytes, start, len).is_some_and(written);
    }
    [len, check ^ LEN_CHECK]
        .into_iter()
        .filter_map(|len| payload_of(bytes, start, len))
        .any(|payload| {
            written(payload) && crc32fast::hash(payload) == crc && decode_change(payload).is_ok()
        })
}

/// Does `bytes[from..to]` hold a stretch that is all zeros and is the whole of that range's
/// share of one [`SECTOR`]-aligned sector (offsets in `bytes` are offsets in the file)?
fn zeroed_sector(bytes: &[u8], from: usize, to: usize) -> bool {
    let to = to.min(bytes.len());
    let mut at = from;
    while at < to {
        let next = (at / SECTOR + 1) * SECTOR;
        if bytes[at..next.min(to)].iter().all(|&b| b == 0) {
            return true;
        }
        at = next;
    }
    false
}

/// The payload of a change (frame it with [`frame`]).
pub fn encode_change(op: Op, id: &str, scopes: &[Scope]) -> Result<Vec<u8>, CodecError> {
    validate_customer_id(id)?;
    let mut payload = Vec::with_capacity(5 + id.len() + scopes.len() * 24);
    payload.push(op as u8);
    payload.extend_from_slice(&(id.len() as u16).to_le_bytes());
    payload.extend_from_slice(id.as_bytes());
    let n = u16::try_from(scopes.len()).map_err(|_| CodecError::TooManyScopes)?;
    payload.extend_from_slice(&n.to_le_bytes());
    for scope in scopes {
        put_scope(&mut payload, scope)?;
    }
    if payload.len() > MAX_FRAME {
        return Err(CodecError::TooManyScopes);
    }
    Ok(payload)
}

/// Reads a change back from a frame's payload.
pub fn decode_change(payload: &[u8]) -> Result<Change<'_>, CodecError> {
    let mut c = Cursor::new(payload);
    let op = match c.u8("operation")? {
        1 => Op::Add,
        2 => Op::Remove,
        3 => Op::RemoveAll,
        other => return Err(CodecError::UnknownOperation(other)),
    };
    let id_len = c.u16("id length")?;
    let id = c.str(usize::from(id_len), "customer id")?;
    validate_customer_id(id)?;
    let n = c.u16("scope count")?;
    let scopes = (0..n).map(|_| c.scope()).collect::<Result<Vec<_>, _>>()?;
    c.finish("the change")?;
    if op != Op::RemoveAll && scopes.is_empty() {
        return Err(CodecError::NoScopes);
    }
    Ok(Change { op, id, scopes })
}

/// Replays the frames of the journal `bytes` (header already checked with [`read_header`])
/// into `set`. Returns the length of the valid part: bytes after it are a torn tail, a write
/// that was never acknowledged. A damaged frame is a torn tail only if no valid frame follows
/// it anywhere in the rest of the file and it is not whole (see `damaged_whole`); otherwise
/// the journal is corrupted.
pub fn replay(bytes: &[u8], set: &mut OptOutSet) -> Result<usize, CodecError> {
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let Some((payload, end)) = frame_at(bytes, pos) else {
            if let Some(next) = (pos + 1..bytes.len()).find(|&q| frame_at(bytes, q).is_some()) {
                return Err(CodecError::DamagedRecord { at: pos, next });
            }
            if damaged_whole(bytes, pos) {
                return Err(CodecError::DamagedLastRecord { at: pos });
            }
            break;
        };
        let record = |source: CodecError| CodecError::Record {
            at: pos,
            source: Box::new(source),
        };
        let change = decode_change(payload).map_err(record)?;
        change.apply(set).map_err(|e| record(CodecError::Set(e)))?;
        pos = end;
    }
    Ok(pos)
}
