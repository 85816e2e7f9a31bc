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
            read_bounded(&mut decoder, limit, &mut out, coding)?;
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
        return Err(corrupt(coding, "bytes follow the end of the encoded body"));
    }
    Ok(Cow::Owned(out))
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
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        e.write_all(data).unwrap();
        drop(e);
        out
    }

    fn limits(max: usize) -> Limits {
        Limits {
            max_decoded_bytes: max,
            ..Limits::default()
        }
    }

    fn code(coding: ContentCoding, body: &[u8], max: usize) -> Result<Vec<u8>, &'static str> {
        decode_body(Some(coding), body, &limits(max))
            .map(|b| b.into_owned())
            .map_err(|r| r.code())
    }

    #[test]
    fn each_coding_decodes_to_the_same_bytes() {
        let data = br#"{"order_id":"o-1","name":"Ann"}"#;
        for (coding, encoded) in [
            (ContentCoding::Gzip, gzip(data)),
            (ContentCoding::Deflate, zlib(data)),
            (ContentCoding::Br, br(data)),
        ] {
            assert_eq!(code(coding, &encoded, 1000).as_deref(), Ok(&data[..]));
            // Exactly at the limit is fine; one byte over is not.
            assert_eq!(code(coding, &encoded, data.len()).as_deref(), Ok(&data[..]));
            assert_eq!(
                code(coding, &encoded, data.len() - 1),
                Err("body_too_large")
            );
        }
        // Several gzip members are one body.
        let mut two = gzip(b"{\"a\":");
        two.extend(gzip(b"1}"));
        assert_eq!(
            code(ContentCoding::Gzip, &two, 100).as_deref(),
            Ok(&b"{\"a\":1}"[..])
        );
        let none = decode_body(None, data, &limits(1)).unwrap();
        assert!(matches!(none, Cow::Borrowed(_)));
    }

    #[test]
    fn bombs_stop_at_the_limit_and_corrupt_streams_are_400() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        for (coding, bomb) in [
            (ContentCoding::Gzip, gzip(&zeros)),
            (ContentCoding::Deflate, zlib(&zeros)),
            (ContentCoding::Br, br(&zeros)),
        ] {
            assert!(bomb.len() < 20 * 1024, "{coding:?}: {} bytes", bomb.len());
            assert_eq!(code(coding, &bomb, 1024 * 1024), Err("body_too_large"));
        }
        let data = br#"{"a":1}"#;
        for (coding, encoded) in [
            (ContentCoding::Gzip, gzip(data)),
            (ContentCoding::Deflate, zlib(data)),
            (ContentCoding::Br, br(data)),
        ] {
            let truncated = &encoded[..encoded.len() - 3];
            assert_eq!(
                code(coding, truncated, 100),
                Err("bad_request"),
                "{coding:?}"
            );
            let mut trailing = encoded.clone();
            trailing.extend_from_slice(b"{\"b\":2}");
            assert_eq!(
                code(coding, &trailing, 100),
                Err("bad_request"),
                "{coding:?}"
            );
            assert_eq!(code(coding, data, 100), Err("bad_request"), "{coding:?}");
        }
        // A raw deflate stream (no zlib wrapper) is not HTTP's `deflate`.
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(data).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(code(ContentCoding::Deflate, &raw, 100), Err("bad_request"));
    }
}
