/*!
The checks a request's head decides alone, before any of its body is read (and so before the
gateway answers `Expect: 100-continue`): no protocol upgrade, no second copy of a header that
holds one value, a well-formed request id, the legal basis, readable codings, and, when a body
is announced, a route that takes one and a JSON content type.
*/
use super::{body, framing, legal_basis, Target};
use crate::headers::{is_media_range_list, is_valid_request_id, REQUEST_ID_HEADERS, SINGLE_VALUED};
use crate::{Refusal, RefusalKind};

/// Refuses what the head alone shows to be refused. `body_announced`: the request says a
/// non-empty body follows (a `content-length` above 0, or chunked framing).
pub fn check_head(
    target: &Target,
    headers: &[(&str, &str)],
    body_announced: bool,
) -> Result<(), Refusal> {
    framing::refuse_upgrade(headers)?;
    legal_basis::legal_basis(&target.partner, headers)?;
    framing::check_codings(headers, &target.route().decode)?;
    if let Some(format) = target.route().stream {
        super::stream::check_stream_content_type(format, headers)?;
    } else if body_announced {
        let route = target.route();
        if route.filter.is_none() {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                format!(
                    "route {:?} of partner {:?} takes no body",
                    route.template, target.partner.id
                ),
            ));
        }
        let content_type = headers
            .iter()
            .find(|(n, _)| *n == "content-type")
            .map(|(_, v)| *v);
        body::check_json_content_type(content_type, &route.json_types)?;
    }
    refuse_duplicates(target, headers)?;
    check_opaque_headers(headers)
}

/// A header that holds one value, given twice, is ambiguous: which copy would the partner,
/// or the gateway's own check, read?
fn refuse_duplicates(target: &Target, headers: &[(&str, &str)]) -> Result<(), Refusal> {
    let legal_basis = target.partner.legal_basis_header.as_deref();
    for (i, (name, _)) in headers.iter().enumerate() {
        let single = SINGLE_VALUED.contains(name) || Some(*name) == legal_basis;
        if single && headers[..i].iter().any(|(n, _)| n == name) {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                format!("more than one {name:?} header"),
            ));
        }
    }
    Ok(())
}

/// Request ids travel to partners: an opaque token, never free text. So does `accept`, which
/// passes on every route: media ranges only.
fn check_opaque_headers(headers: &[(&str, &str)]) -> Result<(), Refusal> {
    for (name, value) in headers {
        if REQUEST_ID_HEADERS.contains(name) && !is_valid_request_id(value) {
            return Err(Refusal::new(RefusalKind::BadRequest, format!(
                "the {name:?} header must be 1 to 128 token characters (letters, digits and !#$%&'*+-.^_`|~)"
            )));
        }
        if *name == "accept" && !is_media_range_list(value) {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                "the \"accept\" header must list media ranges (type/subtype, with name=value parameters), each part letters, digits and !#$%&'*+-.^_`|~",
            ));
        }
    }
    Ok(())
}
