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
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(data).unwrap();
    let raw = raw.finish().unwrap();
    assert_eq!(code(ContentCoding::Deflate, &raw, 100), Err("bad_request"));
}

/// Bytes after the last gzip member or the zlib stream say so; a member cut short does not.
/// (A brotli stream does not always tell its end from what follows.)
#[test]
fn trailing_bytes_are_named_as_such() {
    let message = |coding, body: &[u8]| {
        decode_body(Some(coding), body, &limits(100))
            .unwrap_err()
            .message
    };
    let data = br#"{"a":1}"#;
    for (coding, encoded) in [
        (ContentCoding::Gzip, gzip(data)),
        (ContentCoding::Deflate, zlib(data)),
    ] {
        for tail in [&b"\n"[..], b"xx", b"{\"b\":2}"] {
            let body = [&encoded[..], tail].concat();
            let text = message(coding, &body);
            assert!(
                text.contains("follow the end") || text.contains("past the end"),
                "{coding:?} {tail:?}: {text}"
            );
        }
    }
    let mut two = gzip(b"{\"a\":");
    two.extend(gzip(b"1}"));
    let cut = &two[..two.len() - 3];
    assert!(!message(ContentCoding::Gzip, cut).contains("follow the end"));
    let tailed = [&two[..], b"\n"].concat();
    assert!(message(ContentCoding::Gzip, &tailed).contains("follow the end"));
}
