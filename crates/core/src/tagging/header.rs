/*!
The `ohsoft-data-use` header: an RFC 8941 dictionary of sf-strings, e.g.
`use="on-behalf-of-ohsoft", purpose="shipping", policy="3f2a9c0d11e4"`, plus
`legal-basis="..."` for government partners.

sf-strings hold printable ASCII only (0x20–0x7E); `"` and `\` are escaped. Any other
character is refused, never dropped or re-encoded: a tag must say exactly what the policy says.
*/
use super::TagError;
use crate::policy::Partner;
use crate::{Refusal, RefusalKind};

/// Header name of the data-use tag.
pub const DATA_USE_HEADER: &str = "ohsoft-data-use";
/// Header name of the signed data-use token.
pub const DATA_USE_TOKEN_HEADER: &str = "ohsoft-data-use-token";

/// What a partner is told about the data it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataUseTag<'a> {
    /// `PartnerKind::data_use()`: `on-behalf-of-ohsoft`, `partner-sharing`, `co-branded`, `legal-obligation`.
    pub use_: &'a str,
    /// The partner's `purpose`.
    pub purpose: &'a str,
    /// The policy version (content hash).
    pub policy_version: &'a str,
    /// The legal-basis reference a government request carried.
    pub legal_basis: Option<&'a str>,
}

impl<'a> DataUseTag<'a> {
    /// The tag of one request to `partner` under policy `policy_version`.
    pub fn for_request(
        partner: &'a Partner,
        policy_version: &'a str,
        legal_basis: Option<&'a str>,
    ) -> DataUseTag<'a> {
        DataUseTag {
            use_: partner.kind.data_use(),
            purpose: &partner.purpose,
            policy_version,
            legal_basis,
        }
    }

    /// The header value of a request's tag. Every member was validated before (the purpose by
    /// the loader, the legal basis by the plan), so a failure is a broken invariant: 500.
    pub fn request_header_value(&self) -> Result<String, Refusal> {
        self.to_header_value().map_err(|e| {
            Refusal::new(
                RefusalKind::Internal,
                format!("cannot tag this request: {e}"),
            )
        })
    }

    /// The header value. Fails when a member is not printable ASCII.
    pub fn to_header_value(&self) -> Result<String, TagError> {
        let mut ser = sfv::DictSerializer::new();
        let mut members = vec![
            ("use", self.use_),
            ("purpose", self.purpose),
            ("policy", self.policy_version),
        ];
        if let Some(lb) = self.legal_basis {
            members.push(("legal-basis", lb));
        }
        for (name, value) in members {
            let s = sfv::StringRef::from_str(value).map_err(|_| TagError::InvalidValue {
                member: name,
                value: value.to_string(),
            })?;
            let _ = ser.bare_item(sfv::KeyRef::constant(name), s);
        }
        // Never empty: `use`, `purpose` and `policy` are always written.
        Ok(ser.finish().unwrap_or_default())
    }
}

/// Whether `value` can be carried as an sf-string (printable ASCII). For `check` and for
/// validating a legal-basis reference before anything is forwarded.
pub fn is_sf_string(value: &str) -> bool {
    value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}
