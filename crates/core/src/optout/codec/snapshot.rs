//! A snapshot of the whole set: written from a set (plus, for an import, a second set merged
//! into it) as a stream of chunks, and read back into a set (format in the
//! [parent module](super)).

use std::collections::HashMap;

use super::{put_scope, CodecError, Cursor, FORMAT_VERSION};
use crate::optout::{OptOutSet, Scope, ScopeId, SetBuilder, MAX_ID_LEN};

pub const MAGIC: &[u8; 8] = b"PGOPTSNP";
pub const END: &[u8; 8] = b"PGOPTEND";
/// The trailer: CRC-32 of everything before it, then [`END`].
const TRAILER_LEN: usize = 12;

/// Writes the snapshot of `set` merged with `extra` at `generation`, handing each chunk to
/// `emit` in order. Returns the snapshot's length in bytes.
pub fn encode<E: From<CodecError>>(
    generation: u64,
    set: &OptOutSet,
    extra: Option<&OptOutSet>,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let table = Table::merged(set, extra)?;
    let mut out = Encoder::new(emit);
    out.header(generation, &table)?;
    let mut idx: Vec<u16> = Vec::new();
    for (id, scopes) in set.iter() {
        idx.clear();
        idx.extend(scopes.ids().iter().map(|s| s.index() as u16));
        if let Some(more) = extra.and_then(|e| e.get_ids(id)) {
            idx.extend(more.iter().map(|s| table.extra_map[s.index()]));
            idx.sort_unstable();
            idx.dedup();
        }
        out.entry(id, &idx)?;
    }
    for (id, scopes) in extra.iter().flat_map(|e| e.iter()) {
        if !set.contains(id) {
            idx.clear();
            idx.extend(scopes.ids().iter().map(|s| table.extra_map[s.index()]));
            out.entry(id, &idx)?;
        }
    }
    out.finish(table.customers)
}

/// The scope table of `set` merged with `extra`, and the counts the header announces.
struct Table {
    scopes: Vec<Scope>,
    /// `extra`'s scope ids → indices in `scopes`.
    extra_map: Vec<u16>,
    customers: u64,
    id_bytes: u64,
}

impl Table {
    fn merged(set: &OptOutSet, extra: Option<&OptOutSet>) -> Result<Table, CodecError> {
        let mut table = Table {
            scopes: set.interned_scopes().to_vec(),
            extra_map: Vec::new(),
            customers: set.len() as u64,
            id_bytes: set.id_bytes() as u64,
        };
        let Some(extra) = extra else {
            return Ok(table);
        };
        let mut index: HashMap<Scope, usize> = table
            .scopes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        for scope in extra.interned_scopes() {
            let next = index.len();
            let i = *index.entry(scope.clone()).or_insert_with(|| {
                table.scopes.push(scope.clone());
                next
            });
            let i = u16::try_from(i).map_err(|_| CodecError::TooManyDistinctScopes(i))?;
            table.extra_map.push(i);
        }
        if table.scopes.len() >= usize::from(u16::MAX) {
            return Err(CodecError::TooManyDistinctScopes(table.scopes.len()));
        }
        for (id, _) in extra.iter().filter(|(id, _)| !set.contains(id)) {
            table.customers += 1;
            table.id_bytes += id.len() as u64;
        }
        Ok(table)
    }
}

/// Emits chunks while keeping the running checksum, length and customer count.
struct Encoder<'a, E> {
    emit: &'a mut dyn FnMut(&[u8]) -> Result<(), E>,
    crc: crc32fast::Hasher,
    len: u64,
    written: u64,
}

impl<'a, E: From<CodecError>> Encoder<'a, E> {
    fn new(emit: &'a mut dyn FnMut(&[u8]) -> Result<(), E>) -> Self {
        Encoder {
            emit,
            crc: crc32fast::Hasher::new(),
            len: 0,
            written: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        (self.emit)(bytes)
    }

    fn header(&mut self, generation: u64, table: &Table) -> Result<(), E> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&generation.to_le_bytes());
        buf.extend_from_slice(&(table.scopes.len() as u32).to_le_bytes());
        for scope in &table.scopes {
            put_scope(&mut buf, scope)?;
        }
        buf.extend_from_slice(&table.customers.to_le_bytes());
        buf.extend_from_slice(&table.id_bytes.to_le_bytes());
        self.put(&buf)
    }

    fn entry(&mut self, id: &str, scopes: &[u16]) -> Result<(), E> {
        let mut buf = [0u8; 2 + MAX_ID_LEN + 2];
        let id_len = id.len();
        if id_len > MAX_ID_LEN || scopes.is_empty() {
            return Err(CodecError::Unwritable.into());
        }
        buf[..2].copy_from_slice(&(id_len as u16).to_le_bytes());
        buf[2..2 + id_len].copy_from_slice(id.as_bytes());
        buf[2 + id_len..4 + id_len].copy_from_slice(&(scopes.len() as u16).to_le_bytes());
        self.put(&buf[..4 + id_len])?;
        for s in scopes {
            self.put(&s.to_le_bytes())?;
        }
        self.written += 1;
        Ok(())
    }

    fn finish(mut self, expected: u64) -> Result<u64, E> {
        if self.written != expected {
            return Err(CodecError::CustomerCount {
                written: self.written,
                expected,
            }
            .into());
        }
        let crc = self.crc.clone().finalize();
        self.put(&crc.to_le_bytes())?;
        self.put(END)?;
        Ok(self.len)
    }
}

/// Reads a whole snapshot: the set and its generation.
pub fn decode(bytes: &[u8]) -> Result<(OptOutSet, u64), CodecError> {
    let body_len = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|&n| n >= 8 && bytes.ends_with(END))
        .ok_or(CodecError::TruncatedSnapshot)?;
    let (body, trailer) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32fast::hash(body) != stored {
        return Err(CodecError::Checksum);
    }
    let mut c = Cursor::new(body);
    if c.take(8, "magic")? != MAGIC {
        return Err(CodecError::NotSnapshot);
    }
    let version = c.u32("format version")?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version {
            file: "snapshot",
            version,
        });
    }
    let generation = c.u64("generation")?;
    let n_scopes = c.u32("scope count")? as usize;
    let scopes = (0..n_scopes)
        .map(|_| c.scope())
        .collect::<Result<Vec<_>, _>>()?;
    let set = customers(&mut c, &scopes)?;
    Ok((set, generation))
}

/// The customer count, id byte count and customers that follow the scope table.
fn customers(c: &mut Cursor<'_>, scopes: &[Scope]) -> Result<OptOutSet, CodecError> {
    let customers = c.u64("customer count")?;
    let id_bytes = c.u64("id byte count")?;
    // Counts come from the file: never reserve more than the file could hold.
    let size = c.bytes.len();
    let mut builder = SetBuilder::new(
        scopes,
        (customers as usize).min(size / 5),
        (id_bytes as usize).min(size),
    )?;
    let mut buf: Vec<ScopeId> = Vec::new();
    for _ in 0..customers {
        let at = c.pos;
        let id_len = c.u16("id length")?;
        let id = c.str(usize::from(id_len), "customer id")?;
        let n = c.u16("scope count")?;
        buf.clear();
        for _ in 0..n {
            let index = usize::from(c.u16("scope index")?);
            let sid = ScopeId::from_index(index)
                .filter(|_| index < scopes.len())
                .ok_or(CodecError::ScopeIndex { index, at })?;
            buf.push(sid);
        }
        builder
            .push(id, &buf)
            .map_err(|source| CodecError::Customer { at, source })?;
    }
    c.finish("the last customer")?;
    Ok(builder.finish()?)
}
