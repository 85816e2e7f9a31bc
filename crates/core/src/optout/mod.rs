/*!
Opt-outs: the scopes a customer can opt out of, the in-memory set the request path asks,
and which scopes a partner honours.
*/

pub mod bulk;
pub mod codec;
pub mod id;
pub mod set;

pub use bulk::{BulkErrors, Format, LineError};
pub use set::{
    validate_customer_id, Honouring, InvalidCustomerId, OptOutError, OptOutSet, ScopeId, Scopes,
    SetBuilder, MAX_ID_LEN,
};

/// Asks whether a customer opted out of any scope the route honours; the filter asks it per
/// record.
pub trait OptOutLookup {
    /// `subject` is the canonical id: the unescaped string, or an integer's literal text.
    fn is_opted_out(&self, subject: &str) -> bool;
}

/// An opt-out scope: `partner_sharing`, `partner:<id>`, or a named use announced by a policy change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub const PARTNER_SHARING: &'static str = "partner_sharing";

    /// The longest scope accepted, in bytes (stores and the admin API rely on a bound).
    pub const MAX_LEN: usize = 128;

    /// Accepts a name of ASCII letters, digits and `_` `-` `.` `:` (starting with a letter or
    /// digit), at most [`Scope::MAX_LEN`] bytes: `partner_sharing`, `partner:<id>`, and the
    /// names of new uses (`ai-training`, `news.v2`). Scopes are case-sensitive. The bound keeps
    /// them safe in CSV, NDJSON, URLs and metric labels.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text.len() > Self::MAX_LEN {
            return Err(format!(
                "invalid opt-out scope {:?}... (longer than {} bytes)",
                &text[..text.char_indices().nth(32).map_or(text.len(), |(i, _)| i)],
                Self::MAX_LEN
            ));
        }
        let ok = text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
            && !text.ends_with(':');
        if ok {
            Ok(Scope(text.to_string()))
        } else {
            Err(format!(
                "invalid opt-out scope {text:?} (expected partner_sharing, partner:<id>, or a name of letters, digits, `_`, `-`, `.`, `:` that starts with a letter or digit and does not end in `:`)"
            ))
        }
    }

    /// [`Scope::parse`] for a scope being recorded anew (admin `PUT`, bulk import): also not a
    /// spelling of the scopes partners honour by kind that differs in case (`Partner_Sharing`,
    /// `partner:BIZ`; partner ids are lowercase), which would be acknowledged and honoured by
    /// no one. Other names are scopes a policy may honour as written, capitals included.
    pub fn parse_new(text: &str) -> Result<Scope, String> {
        let scope = Scope::parse(text)?;
        if let Some(lower) = Self::miscased(text) {
            return Err(format!(
                "invalid opt-out scope {text:?}: {lower:?} is the scope partners honour (partner ids are lowercase); {text:?} would be honoured by no one"
            ));
        }
        Ok(scope)
    }

    /// [`Scope::parse`] for an opt-out read from a store others write too (SQL by hand, a CRM
    /// sync, into a table made before its check refused such scopes): a spelling
    /// [`Scope::parse_new`] refuses for differing in case from a scope partners honour by kind
    /// is read as that scope, so the opt-out is enforced rather than honoured by no one. The
    /// second value says it was.
    pub fn parse_stored(text: &str) -> Result<(Scope, bool), String> {
        let scope = Scope::parse(text)?;
        Ok(match Self::miscased(text) {
            Some(lower) => (Scope(lower), true),
            None => (scope, false),
        })
    }

    /// The scope partners honour by kind (`partner_sharing`, `partner:<id>`, all lowercase)
    /// that `text` spells with other capitals, if it does.
    fn miscased(text: &str) -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let honoured_by_kind = lower == Self::PARTNER_SHARING || lower.starts_with("partner:");
        (honoured_by_kind && lower != text).then_some(lower)
    }

    pub fn partner(id: &str) -> Scope {
        Scope(format!("partner:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The opt-out set as the request path sees it: does this customer opt out of any of these scopes?
pub trait OptOutSource: Send + Sync {
    fn is_opted_out(&self, customer_id: &str, scopes: &[Scope]) -> bool;

    /// Runs `f` with one lookup for a whole request honouring `scopes`, so every record of a
    /// body is judged against the same view of the set (a store takes its lock once, a set
    /// resolves the scopes once). The default asks [`Self::is_opted_out`] per record.
    fn with_lookup(&self, scopes: &[Scope], f: &mut dyn FnMut(&dyn OptOutLookup)) {
        struct PerRecord<'a, S: ?Sized> {
            source: &'a S,
            scopes: &'a [Scope],
        }
        impl<S: OptOutSource + ?Sized> OptOutLookup for PerRecord<'_, S> {
            fn is_opted_out(&self, subject: &str) -> bool {
                self.source.is_opted_out(subject, self.scopes)
            }
        }
        f(&PerRecord {
            source: self,
            scopes,
        })
    }
}
