/*!
What of a partner's answer reaches the caller. The status and the body are relayed as they
arrive (never buffered whole); of the headers only an allow-list passes: the answer's own
metadata (content type, language, caching, `location`, `retry-after`), the framing the body
needs, and the route's `response_headers`. A partner's cookies, challenges, credentials and
connection headers (those it names in its own `Connection` too) never reach OhSoft's callers,
nor does any header carrying the credential the gateway injected toward that partner (a
partner echoing request headers back).
*/
use gateway_core::headers::{connection_tokens, is_relayed_from_partner};
use http::HeaderName;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

/// How the relayed body is framed toward the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The partner's exact `content-length` (the bytes are relayed unchanged).
    Length(u64),
    /// Chunked toward an HTTP/1.1 (or h2) caller: the length is not known in advance.
    Chunked,
    /// HTTP/1.0 caller, length unknown: the end of the body is the end of the connection.
    Close,
    /// An answer that never has a body (`204`, or `304` without a length): no framing header
    /// at all (a `204` may carry neither `content-length` nor `transfer-encoding`).
    Bodiless,
}

/// How much of a partner's answer body had arrived when the caller's header is made (see
/// `UpstreamAnswer::read_start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// All of it, this many bytes (0: none, as for `HEAD`, a `304` or an empty body).
    Whole(u64),
    /// Part of it: the rest is relayed as it arrives.
    Partial,
}

/// The framing of the partner's answer toward the caller.
///
/// A body that arrived whole goes with its length: one write for header and body, and a
/// connection an HTTP/1.0 caller can keep. A body still arriving goes chunked toward an
/// HTTP/1.1 (or h2) caller, even when the partner sent a `content-length`: pingora holds a body
/// sent with a length back until that length is complete (or its buffer full), and the caller
/// must get each part as it arrives. An HTTP/1.0 caller has no chunks: it keeps the partner's
/// length (else the body ends with the connection), so that a body the partner breaks off is
/// never taken for a whole one, at the price of parts held back. With nothing of a body to
/// relay (`HEAD`, `304`, empty), the partner's own `content-length` stands. A partner's
/// `content-length` counts only without `transfer-encoding`, which overrides it.
pub fn framing(partner: &ResponseHeader, caller_http10: bool, arrival: Arrival) -> Framing {
    if partner.status == 204 {
        return Framing::Bodiless;
    }
    let chunked = partner.headers.contains_key("transfer-encoding");
    let length = partner
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (chunked, length, arrival) {
        (_, _, Arrival::Partial) if !caller_http10 => Framing::Chunked,
        (false, Some(n), _) => Framing::Length(n),
        _ if partner.status == 304 => Framing::Bodiless,
        (_, _, Arrival::Whole(n)) if n > 0 => Framing::Length(n),
        _ if caller_http10 => Framing::Close,
        _ => Framing::Chunked,
    }
}

/// The header sent to the caller for a partner's final answer.
///
/// `credential` is the secret the gateway sent to this partner (`upstream_auth`), if any: a
/// header whose value contains it is dropped whatever its name, and so is every line of a
/// header whose lines hold it between them (HTTP reads them as one comma-joined value).
/// Headers the partner names in its `Connection` are hop-by-hop: dropped whatever the
/// allow-list says.
pub fn caller_header(
    partner: &ResponseHeader,
    route_headers: &[String],
    credential: Option<&str>,
    framing: Framing,
) -> Result<ResponseHeader> {
    let mut header = ResponseHeader::build(partner.status, Some(partner.headers.len() + 2))?;
    let hop_by_hop = connection_tokens(
        partner
            .headers
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let split = credential.map_or_else(Vec::new, |secret| split_credential(partner, secret));
    for (name, value) in partner.headers.iter() {
        let name_text = name.as_str();
        if !is_relayed_from_partner(name_text, route_headers)
            || hop_by_hop.iter().any(|h| h == name_text)
        {
            continue;
        }
        if split.contains(&name)
            || credential.is_some_and(|secret| carries(value.as_bytes(), secret.as_bytes()))
        {
            log::warn!(
                "a partner answer header {name_text:?} carried the partner credential; dropped"
            );
            continue;
        }
        header.append_header(name.clone(), value.clone())?;
    }
    match framing {
        Framing::Length(n) => header.insert_header("content-length", n.to_string())?,
        Framing::Chunked => header.insert_header("transfer-encoding", "chunked")?,
        Framing::Close | Framing::Bodiless => {}
    }
    Ok(header)
}

/// The names of the headers sent as several lines whose values, joined as HTTP joins them,
/// carry `secret` (each line is checked on its own as well).
fn split_credential<'h>(partner: &'h ResponseHeader, secret: &str) -> Vec<&'h HeaderName> {
    // The usual answer has one line per name: nothing to join, no lookup per name.
    if partner.headers.len() == partner.headers.keys_len() {
        return Vec::new();
    }
    let lines = |name: &HeaderName| partner.headers.get_all(name).iter();
    let joined = |name: &HeaderName| {
        let values: Vec<&[u8]> = lines(name).map(|v| v.as_bytes()).collect();
        values.join(&b","[..])
    };
    partner
        .headers
        .keys()
        .filter(|&name| lines(name).nth(1).is_some())
        .filter(|&name| carries(&joined(name), secret.as_bytes()))
        .collect()
}

/// Percent-encodings undone when looking for the credential in an answer header: a redirect
/// nested in another's `?next=` is encoded twice. Bounded, so that a header of `%2525…` costs
/// a few passes over it, not one per escape.
const DECODE_PASSES: usize = 4;

/// Whether `value` contains `secret`, as sent or percent-decoded up to [`DECODE_PASSES`] times
/// (a redirect's query carries a token URL-encoded: `+`, `/` and `=` of a base64 token become
/// escapes), ASCII case-insensitively (a partner may echo it re-cased), and at each step also
/// with spaces, control characters, commas, double quotes, backslashes and non-ASCII bytes left
/// out of both (an obsolete line fold, which the HTTP library joins with a space, an encoded
/// `%20`, the separators, quotes and escapes of a list or quoted string, or an invisible
/// character such as a zero-width space may split it).
fn carries(value: &[u8], secret: &[u8]) -> bool {
    let holds = |text: &[u8]| contains_ignoring_case(text, secret) || holds_squeezed(text, secret);
    if holds(value) {
        return true;
    }
    if !value.contains(&b'%') {
        return false;
    }
    let mut text = value.to_vec();
    for _ in 0..DECODE_PASSES {
        let decoded: Vec<u8> = percent_encoding::percent_decode(&text).collect();
        if decoded.len() == text.len() {
            return false; // nothing left to decode
        }
        if holds(&decoded) {
            return true;
        }
        text = decoded;
    }
    false
}

fn contains_ignoring_case(text: &[u8], secret: &[u8]) -> bool {
    !secret.is_empty()
        && text.len() >= secret.len()
        && text
            .windows(secret.len())
            .any(|w| w.eq_ignore_ascii_case(secret))
}

/// [`contains_ignoring_case`] with the bytes [`carries`] names left out of both, when `text`
/// has any. Compared in place: most answer headers with a space
/// (`content-type`, `date`) are looked at on every request, so nothing is copied.
fn holds_squeezed(text: &[u8], secret: &[u8]) -> bool {
    let kept = |b: &&u8| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\\');
    if !secret.iter().any(|b| kept(&b)) || text.iter().all(|b| kept(&b)) {
        return false;
    }
    (0..text.len()).filter(|&i| kept(&&text[i])).any(|start| {
        let mut got = text[start..].iter().filter(kept);
        secret
            .iter()
            .filter(kept)
            .all(|s| got.next().is_some_and(|b| b.eq_ignore_ascii_case(s)))
    })
}

#[cfg(test)]
mod tests;
