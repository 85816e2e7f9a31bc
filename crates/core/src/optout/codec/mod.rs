/*!
The byte formats of the embedded opt-out store's two files, as pure functions from bytes to
bytes: the shell (`src/optout/store`) reads and writes the files, fsyncs and renames them;
everything here is unit-tested on byte slices.

- [`journal`]: the append-only change log. A 24-byte header (magic `PGOPTJNL`, format version,
  the generation of the snapshot it follows, CRC-32 of the header), then frames:
  `len u32 | len ^ 0x50474f4a u32 | crc32(payload) u32 | payload`, payload `op u8 | id_len u16 |
  id | n u16 | n × (scope_len u8 | scope)`, op 1 = add, 2 = remove these, 3 = remove all.
  Replaying an op twice gives the same state, so replay is safe even if it overlapped.
- [`snapshot`]: the whole set at one generation. Magic `PGOPTSNP`, format version, generation,
  the scope table, the customer count and id byte count, then `id_len u16 | id | n u16 |
  n scope indices u16` per customer, then a CRC-32 of everything before it and the end magic
  `PGOPTEND`.

All integers are little-endian. A customer id cannot contain bytes below 0x20, so a frame
header (whose length has a zero high byte) can never be forged inside an id.
*/

use super::{InvalidCustomerId, OptOutError};

pub mod journal;
pub mod snapshot;

/// The format version both files carry.
pub const FORMAT_VERSION: u32 = 1;

/// Why bytes are not a valid journal or snapshot (or a change cannot be written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated at byte {at} while reading {what}")]
    Truncated { at: usize, what: &'static str },
    #[error("{what} at byte {at} is not UTF-8")]
    NotUtf8 { at: usize, what: &'static str },
    #[error("unsupported {file} format version {version}")]
    Version { file: &'static str, version: u32 },
    #[error("bad header")]
    BadHeader,
    #[error("not an opt-out snapshot")]
    NotSnapshot,
    #[error("it is truncated or not an opt-out snapshot")]
    TruncatedSnapshot,
    #[error("checksum mismatch")]
    Checksum,
    #[error("unknown operation {0}")]
    UnknownOperation(u8),
    #[error("a change with no scopes")]
    NoScopes,
    #[error("{count} unexpected bytes after {after}")]
    TrailingBytes { count: usize, after: &'static str },
    #[error("{0}")]
    Scope(String),
    #[error("opt-out scope {0} is too long")]
    ScopeTooLong(String),
    #[error("too many scopes in one change")]
    TooManyScopes,
    #[error("too many distinct opt-out scopes ({0})")]
    TooManyDistinctScopes(usize),
    #[error("scope index {index} out of range at byte {at}")]
    ScopeIndex { index: usize, at: usize },
    #[error("cannot write a customer to a snapshot (an id longer than the limit, or no scopes)")]
    Unwritable,
    #[error("snapshot has {written} customers, expected {expected}")]
    CustomerCount { written: u64, expected: u64 },
    #[error(transparent)]
    CustomerId(#[from] InvalidCustomerId),
    #[error("customer at byte {at}: {source}")]
    Customer { at: usize, source: OptOutError },
    #[error(transparent)]
    Set(#[from] OptOutError),
    #[error("record at byte {at}: {source}")]
    Record { at: usize, source: Box<CodecError> },
    #[error("at byte {at}: a damaged record is followed by valid ones (at byte {next})")]
    DamagedRecord { at: usize, next: usize },
    #[error(
        "at byte {at}: the last record is whole but does not check out (a write a crash cut \
         short is incomplete, or has a sector of zeros): it changed after it was written, and \
         an acknowledged change may be lost. Restore the store \
         from a backup (or `optouts import` the customers' latest choices); only if you know \
         that change was never acknowledged, cut the journal to {at} bytes"
    )]
    DamagedLastRecord { at: usize },
}

/// A little-endian reader over a byte slice whose errors say what was being read.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(CodecError::Truncated { at: self.pos, what })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, CodecError> {
        let at = self.pos;
        std::str::from_utf8(self.take(n, what)?).map_err(|_| CodecError::NotUtf8 { at, what })
    }

    /// A scope written as `len u8 | text`.
    fn scope(&mut self) -> Result<super::Scope, CodecError> {
        let len = self.u8("scope length")?;
        let text = self.str(usize::from(len), "scope")?;
        super::Scope::parse(text).map_err(CodecError::Scope)
    }

    /// Fails if bytes are left after `after`.
    fn finish(&self, after: &'static str) -> Result<(), CodecError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            count => Err(CodecError::TrailingBytes { count, after }),
        }
    }
}

/// Appends a scope as `len u8 | text`.
fn put_scope(out: &mut Vec<u8>, scope: &super::Scope) -> Result<(), CodecError> {
    let len = u8::try_from(scope.as_str().len())
        .map_err(|_| CodecError::ScopeTooLong(scope.to_string()))?;
    out.push(len);
    out.extend_from_slice(scope.as_str().as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
