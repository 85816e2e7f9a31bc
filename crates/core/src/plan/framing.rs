/*!
How the request is framed: no protocol upgrade, a body within the limit, and no content or
transfer coding the gateway cannot read (an encoded body would pass the filter unread).
*/
use crate::policy::{ContentCoding, Limits};
use crate::{Refusal, RefusalKind};

/// `Upgrade` would open a tunnel past the filter.
pub(super) fn refuse_upgrade(headers: &[(&str, &str)]) -> Result<(), Refusal> {
    if headers.iter().any(|(name, _)| *name == "upgrade") {
        return Err(Refusal::new(
            RefusalKind::BadRequest,
            "Upgrade is not allowed: no tunnel bypasses the filter",
        ));
    }
    Ok(())
}

pub(super) fn check_body_size(body: &[u8], limits: &Limits) -> Result<(), Refusal> {
    if body.len() > limits.max_body_bytes {
        return Err(Refusal::new(
            RefusalKind::BodyTooLarge,
            format!(
                "body of {} bytes is over the limit of {} bytes",
                body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    Ok(())
}

/// The one content coding the body must be decoded from, if any: `identity` alone, or exactly
/// one coding the route lists in `decode` (`decodable`). Stacked codings (`gzip, gzip`, or two
/// headers) and codings the route does not list are 415. Transfer codings: only `chunked` (the
/// HTTP layer undoes `chunked` and nothing else: a body sent `gzip, chunked` would be read as if
/// not encoded). Every header counts: a second one must not slip an encoding past the first.
pub(super) fn check_codings(
    headers: &[(&str, &str)],
    decodable: &[ContentCoding],
) -> Result<Option<ContentCoding>, Refusal> {
    let codings: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| *n == "content-encoding")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|c| !c.eq_ignore_ascii_case("identity"))
        .collect();
    let coding = match codings.as_slice() {
        [] => None,
        [one] => match ContentCoding::parse(one).filter(|c| decodable.contains(c)) {
            Some(coding) => Some(coding),
            None => return Err(Refusal::new(RefusalKind::UnsupportedMediaType, format!(
                "content-encoding {one:?} is not decoded on this route; send the body unencoded"
            ))),
        },
        more => return Err(Refusal::new(RefusalKind::UnsupportedMediaType, format!(
            "stacked content-encodings {more:?} are not decoded; send the body unencoded or with one coding"
        ))),
    };
    let transfer = headers.iter().filter(|(n, _)| *n == "transfer-encoding");
    let mut chunked = 0;
    for (_, coding) in transfer {
        if !only(coding, "chunked") {
            return Err(Refusal::new(RefusalKind::UnsupportedMediaType, format!(
                "transfer-encoding {coding:?} cannot be read by the gateway; send the body unencoded (chunked framing is fine)"
            )));
        }
        chunked += coding.split(',').count();
    }
    // Chunked framing applied twice: a reader in front may split the body elsewhere.
    if chunked > 1 {
        return Err(Refusal::new(
            RefusalKind::BadRequest,
            "transfer-encoding chunked is given more than once",
        ));
    }
    Ok(coding)
}

/// Every entry of a comma-separated coding list is `coding` (any case).
fn only(list: &str, coding: &str) -> bool {
    list.split(',')
        .all(|c| c.trim().eq_ignore_ascii_case(coding))
}
