/*!
The legal basis a government partner is asked for: exactly one non-empty header, printable
ASCII (it goes into the data-use tag), matching the partner's `legal_basis_format` if it has one.
A request without one such reference is 403 `legal_basis_missing`, whatever is wrong with the
header: missing, blank, given twice, not printable ASCII, or not of the partner's form.
*/
use crate::policy::Partner;
use crate::{Refusal, RefusalKind};

/// The reference to forward and record, or `None` when the partner asks for none.
pub(super) fn legal_basis(
    partner: &Partner,
    headers: &[(&str, &str)],
) -> Result<Option<String>, Refusal> {
    let Some(header) = &partner.legal_basis_header else {
        return Ok(None);
    };
    let mut values = headers
        .iter()
        .filter(|(n, _)| n == header)
        .map(|(_, v)| v.trim());
    let value = match (values.next(), values.next()) {
        (Some(value), None) if !value.is_empty() => value,
        (Some(_), Some(_)) => {
            return Err(Refusal::new(RefusalKind::LegalBasisMissing, format!("more than one {header:?} header: a request cites one legal basis")));
        }
        _ => {
            return Err(Refusal::new(RefusalKind::LegalBasisMissing, format!(
                "partner {:?} is a government body: every request needs a legal-basis reference in the {header:?} header",
                partner.id
            )))
        }
    };
    if !crate::tagging::header::is_sf_string(value) {
        return Err(Refusal::new(
            RefusalKind::LegalBasisMissing,
            format!("the {header:?} header must be printable ASCII (a case or order reference)"),
        ));
    }
    if let Some(format) = &partner.legal_basis_format {
        if !format.is_match(value) {
            return Err(Refusal::new(RefusalKind::LegalBasisMissing, format!(
                "the {header:?} header {value:?} is not a legal-basis reference of the form partner {:?} requires",
                partner.id
            )));
        }
    }
    Ok(Some(value.to_string()))
}
