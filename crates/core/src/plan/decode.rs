/*!
Undoing a request body's `Content-Encoding` (`gzip`, `deflate`, `br`) on routes that list it in
`decode:`, before the body is filtered, in memory and bounded: decoding stops one byte past
`limits.max_decoded_bytes` (a decompression bomb is 413, whatever its compressed size), and a
stream that is corrupt, truncated or followed by anything else is 400. The partner receives the
decoded, filtered body, without `content-encoding`.
*/
use std::borrow::Cow;
use std::io::Read;

use crate::policy::{ContentCoding, Limits};
use crate::{Refusal, RefusalKind};

/// `body` with `coding` undone (borrowed as is without one).
pub(super) fn decode_body<'a>(
    coding: Option<ContentCoding>,
    body: &'a [u8],
    limits: &Limits,
) -> Result<Cow<'a, [u8]>, Refusal> {
    let Some(coding) = coding else {
        return Ok(Cow::Borrowed(body));
    };
    if body.is_empty() {
        return Ok(Cow::Borrowed(body));
    }
    let limit = limits.max_decoded_bytes;
    let mut out = Vec::new();
    let rest = match coding {
        // Every member (RFC 1952 allows several); anything after the last is an error.
        ContentCoding::Gzip => {
            let mut decoder = flate2::bufread::MultiGzDecoder::new(body);
            read_bounded(&mut decoder, limit, &mut out, coding).map_err(|refusal| {
                match refusal.kind == RefusalKind::BadRequest && gzip_then_other_bytes(body, limit)
                {
                    true => corrupt(coding, TRAILING),
                    false => refusal,
                }
            })?;
            decoder.into_inner().len()
        }
        ContentCoding::Deflate => {
            let mut decoder = flate2::bufread::ZlibDecoder::new(body);
            read_bounded(&mut decoder, limit, &mut out, coding)?;
            decoder.into_inner().len()
        }
        ContentCoding::Br => {
            let mut decoder = brotli_decompressor::Decompressor::new(body, 4096);
            read_bounded(&mut decoder, limit, &mut out, coding)?;
            decoder.into_inner().len()
        }
    };
    if rest > 0 {
        return Err(corrupt(coding, TRAILING));
    }
    Ok(Cow::Owned(out))
}

const TRAILING: &str = "bytes follow the end of the encoded body";

/// Whether `body` is whole gzip members followed by bytes that do not start another one (the
/// gzip decoder reads those as a member cut short): said so instead of "unexpected end of
/// file". At most `limit` bytes are decoded, across all members.
fn gzip_then_other_bytes(body: &[u8], limit: usize) -> bool {
    let mut rest = body;
    let mut budget = limit as u64 + 1;
    loop {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        let Ok(n) = std::io::copy(&mut (&mut member).take(budget), &mut std::io::sink()) else {
            return false;
        };
        budget = budget.saturating_sub(n);
        rest = member.into_inner();
        match rest {
            [] => return false,
            [0x1f, 0x8b, ..] if budget > 0 => continue,
            [0x1f, 0x8b, ..] => return false,
            _ => return true,
        }
    }
}

/// Reads `decoder` to its end into `out`, refusing once more than `limit` bytes came out.
fn read_bounded(
    decoder: &mut impl Read,
    limit: usize,
    out: &mut Vec<u8>,
    coding: ContentCoding,
) -> Result<(), Refusal> {
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(out)
        .map_err(|e| corrupt(coding, &e.to_string()))?;
    if read > limit {
        return Err(Refusal::new(
            RefusalKind::BodyTooLarge,
            format!(
                "the {} body decodes to more than the limit of {limit} bytes",
                coding.as_str()
            ),
        ));
    }
    // Once more past the end: a decoder that found bytes after its stream says so now (brotli).
    match decoder.read(&mut [0u8; 1]) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt(coding, "data continues past the end of the stream")),
        Err(e) => Err(corrupt(coding, &e.to_string())),
    }
}

fn corrupt(coding: ContentCoding, why: &str) -> Refusal {
    Refusal::new(
        RefusalKind::BadRequest,
        format!("the body is not valid {}: {why}", coding.as_str()),
    )
}

#[cfg(test)]
mod tests;
